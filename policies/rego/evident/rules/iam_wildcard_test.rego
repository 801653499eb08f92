package evident.rules.iam_wildcard_test

import data.evident.rules.iam_wildcard

policy_change(doc, actions) := {
	"record": {"phase": "plan"},
	"change": {"production": false},
	"plan": {"resourceChanges": [{
		"address": "aws_iam_policy.deploy",
		"type": "aws_iam_policy",
		"actions": actions,
		"attributes": {"policy": json.marshal(doc)},
	}]},
}

test_wildcard_action_denied_in_any_environment if {
	doc := {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:*"], "Resource": "*"}]}
	some d in iam_wildcard.deny with input as policy_change(doc, ["create"])
	d.evidence == ["plan.resource.aws_iam_policy.deploy.policy.action.s3:*"]
	not "requiredApprovers" in object.keys(d)
}

test_full_wildcard_as_a_string if {
	doc := {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}
	count(iam_wildcard.deny) == 1 with input as policy_change(doc, ["update"])
}

test_specific_actions_allowed if {
	doc := {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]}
	count(iam_wildcard.deny) == 0 with input as policy_change(doc, ["create"])
}

test_deny_statements_may_use_wildcards if {
	doc := {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
	count(iam_wildcard.deny) == 0 with input as policy_change(doc, ["create"])
}

test_deleting_a_wildcard_policy_allowed if {
	doc := {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
	count(iam_wildcard.deny) == 0 with input as policy_change(doc, ["delete"])
}

test_invalid_policy_document_ignored if {
	count(iam_wildcard.deny) == 0 with input as {
		"record": {"phase": "plan"},
		"plan": {"resourceChanges": [{"address": "aws_iam_policy.x", "type": "aws_iam_policy", "actions": ["create"], "attributes": {"policy": "{not json"}}]},
	}
}
