# Destructive production changes need security's approval.
package evident.rules.destructive

import data.evident.lib

deny contains {
	"ruleId": "iac.prod.destructive.requires-security",
	"severity": "high",
	"message": "Destructive production change requires security approval.",
	"requiredApprovers": ["security"],
	"evidence": evidence,
} if {
	lib.production
	lib.plan_or_apply
	evidence := destroyed
	count(evidence) > 0
}

destroyed := ["plan.destructive"] if {
	count(deletes) == 0
	input.plan.destructive
} else := deletes

deletes := sort([sprintf("plan.action.delete.%s", [r.address]) | some r in input.plan.actions["delete"]])
