package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/api"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier/verifiertest"
)

// rotatedFixture is the fixture's log (genesis by the fixture's log key)
// rotated to a second fixed key, and the proof of that rotation as the
// server serves it.
func rotatedFixture(t testing.TB) (old, next *checkpoint.Signer, steps []api.LogKeyStep) {
	t.Helper()
	fx := newLogFixture(t)
	fx.open()
	fx.ensureTrust(fx.trust)
	fx.close()
	nextKey := verifiertest.FixedKey(t, "ed25519", "log-2027")
	next, err := checkpoint.NewSigner(testOrigin, nextKey.Priv.(ed25519.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: fx.dir, Origin: testOrigin, Signer: next, PreviousSigner: fx.signer, Clock: fx.now, CheckpointInterval: time.Hour, CacheMB: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	if err := ingest.RotateLogKey(context.Background(), lg, fx.logKey.Priv, next.VerifierKey(), "erin@example.com", fx.now()); err != nil {
		t.Fatal(err)
	}
	rots, err := lg.Rotations(context.Background())
	if err != nil || len(rots) != 1 {
		t.Fatalf("rotations %+v, %v", rots, err)
	}
	for _, r := range rots {
		s := api.LogKeyStep{Index: r.Index, Leaf: r.Leaf, Checkpoint: string(r.Checkpoint)}
		for _, h := range r.Proof {
			s.Proof = append(s.Proof, bytes.Clone(h[:]))
		}
		steps = append(steps, s)
	}
	return fx.signer, next, steps
}

// resignNote replaces a note's signatures by those of signers.
func resignNote(t testing.TB, signed string, signers ...note.Signer) string {
	t.Helper()
	text, _, _ := strings.Cut(signed, "\n\n")
	out, err := note.Sign(&note.Note{Text: text + "\n"}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestFollowLogKeys: an honest rotation leads from the pinned key to the
// new one; every forgery of a step is refused with a message naming it.
func TestFollowLogKeys(t *testing.T) {
	old, next, steps := rotatedFixture(t)
	key, at, err := audit.FollowLogKeys(old.VerifierKey(), steps)
	if err != nil || key != next.VerifierKey() || at != steps[0].Index {
		t.Fatalf("FollowLogKeys = %s, %d, %v; want %s at %d", key, at, err, next.VerifierKey(), steps[0].Index)
	}
	if key, _, err := audit.FollowLogKeys(old.VerifierKey(), nil); err != nil || key != old.VerifierKey() {
		t.Fatalf("no rotations: %s, %v", key, err)
	}
	edit := func(f func(*api.LogKeyStep)) []api.LogKeyStep {
		s := steps[0]
		s.Proof = append([][]byte(nil), s.Proof...)
		f(&s)
		return []api.LogKeyStep{s}
	}
	for _, c := range []struct {
		name  string
		steps []api.LogKeyStep
		want  string
	}{
		{"checkpoint signed by the new key alone", edit(func(s *api.LogKeyStep) { s.Checkpoint = resignNote(t, s.Checkpoint, next) }), "not signed by the key it replaces"},
		{"checkpoint signed by the old key alone", edit(func(s *api.LogKeyStep) { s.Checkpoint = resignNote(t, s.Checkpoint, old) }), "not signed by the new key"},
		{"another index", edit(func(s *api.LogKeyStep) { s.Index = 0 }), "not in the checkpoint's tree"},
		{"a proof hash changed", edit(func(s *api.LogKeyStep) {
			if len(s.Proof) == 0 {
				t.Fatal("the rotation entry has no proof hashes: the fixture changed")
			}
			s.Proof[0] = bytes.Repeat([]byte{7}, 32)
		}), "not in the checkpoint's tree"},
		{"a leaf byte changed", edit(func(s *api.LogKeyStep) { s.Leaf = bytes.Replace(s.Leaf, []byte("evident"), []byte("evidenT"), 1) }), "not in the checkpoint's tree"},
	} {
		if _, _, err := audit.FollowLogKeys(old.VerifierKey(), c.steps); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	// Pinned to another key, the chain does not start.
	if _, _, err := audit.FollowLogKeys(next.VerifierKey(), steps); err == nil || !strings.Contains(err.Error(), "not signed by the log key in force") {
		t.Errorf("pinned to the new key: %v", err)
	}
}

// FuzzFollowLogKeys: rotation steps as a server or bucket serves them (JSON)
// never panic FollowLogKeys, and whatever it accepts leads to the pinned key
// or the one its holder really announced: no other key can be reached
// without both keys' signatures.
func FuzzFollowLogKeys(f *testing.F) {
	old, next, steps := rotatedFixture(f)
	honest, err := json.Marshal(steps)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(honest)
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"index":1,"leaf":"","checkpoint":"","proof":[]}]`))
	f.Add(bytes.Replace(honest, []byte(`"index":`), []byte(`"index":1`), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		var steps []api.LogKeyStep
		if json.Unmarshal(data, &steps) != nil {
			return
		}
		key, _, err := audit.FollowLogKeys(old.VerifierKey(), steps)
		if err != nil {
			return
		}
		if key != old.VerifierKey() && key != next.VerifierKey() {
			t.Fatalf("followed to a key nobody announced: %s", key)
		}
	})
}
