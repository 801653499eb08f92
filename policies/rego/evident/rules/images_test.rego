package evident.rules.images_test

import data.evident.rules.images

admission(production, image, signed) := {
	"record": {"phase": "admission"},
	"change": {"production": production},
	"artifact": {"image": image, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "signed": signed},
}

pinned := "registry.example.com/orders-api@sha256:1111111111111111111111111111111111111111111111111111111111111111"

rule_ids(inp) := {d.ruleId | some d in images.deny with input as inp}

# docs/kinds.md's form: the repository in image, the admitted digest beside it.
test_repository_with_digest_allowed if {
	rule_ids(admission(true, "registry.example.com/orders-api", true)) == set()
}

test_registry_port_is_not_a_tag if {
	rule_ids(admission(true, "registry.example.com:5000/orders-api", true)) == set()
}

test_no_digest_denied_in_production if {
	rule_ids({
		"record": {"phase": "admission"},
		"change": {"production": true},
		"artifact": {"image": "registry.example.com/orders-api", "digest": "", "signed": true},
	}) == {"supply-chain.prod.image.mutable-tag"}
}

test_mutable_tag_denied_in_production if {
	rule_ids(admission(true, "registry.example.com/orders-api:latest", true)) == {"supply-chain.prod.image.mutable-tag"}
}

test_unsigned_denied_in_production if {
	rule_ids(admission(true, pinned, false)) == {"supply-chain.prod.image.unsigned"}
}

test_signed_pinned_image_allowed if {
	rule_ids(admission(true, pinned, true)) == set()
}

test_non_production_allowed if {
	rule_ids(admission(false, "registry.example.com/orders-api:latest", false)) == set()
}
