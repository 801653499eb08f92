package evident.rules.public_bucket_test

import data.evident.rules.public_bucket

bucket(type, attributes) := {
	"record": {"phase": "plan"},
	"change": {"production": false},
	"plan": {"resourceChanges": [{"address": sprintf("%s.assets", [type]), "type": type, "actions": ["create"], "attributes": attributes}]},
}

test_public_acl_denied if {
	some d in public_bucket.deny with input as bucket("aws_s3_bucket_acl", {"acl": "public-read"})
	d.evidence == ["plan.resource.aws_s3_bucket_acl.assets.acl"]
}

test_private_acl_allowed if {
	count(public_bucket.deny) == 0 with input as bucket("aws_s3_bucket_acl", {"acl": "private"})
}

test_disabled_public_access_block_denied if {
	some d in public_bucket.deny with input as bucket("aws_s3_bucket_public_access_block", {"block_public_acls": "false", "block_public_policy": "true"})
	d.evidence == ["plan.resource.aws_s3_bucket_public_access_block.assets.block_public_acls"]
}

test_gcs_all_users_denied if {
	count(public_bucket.deny) == 1 with input as bucket("google_storage_bucket_iam_member", {"member": "allUsers", "role": "roles/storage.objectViewer"})
}

test_azure_public_container_denied if {
	count(public_bucket.deny) == 1 with input as bucket("azurerm_storage_container", {"container_access_type": "blob"})
}

test_azure_account_public_nested_items_denied if {
	count(public_bucket.deny) == 1 with input as bucket("azurerm_storage_account", {"allow_nested_items_to_be_public": "true"})
}

test_bucket_without_attributes_allowed if {
	count(public_bucket.deny) == 0 with input as bucket("aws_s3_bucket", {})
}
