package evident.rules.database_replacement_test

import data.evident.rules.database_replacement

plan(production, phase, replace) := {
	"record": {"phase": phase},
	"change": {"production": production},
	"plan": {"actions": {"replace": replace}},
}

db := {"type": "aws_db_parameter_group", "name": "orders", "address": "aws_db_parameter_group.orders"}

alarm := {"type": "aws_cloudwatch_metric_alarm", "name": "orders", "address": "aws_cloudwatch_metric_alarm.orders"}

test_production_database_replacement_denied if {
	some d in database_replacement.deny with input as plan(true, "plan", [db, alarm])
	d.requiredApprovers == ["database-owners"]
	d.evidence == ["plan.action.replace.aws_db_parameter_group.orders"]
}

test_applies_are_judged_too if {
	count(database_replacement.deny) == 1 with input as plan(true, "apply", [db])
}

test_non_production_allowed if {
	count(database_replacement.deny) == 0 with input as plan(false, "plan", [db])
}

test_other_replacements_allowed if {
	count(database_replacement.deny) == 0 with input as plan(true, "plan", [alarm])
}

test_updates_allowed if {
	count(database_replacement.deny) == 0 with input as {
		"record": {"phase": "plan"},
		"change": {"production": true},
		"plan": {"actions": {"update": [db]}},
	}
}

test_sync_not_judged if {
	count(database_replacement.deny) == 0 with input as plan(true, "sync", [db])
}
