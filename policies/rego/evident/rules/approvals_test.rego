package evident.rules.approvals_test

import data.evident.rules.approvals

change(risk, extra) := {
	"record": {"phase": "plan"},
	"change": {"production": true, "riskClass": risk, "requiresApprovalFrom": extra},
}

required(inp) := d.requiredApprovers if {
	some d in approvals.deny with input as inp
}

test_groups_follow_the_risk_class if {
	required(change("low", [])) == ["service-owners"]
	required(change("medium", [])) == ["platform-infra"]
	required(change("high", [])) == ["platform-infra", "security"]
	required(change("critical", [])) == ["change-advisory-board", "platform-infra", "security"]
}

test_change_contract_groups_are_added if {
	required(change("medium", ["database-owners", "platform-infra"])) == ["database-owners", "platform-infra"]
}

test_missing_risk_class_is_high if {
	required({"record": {"phase": "apply"}, "change": {"production": true}}) == ["platform-infra", "security"]
}

test_non_production_needs_none if {
	count(approvals.deny) == 0 with input as {"record": {"phase": "plan"}, "change": {"production": false, "riskClass": "critical"}}
}
