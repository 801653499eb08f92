# Mutable image tags and unsigned images are denied in production, judged on
# artifact.admitted records. The record names the image repository in
# `image` and what was admitted in `digest` (docs/kinds.md): an image is
# referenced by a mutable tag when `image` carries a tag and no digest pin,
# or when no digest was admitted.
package evident.rules.images

import data.evident.lib

deny contains {
	"ruleId": "supply-chain.prod.image.mutable-tag",
	"severity": "high",
	"message": "Production images must be referenced by digest, not by a mutable tag.",
	"evidence": [sprintf("artifact.image.%s", [input.artifact.image])],
} if {
	lib.production
	input.record.phase == "admission"
	mutable_tag
}

# A tag is what follows the last ':' after the last '/' (a registry's port
# comes before a '/').
mutable_tag if {
	not contains(input.artifact.image, "@")
	regex.match(`:[^/]+$`, input.artifact.image)
}

mutable_tag if {
	object.get(input.artifact, "digest", "") == ""
}

deny contains {
	"ruleId": "supply-chain.prod.image.unsigned",
	"severity": "critical",
	"message": "Production images must be signed.",
	"evidence": [sprintf("artifact.digest.%s", [input.artifact.digest])],
} if {
	lib.production
	input.record.phase == "admission"
	not input.artifact.signed
}
