package evidence_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"evident.dev/evident/evidence"
)

// anchorV2Example is a checkpoint.anchored record of a Rekor v2 anchor,
// built from the anchor package's test vector (audit/testdata/anchor-v2.json).
const anchorV2Example = "checkpoint.anchored.v2.json"

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
	{name: "anchor without inclusion proof", kind: evidence.KindCheckpointAnchored, mut: del("predicate.anchor.inclusionProof"),
		fields: []string{"predicate.anchor.inclusionProof"}},
	{name: "anchor version 3", kind: evidence.KindCheckpointAnchored, mut: set("predicate.anchor.version", 3),
		fields: []string{"predicate.anchor.version"}},
	{name: "Rekor v1 anchor with a Rekor v2 entry", kind: evidence.KindCheckpointAnchored,
		mut:    set("predicate.anchor.transparencyLogEntry", map[string]any{"logIndex": "1"}),
		fields: []string{"predicate.anchor.transparencyLogEntry"}},

	{name: "Rekor v2 anchor without its entry", example: anchorV2Example, mut: del("predicate.anchor.transparencyLogEntry"),
		fields: []string{"predicate.anchor.transparencyLogEntry"}},
	{name: "Rekor v2 entry not an object", example: anchorV2Example, mut: set("predicate.anchor.transparencyLogEntry", []any{}),
		fields: []string{"predicate.anchor.transparencyLogEntry"}},
	{name: "Rekor v2 entry too long", example: anchorV2Example,
		mut:    set("predicate.anchor.transparencyLogEntry", map[string]any{"canonicalizedBody": strings.Repeat("A", 65536)}),
		fields: []string{"predicate.anchor.transparencyLogEntry"}, schema: schemaCannotTell},
	{name: "Rekor v2 anchor with a Rekor v1 logId", example: anchorV2Example,
		mut:    set("predicate.anchor.logId", "c414e4a0d5c676ce88a9ea89082595a789e1fab406f9af2c7e9d0fc837c689ed"),
		fields: []string{"predicate.anchor.logId"}},
	{name: "Rekor v2 anchor with an integrated time", example: anchorV2Example, mut: set("predicate.anchor.integratedTime", 1795653560),
		fields: []string{"predicate.anchor.integratedTime"}},
	{name: "Rekor v2 anchor with a Rekor v1 body", example: anchorV2Example, mut: set("predicate.anchor.body", "e30="),
		fields: []string{"predicate.anchor.body"}},
	{name: "Rekor v2 anchor with a SET", example: anchorV2Example, mut: set("predicate.anchor.signedEntryTimestamp", "MEUC"),
		fields: []string{"predicate.anchor.signedEntryTimestamp"}},
	{name: "Rekor v2 anchor with a Rekor v1 proof", example: anchorV2Example,
		mut:    set("predicate.anchor.inclusionProof", map[string]any{"logIndex": 0, "treeSize": 1, "rootHash": strings.Repeat("0", 64), "checkpoint": "r\n"}),
		fields: []string{"predicate.anchor.inclusionProof"}},
}

// TestAnchorV2Example checks the Rekor v2 example as TestExamples checks
// the examples of the kinds: it decodes, the schema takes it, it is in
// canonical form, and docs/kinds.md shows it.
func TestAnchorV2Example(t *testing.T) {
	raw, err := os.ReadFile("testdata/" + anchorV2Example)
	if err != nil {
		t.Fatal(err)
	}
	st, err := evidence.Decode(raw)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if a := st.Predicate.Anchor; a == nil || a.Version != 2 || len(a.TransparencyLogEntry) == 0 || a.InclusionProof != nil {
		t.Fatalf("anchor %+v", a)
	}
	if err := schemaValidate(t, raw); err != nil {
		t.Errorf("schema: %v", err)
	}
	canonical, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(raw), canonical) {
		t.Errorf("example is not in canonical form; json.MarshalIndent gives:\n%s", canonical)
	}
	docs, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range fenceRe.FindAllSubmatch(docs, -1) {
		var b bytes.Buffer
		if json.Compact(&b, m[1]) == nil && b.String() == compact.String() {
			found = true
		}
	}
	if !found {
		t.Errorf("%s does not show testdata/%s in a ```json block", docsFile, anchorV2Example)
	}

	// Empty Rekor v1 fields are as good as absent, for Go and the schema.
	d := docOf(t, raw)
	for _, m := range []func(testing.TB, doc){
		set("predicate.anchor.logId", ""), set("predicate.anchor.integratedTime", 0), set("predicate.anchor.body", ""),
		set("predicate.anchor.signedEntryTimestamp", ""),
	} {
		m(t, d)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.Decode(b); err != nil {
		t.Errorf("Decode with empty Rekor v1 fields: %v", err)
	}
	if err := schemaValidate(t, b); err != nil {
		t.Errorf("schema with empty Rekor v1 fields: %v", err)
	}
}
