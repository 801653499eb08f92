package evident.rules.destructive_test

import data.evident.rules.destructive

delete_bucket := {
	"record": {"phase": "plan"},
	"change": {"production": true},
	"plan": {"destructive": true, "actions": {"delete": [{"type": "aws_s3_bucket", "name": "logs", "address": "aws_s3_bucket.logs"}]}},
}

test_production_delete_needs_security if {
	some d in destructive.deny with input as delete_bucket
	d.requiredApprovers == ["security"]
	d.evidence == ["plan.action.delete.aws_s3_bucket.logs"]
}

test_destructive_flag_without_deletes if {
	some d in destructive.deny with input as {
		"record": {"phase": "apply"},
		"change": {"production": true},
		"plan": {"destructive": true, "actions": {}},
	}
	d.evidence == ["plan.destructive"]
}

test_non_production_delete_allowed if {
	count(destructive.deny) == 0 with input as json.patch(delete_bucket, [{"op": "replace", "path": "/change/production", "value": false}])
}

test_non_destructive_allowed if {
	count(destructive.deny) == 0 with input as {
		"record": {"phase": "plan"},
		"change": {"production": true},
		"plan": {"destructive": false, "actions": {"update": [{"type": "aws_s3_bucket", "address": "aws_s3_bucket.logs"}]}},
	}
}
