# Wildcard IAM actions need an exception, in every environment.
package evident.rules.iam_wildcard

import data.evident.lib

# policy_types are the resources whose "policy" attribute is an IAM policy
# document.
policy_types := {
	"aws_iam_policy", "aws_iam_role_policy", "aws_iam_user_policy", "aws_iam_group_policy",
	"aws_s3_bucket_policy", "aws_kms_key", "aws_sqs_queue_policy", "aws_sns_topic_policy",
}

deny contains {
	"ruleId": "iac.iam.wildcard-action.requires-exception",
	"severity": "high",
	"message": "IAM policy grants wildcard actions; an exception is required.",
	"evidence": evidence,
} if {
	lib.plan_or_apply
	evidence := sort([sprintf("plan.resource.%s.policy.action.%s", [r.address, a]) |
		some r in lib.changed
		r.type in policy_types
		some a in wildcard_actions(r)
	])
	count(evidence) > 0
}

wildcard_actions(r) := {a |
	json.is_valid(r.attributes.policy)
	doc := json.unmarshal(r.attributes.policy)
	some s in as_array(doc.Statement)
	object.get(s, "Effect", "Allow") == "Allow"
	some a in as_array(s.Action)
	wildcard(a)
}

wildcard(a) if a == "*"

wildcard(a) if endswith(a, ":*")

as_array(x) := x if is_array(x)

as_array(x) := [x] if not is_array(x)
