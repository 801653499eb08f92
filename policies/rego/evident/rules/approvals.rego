# Production plans and applies need approvals from the groups the change's
# risk class names, and from those its change contract requires. A change
# without a risk class is treated as high risk.
package evident.rules.approvals

import data.evident.lib

risk_groups := {
	"low": ["service-owners"],
	"medium": ["platform-infra"],
	"high": ["platform-infra", "security"],
	"critical": ["platform-infra", "security", "change-advisory-board"],
}

deny contains {
	"ruleId": "change.prod.approvals.risk-class",
	"severity": severity,
	"message": sprintf("Production change of risk class %s requires approval from %s.", [risk, concat(", ", required)]),
	"requiredApprovers": required,
	"evidence": [sprintf("change.riskClass.%s", [risk])],
} if {
	lib.production
	lib.plan_or_apply
	required := sort({g |
		some g in array.concat(risk_groups[risk], contract_groups)
	})
	count(required) > 0
}

contract_groups := g if {
	g := input.change.requiresApprovalFrom
} else := []

risk := r if {
	r := input.change.riskClass
	risk_groups[r]
} else := "high"

severity := "critical" if risk == "critical" else := "high"
