package anchor_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	pbs "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"evident.dev/evident/anchor"
	"evident.dev/evident/audit"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/rekortilestest"
)

// TestRekorV2 runs the anchoring tests against a real Rekor v2
// (rekor-tiles with its POSIX backend on 127.0.0.1).
func TestRekorV2(t *testing.T) {
	rekor := rekortilestest.Start(t)
	t.Logf("rekor-tiles started in %v", rekor.Started.Round(time.Millisecond))
	v2 := rekorTarget{URL: rekor.URL, Version: 2, Keys: []crypto.PublicKey{v2Key(rekor)}}
	t.Run("anchor and verify", func(t *testing.T) { testAnchorV2(t, rekor, v2) })
	t.Run("resubmission after a restart records Rekor's existing entry", func(t *testing.T) { testResubmitV2(t, v2) })
	t.Run("anchor of a root the log never had", func(t *testing.T) { testForgedRoot(t, v2) })
	t.Run("Run anchors while the log grows", func(t *testing.T) { testRun(t, v2) })
	t.Run("a Rekor v2 signing with ECDSA", func(t *testing.T) {
		ec := rekortilestest.Start(t, rekortilestest.WithECDSAKey())
		l := newTestLog(t)
		l.add(1)
		l.settle()
		a, err := anchor.New(rekorTarget{URL: ec.URL, Version: 2, Keys: []crypto.PublicKey{v2Key(ec)}}.config(l.log, l))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Anchor(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rep, err := l.check(v2Key(ec)); err != nil || rep.Anchors != 1 {
			t.Fatalf("CheckLog: %v (%+v)", err, rep)
		}
	})
}

func v2Key(r *rekortilestest.RekorV2) audit.RekorV2Key {
	return audit.RekorV2Key{Origin: r.Origin, PublicKey: r.PublicKey}
}

func testAnchorV2(t *testing.T, rekor *rekortilestest.RekorV2, v2 rekorTarget) {
	ctx := context.Background()
	l := newTestLog(t)
	l.add(3)
	l.settle()
	a, err := anchor.New(v2.config(l.log, l))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := a.Anchor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("anchored in Rekor v2 in %v", time.Since(start).Round(time.Millisecond))
	anc := res.Anchor
	if anc.Version != 2 || anc.CheckpointSize != 4 || res.Receipt.Index != 4 || anc.LogID != "" || anc.InclusionProof != nil || anc.SignedEntryTimestamp != "" {
		t.Fatalf("anchor %+v recorded as entry %d", anc, res.Receipt.Index)
	}
	root, err := l.log.RootHash(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if anc.RootHash != hexOf(root) {
		t.Errorf("anchored root %s, the log's root at 4 is %x", anc.RootHash, root)
	}
	tle := entryOf(t, anc)
	if tle.GetKindVersion().GetVersion() != "0.0.2" || tle.GetLogIndex() != anc.LogIndex || tle.GetInclusionProof().GetTreeSize() <= tle.GetLogIndex() {
		t.Errorf("Rekor v2 entry %v", tle)
	}
	// The record is what an auditor reads back: decode it as one.
	st, err := l.anchors()[0].Statement()
	if err != nil {
		t.Fatal(err)
	}
	if string(st.Predicate.Anchor.TransparencyLogEntry) != string(anc.TransparencyLogEntry) {
		t.Errorf("the recorded entry differs from Rekor's answer")
	}

	l.add(2)
	l.settle()
	start = time.Now()
	res2, err := a.Anchor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("anchored again in %v", time.Since(start).Round(time.Millisecond))
	if res2.Anchor.CheckpointSize != 7 || res2.Anchor.LogIndex <= anc.LogIndex {
		t.Errorf("second anchor: checkpoint %d at Rekor index %d, want 7 after index %d", res2.Anchor.CheckpointSize, res2.Anchor.LogIndex, anc.LogIndex)
	}
	writeVector(t, "EVIDENT_ANCHOR_VECTOR_V2", res2.Anchor, l.signer.VerifierKey(), rekor.PinnedKeyPEM())

	rep, err := l.check(v2.Keys...)
	if err != nil || rep.Anchors != 2 || rep.AnchorsUnchecked != 0 {
		t.Fatalf("CheckLog with Rekor v2's key: %v, %d verified, %d unchecked, want 2 verified", err, rep.Anchors, rep.AnchorsUnchecked)
	}
	if rep, err = l.check(); err != nil || rep.AnchorsUnchecked != 2 {
		t.Fatalf("CheckLog without Rekor keys: %v, %+v", err, rep)
	}
	// A key pinned as Rekor v1's (no origin) does not vouch for Rekor v2.
	if _, err := l.check(rekor.PublicKey); !errors.Is(err, audit.ErrBadAnchor) || !strings.Contains(err.Error(), "no pinned Rekor v2 key") {
		t.Fatalf("CheckLog with the key pinned without its origin: %v", err)
	}

	logPub := l.key.Public().(ed25519.PublicKey)
	otherSeed := sha256.Sum256([]byte("another Rekor"))
	otherKey := ed25519.NewKeyFromSeed(otherSeed[:]).Public()
	// The second anchor's proof has a hash: Rekor held the first.
	anc2 := res2.Anchor
	tampered := []struct {
		name    string
		anchor  evidence.Anchor
		keys    []crypto.PublicKey
		mention string
	}{
		{name: "flipped proof hash", anchor: mutate(t, anc2, func(e *pbs.TransparencyLogEntry) { e.InclusionProof.Hashes[0][3] ^= 1 }),
			mention: "inclusion proof"},
		{name: "proof for another tree size", anchor: mutate(t, anc2, func(e *pbs.TransparencyLogEntry) { e.InclusionProof.TreeSize++ }),
			mention: "inclusion proof"},
		{name: "tampered Rekor checkpoint signature", anchor: mutate(t, anc2, func(e *pbs.TransparencyLogEntry) {
			e.InclusionProof.Checkpoint.Envelope = strings.Replace(e.InclusionProof.Checkpoint.Envelope, "\n\n", "\nextra\n\n", 1)
		}), mention: "checkpoint"},
		{name: "another index", anchor: func() evidence.Anchor {
			b := mutate(t, anc2, func(e *pbs.TransparencyLogEntry) { e.LogIndex++; e.InclusionProof.LogIndex++ })
			b.LogIndex++
			return b
		}(), mention: "inclusion proof"},
		{name: "logIndex not the entry's", anchor: func() evidence.Anchor { b := anc2; b.LogIndex++; return b }(), mention: "logIndex"},
		{name: "another checkpoint root", anchor: func() evidence.Anchor { b := anc2; b.RootHash = hexOf(sha256.Sum256(nil)); return b }(),
			mention: "not over the checkpoint"},
		{name: "another entry's body", anchor: mutate(t, anc2, func(e *pbs.TransparencyLogEntry) {
			e.CanonicalizedBody = []byte(strings.Replace(string(e.CanonicalizedBody), `"SHA2_512"`, `"SHA2_256"`, 1))
		}), mention: "not over the checkpoint"},
		{name: "wrong pinned key", anchor: anc2, keys: []crypto.PublicKey{audit.RekorV2Key{Origin: rekor.Origin, PublicKey: otherKey}},
			mention: "not the ID of a pinned Rekor v2 key"},
		{name: "right key, another origin", anchor: anc2, keys: []crypto.PublicKey{audit.RekorV2Key{Origin: "rekor.elsewhere", PublicKey: rekor.PublicKey}},
			mention: "not the ID of a pinned Rekor v2 key"},
		{name: "read as a Rekor v1 anchor", anchor: func() evidence.Anchor { b := anc2; b.Version = 0; return b }(),
			mention: "body"},
	}
	for _, c := range tampered {
		t.Run(c.name, func(t *testing.T) {
			keys := v2.Keys
			if c.keys != nil {
				keys = c.keys
			}
			err := audit.VerifyAnchor(&c.anchor, testOrigin, logPub, keys)
			t.Logf("%v", err)
			if !errors.Is(err, audit.ErrBadAnchor) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("VerifyAnchor: %v, want ErrBadAnchor mentioning %q", err, c.mention)
			}
		})
	}

	t.Run("a tampered anchor in the log stops the audit", func(t *testing.T) {
		idx := record(t, l, tampered[0].anchor)
		_, err := l.check(v2.Keys...)
		var be *audit.BadEntryError
		if !errors.As(err, &be) || be.Index != idx || !errors.Is(err, audit.ErrBadAnchor) {
			t.Fatalf("CheckLog of a log with a flipped proof hash at entry %d: %v", idx, err)
		}
	})

	t.Run("a Rekor v2 that is not pinned is refused and nothing is recorded", func(t *testing.T) {
		l := newTestLog(t)
		l.add(1)
		l.settle()
		wrong := rekorTarget{URL: rekor.URL, Version: 2, Keys: []crypto.PublicKey{audit.RekorV2Key{Origin: rekor.Origin, PublicKey: otherKey}}}
		a, err := anchor.New(wrong.config(l.log, l))
		if err != nil {
			t.Fatal(err)
		}
		before := l.log.Size()
		if _, err := a.Anchor(ctx); !errors.Is(err, audit.ErrBadAnchor) {
			t.Fatalf("anchoring with an unpinned Rekor v2: %v, want ErrBadAnchor", err)
		}
		if l.log.Size() != before {
			t.Errorf("the log grew from %d to %d after a refused anchor", before, l.log.Size())
		}
	})
}

// testResubmitV2 submits one checkpoint twice, from two Anchorers as across
// a restart: Rekor v2 answers the second with 409 and the index it holds,
// and the Anchorer records the existing entry, proved from the tiles.
func testResubmitV2(t *testing.T, v2 rekorTarget) {
	ctx := context.Background()
	l := newTestLog(t)
	l.add(2)
	l.settle()
	signed, err := l.log.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	pinned := pinnedLog{Log: l.log, cp: signed}
	var results []*anchor.Result
	for i := range 2 {
		a, err := anchor.New(v2.config(pinned, l))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		res, err := a.Anchor(ctx)
		if err != nil {
			t.Fatalf("submission %d of the same checkpoint: %v", i+1, err)
		}
		t.Logf("submission %d: %v", i+1, time.Since(start).Round(time.Millisecond))
		results = append(results, res)
	}
	first, again := results[0], results[1]
	if again.Anchor.LogIndex != first.Anchor.LogIndex {
		t.Errorf("Rekor index %d on resubmission, want the existing %d", again.Anchor.LogIndex, first.Anchor.LogIndex)
	}
	if string(entryOf(t, again.Anchor).CanonicalizedBody) != string(entryOf(t, first.Anchor).CanonicalizedBody) {
		t.Errorf("the rebuilt entry's body differs from Rekor's answer")
	}
	if again.Receipt.Index == first.Receipt.Index {
		t.Errorf("the resubmission was not recorded")
	}
	if rep, err := l.check(v2.Keys...); err != nil || rep.Anchors != 2 {
		t.Fatalf("CheckLog: %v (%+v)", err, rep)
	}
}

func entryOf(t *testing.T, a evidence.Anchor) *pbs.TransparencyLogEntry {
	t.Helper()
	var e pbs.TransparencyLogEntry
	if err := protojson.Unmarshal(a.TransparencyLogEntry, &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

// mutate returns a copy of a with its Rekor v2 entry changed by f.
func mutate(t *testing.T, a evidence.Anchor, f func(*pbs.TransparencyLogEntry)) evidence.Anchor {
	t.Helper()
	e := entryOf(t, a)
	f(e)
	b, err := protojson.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	a.TransparencyLogEntry = b
	return a
}
