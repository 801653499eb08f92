package evidence_test

import (
	"testing"

	"evident.dev/evident/evidence"
)

// anchorCases are invalid checkpoint.anchored records; TestDecodeRejects
// runs them with invalidCases.
var anchorCases = []invalidCase{
	{name: "anchor without body", kind: evidence.KindCheckpointAnchored, mut: del("predicate.anchor.body"),
		fields: []string{"predicate.anchor.body"}},
	{name: "anchor body not base64", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.body", "not base64!"),
		fields: []string{"predicate.anchor.body"}},
	{name: "anchor SET not base64", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.signedEntryTimestamp", "MEUC==x"),
		fields: []string{"predicate.anchor.signedEntryTimestamp"}},
	{name: "anchor rootHash upper case", kind: evidence.KindCheckpointAnchored,
		mut:    set("predicate.anchor.rootHash", "9E4AE5643818E741D99A703DEFA2646920C1A300753AC914E144E98730FB50A1"),
		fields: []string{"predicate.anchor.rootHash"}},
	{name: "anchor of the empty checkpoint", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.checkpointSize", 0),
		fields: []string{"predicate.anchor.checkpointSize"}},
	{name: "anchor without logId", kind: evidence.KindCheckpointAnchored, mut: del("predicate.anchor.logId"),
		fields: []string{"predicate.anchor.logId"}},
	{name: "anchor with negative logIndex", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.logIndex", -1),
		fields: []string{"predicate.anchor.logIndex"}},
	{name: "anchor without integratedTime", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.integratedTime", 0),
		fields: []string{"predicate.anchor.integratedTime"}},
	{name: "anchor proof index outside its tree", kind: evidence.KindCheckpointAnchored,
		mut:    set("predicate.anchor.inclusionProof.treeSize", 0),
		fields: []string{"predicate.anchor.inclusionProof.treeSize"}},
	{name: "anchor proof index at its tree size", kind: evidence.KindCheckpointAnchored,
		mut: func(t testing.TB, d doc) {
			p := d["predicate"].(doc)["anchor"].(doc)["inclusionProof"].(doc)
			p["treeSize"] = p["logIndex"]
		},
		fields: []string{"predicate.anchor.inclusionProof.treeSize"}, schema: schemaCannotTell},
	{name: "anchor proof hash not hex", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.inclusionProof.hashes.0", "zz"),
		fields: []string{"predicate.anchor.inclusionProof.hashes[0]"}},
	{name: "anchor Rekor checkpoint with a tab", kind: evidence.KindCheckpointAnchored,
		mut:    set("predicate.anchor.inclusionProof.checkpoint", "rekor.test - 1\n2\n\tx\n"),
		fields: []string{"predicate.anchor.inclusionProof.checkpoint"}},
	{name: "anchor Rekor checkpoint without final newline", kind: evidence.KindCheckpointAnchored,
		mut:    set("predicate.anchor.inclusionProof.checkpoint", "rekor.test - 1\n2\nroot"),
		fields: []string{"predicate.anchor.inclusionProof.checkpoint"}},
	{name: "anchor without inclusion proof checkpoint", kind: evidence.KindCheckpointAnchored,
		mut:    del("predicate.anchor.inclusionProof.checkpoint"),
		fields: []string{"predicate.anchor.inclusionProof.checkpoint"}},
	{name: "anchor block on a gate decision", kind: evidence.KindGateDecided,
		mut:    set("predicate.anchor", map[string]any{"checkpointSize": 1}),
		fields: []string{"predicate.anchor"}},
	{name: "anchor unknown field", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.uuid", "x"),
		malformed: true, mentions: []string{"predicate.anchor.uuid"}},
}
