# Public storage buckets need an exception, in every environment.
package evident.rules.public_bucket

import data.evident.lib

deny contains {
	"ruleId": "iac.storage.public-bucket.requires-exception",
	"severity": "high",
	"message": "Storage bucket is publicly accessible; an exception is required.",
	"evidence": evidence,
} if {
	lib.plan_or_apply
	evidence := sort([e | some e in public])
	count(evidence) > 0
}

public_acls := {"public-read", "public-read-write", "authenticated-read"}

public contains sprintf("plan.resource.%s.acl", [r.address]) if {
	some r in lib.changed
	r.type in {"aws_s3_bucket", "aws_s3_bucket_acl"}
	r.attributes.acl in public_acls
}

public contains sprintf("plan.resource.%s.%s", [r.address, s]) if {
	some r in lib.changed
	r.type == "aws_s3_bucket_public_access_block"
	some s in ["block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"]
	object.get(r.attributes, s, "true") == "false"
}

public contains sprintf("plan.resource.%s.member", [r.address]) if {
	some r in lib.changed
	r.type in {"google_storage_bucket_iam_member", "google_storage_bucket_iam_binding"}
	members := concat(",", [object.get(r.attributes, "member", ""), object.get(r.attributes, "members", "")])
	some m in ["allUsers", "allAuthenticatedUsers"]
	contains(members, m)
}

public contains sprintf("plan.resource.%s.%s", [r.address, s]) if {
	some r in lib.changed
	r.type == "azurerm_storage_account"
	some s in ["allow_nested_items_to_be_public", "allow_blob_public_access"]
	r.attributes[s] == "true"
}

public contains sprintf("plan.resource.%s.container_access_type", [r.address]) if {
	some r in lib.changed
	r.type == "azurerm_storage_container"
	r.attributes.container_access_type in {"blob", "container"}
}
