package evident_test

import data.evident

replace_db := {
	"record": {"kind": "plan.created", "phase": "plan"},
	"change": {"production": true, "riskClass": "low"},
	"plan": {
		"actions": {"replace": [{"type": "aws_db_parameter_group", "name": "orders", "address": "aws_db_parameter_group.orders"}]},
		"resourceChanges": [],
	},
	"approvals": {"current": [], "groups": []},
	"exceptions": {"active": [], "expired": []},
}

db_rule := "iac.prod.database.replacement.requires-db-owner"

decision(rule, inp) := d if {
	some d in evident.decisions with input as inp
	d.ruleId == rule
}

test_deny_names_required_approvers if {
	d := decision(db_rule, replace_db)
	d.result == "deny"
	d.severity == "high"
	d.requiredApprovers == ["database-owners"]
	d.evidence == ["plan.action.replace.aws_db_parameter_group.orders"]
	not d.exceptionId
}

test_plan_deny_is_not_lifted_by_approvals if {
	inp := json.patch(replace_db, [{"op": "replace", "path": "/approvals/groups", "value": ["database-owners"]}])
	decision(db_rule, inp).result == "deny"
}

test_apply_deny_is_lifted_by_all_required_approvers if {
	inp := json.patch(replace_db, [
		{"op": "replace", "path": "/record/phase", "value": "apply"},
		{"op": "replace", "path": "/approvals/groups", "value": ["database-owners", "platform-infra"]},
	])
	d := decision(db_rule, inp)
	d.result == "allow"
	contains(d.message, "Approved by database-owners")
}

test_apply_deny_stays_without_the_required_group if {
	inp := json.patch(replace_db, [
		{"op": "replace", "path": "/record/phase", "value": "apply"},
		{"op": "replace", "path": "/approvals/groups", "value": ["platform-infra"]},
	])
	decision(db_rule, inp).result == "deny"
}

test_active_exception_waives_and_is_named if {
	inp := json.patch(replace_db, [{"op": "replace", "path": "/exceptions/active", "value": [
		{"id": "EXC-1", "ruleId": db_rule, "expiresAt": "2026-10-01T00:00:00Z"},
		{"id": "EXC-2", "ruleId": db_rule, "expiresAt": "2026-09-01T00:00:00Z"},
	]}])
	d := decision(db_rule, inp)
	d.result == "warn"
	d.exceptionId == "EXC-1"
	contains(d.message, "Waived by exception EXC-1 until 2026-10-01T00:00:00Z")
}

test_exception_for_another_rule_does_not_waive if {
	inp := json.patch(replace_db, [{"op": "replace", "path": "/exceptions/active", "value": [
		{"id": "EXC-1", "ruleId": "iac.storage.public-bucket.requires-exception", "expiresAt": "2026-10-01T00:00:00Z"},
	]}])
	decision(db_rule, inp).result == "deny"
}

test_expired_exception_fails_closed_and_is_named if {
	inp := json.patch(replace_db, [{"op": "replace", "path": "/exceptions/expired", "value": [
		{"id": "EXC-9", "ruleId": db_rule, "expiresAt": "2026-07-01T00:00:00Z"},
	]}])
	d := decision(db_rule, inp)
	d.result == "deny"
	not d.exceptionId
	"exception.expired.EXC-9" in d.evidence
	contains(d.message, "Exception EXC-9 expired at 2026-07-01T00:00:00Z")
}

test_warn_rules_stay_warnings if {
	inp := json.patch(replace_db, [{"op": "add", "path": "/change/emergency", "value": true}])
	decision("change.emergency.post-hoc-review", inp).result == "warn"
}
