package audit_test

import (
	"bytes"
	"testing"

	"evident.dev/evident/audit"
)

// FuzzReadPack: a pack is outside input (it travels by mail and tickets);
// decoding and checking never panic, and a pack without a valid signed
// checkpoint of the pinned key never verifies.
func FuzzReadPack(f *testing.F) {
	f.Add([]byte(`{"format":"evident.dev/pack/v1","origin":"o","logKey":"k","change":"c","checkpoint":"o\n1\nAAAA\n\n— o abc\n","entries":[{"index":0,"leaf":"AA==","proof":[]}]}`))
	f.Add([]byte(`{"format":"evident.dev/pack/v1","entries":null,"trust":[{"index":0}]}`))
	f.Add([]byte(`[]`))
	const key = "evident.test/fuzz+9c5d5bb9+AXz7zRUgPavAlrdLlCTbNQcXakcJ6p6cCiqB3sDaTHPf"
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := audit.ReadPack(bytes.NewReader(b))
		if err != nil {
			return
		}
		if _, err := audit.CheckPack(p, key); err == nil {
			t.Fatalf("a fuzzed pack verifies: %s", b)
		}
	})
}
