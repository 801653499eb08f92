# Mutable image tags and unsigned images are denied in production (sections 8
# and 16), judged on artifact.admitted records.
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
	not contains(input.artifact.image, "@sha256:")
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
