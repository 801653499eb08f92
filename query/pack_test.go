package query_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
)

func TestEvidencePackVerifiesOffline(t *testing.T) {
	h := newHarness(t, tenancyConfig())
	h.loadDemo()
	const change = "CHG-2026-06-24-0101"
	body, status := h.get(auditorToken, "/v1/packs/"+change)
	if status != 200 {
		t.Fatalf("pack: %d %s", status, body)
	}
	p, err := audit.ReadPack(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.CheckPack(p, h.logKey)
	if err != nil {
		t.Fatalf("a pack straight from the server does not verify: %v", err)
	}
	if rep.Records != 6 || rep.Signatures != 6 || rep.TreeSize != h.log.CheckpointSize() {
		t.Errorf("report %+v: want 6 records, 6 signatures, tree size %d", rep, h.log.CheckpointSize())
	}

	// A tenant's pack has no log-wide trust entries: inclusion only.
	tb, status := h.get(stagingToken, "/v1/packs/CHG-2026-06-30-0909")
	if status != 200 {
		t.Fatalf("tenant pack: %d %s", status, tb)
	}
	tp, err := audit.ReadPack(bytes.NewReader(tb))
	if err != nil {
		t.Fatal(err)
	}
	if len(tp.Trust) != 0 {
		t.Error("a tenant's pack carries the log's trust entries")
	}
	if rep, err := audit.CheckPack(tp, h.logKey); err != nil || rep.Signatures != 0 || rep.Records != 4 {
		t.Errorf("tenant pack: %+v %v", rep, err)
	}

	// Every kind of tampering is caught.
	tamper := map[string]func(p *audit.Pack){
		"leaf byte":      func(p *audit.Pack) { p.Entries[1].Leaf[len(p.Entries[1].Leaf)-5] ^= 1 },
		"proof hash":     func(p *audit.Pack) { p.Entries[0].Proof[0][0] ^= 1 },
		"dropped proof":  func(p *audit.Pack) { p.Entries[0].Proof = p.Entries[0].Proof[1:] },
		"checkpoint":     func(p *audit.Pack) { p.Checkpoint = strings.Replace(p.Checkpoint, "\n", "\n1", 1) },
		"other change":   func(p *audit.Pack) { p.Change = "CHG-2026-06-25-0202" },
		"index":          func(p *audit.Pack) { p.Entries[2].Index++ },
		"order":          func(p *audit.Pack) { p.Entries[0], p.Entries[1] = p.Entries[1], p.Entries[0] },
		"no trust start": func(p *audit.Pack) { p.Trust = p.Trust[1:]; p.Trust = append(p.Trust, p.Entries[0]) },
		"empty":          func(p *audit.Pack) { p.Entries = nil },
		"foreign origin": func(p *audit.Pack) { p.Origin = "evil.example/log" },
	}
	for name, f := range tamper {
		var cp audit.Pack
		if err := json.Unmarshal(body, &cp); err != nil {
			t.Fatal(err)
		}
		f(&cp)
		if _, err := audit.CheckPack(&cp, h.logKey); err == nil {
			t.Errorf("tampered %s: the pack still verifies", name)
		}
	}
	// Another key of the same origin refuses the pack.
	other, err := checkpoint.NewSigner(testOrigin, seededKey("another log"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.CheckPack(p, other.VerifierKey()); err == nil {
		t.Error("a pack verifies under another log key")
	}
}
