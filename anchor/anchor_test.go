package anchor_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/anchor"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/internal/rekortest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

const testOrigin = "evident.test/anchor"

// testLog is a real log in a temporary directory, bootstrapped, with the
// ingest handler's Recorder for the log's own records.
type testLog struct {
	t      *testing.T
	key    ed25519.PrivateKey
	signer *checkpoint.Signer
	log    *ledger.Log
	rec    *ingest.Recorder
	gate   evidence.Statement // a gate.decided record to append as filler
	n      int
}

func newTestLog(t *testing.T) *testLog {
	t.Helper()
	seed := sha256.Sum256([]byte("anchor test log key"))
	l := &testLog{t: t, key: ed25519.NewKeyFromSeed(seed[:])}
	var err error
	if l.signer, err = checkpoint.NewSigner(testOrigin, l.key); err != nil {
		t.Fatal(err)
	}
	l.log, err = ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: testOrigin, Signer: l.signer,
		CheckpointInterval: 10 * time.Millisecond, CacheMB: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.log.Close(); err != nil {
			t.Errorf("close log: %v", err)
		}
	})
	ctx := context.Background()
	if err := ingest.EnsureTrust(ctx, l.log, l.key, verifier.TrustConfig{}, ingest.Genesis{
		Operator: "erin@example.com", Origin: testOrigin, LogKey: l.signer.VerifierKey(), Now: time.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.TrustConfig{}, l.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	l.rec = ingest.New(ingest.Config{Log: l.log, Verifier: v}).Recorder(l.key)
	raw, err := os.ReadFile("../evidence/testdata/kinds/gate.decided.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := evidence.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	l.gate = *st
	return l
}

// add appends n gate decisions, as a busy log would.
func (l *testLog) add(n int) {
	l.t.Helper()
	for range n {
		l.n++
		tr := l.gate.Predicate
		tr.OccurredAt = time.Now().UTC().Add(-time.Minute)
		tr.ChangeID = "CHG-" + strings.Repeat("7", l.n%5+1)
		if _, err := l.rec.Record(context.Background(), l.gate.Subject, tr); err != nil {
			l.t.Fatal(err)
		}
	}
}

// settle waits until a signed checkpoint covers the whole log.
func (l *testLog) settle() {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.log.CheckpointSize() != l.log.Size() {
		if time.Now().After(deadline) {
			l.t.Fatalf("no checkpoint of the whole log (size %d, checkpoint %d)", l.log.Size(), l.log.CheckpointSize())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *testLog) anchorer(t *testing.T, rekor *rekortest.Rekor, keys ...crypto.PublicKey) *anchor.Anchorer {
	t.Helper()
	if keys == nil {
		keys = []crypto.PublicKey{rekor.PublicKey}
	}
	a, err := anchor.New(anchor.Config{Rekor: rekor.URL, RekorKeys: keys, Log: l.log, LogKey: l.key, Recorder: l.rec})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// check runs the offline log check an auditor runs.
func (l *testLog) check(rekorKeys ...crypto.PublicKey) (*audit.CheckReport, error) {
	l.t.Helper()
	snap, err := l.log.Snapshot()
	if err != nil {
		l.t.Fatal(err)
	}
	defer snap.Close()
	return audit.CheckLog(context.Background(), snap, audit.CheckOptions{
		Origin: testOrigin, LogKey: l.signer.VerifierKey(), Signatures: true, RekorKeys: rekorKeys,
	})
}

func (l *testLog) anchors() []*evidence.Entry {
	l.t.Helper()
	es, err := l.log.Entries(context.Background(), ledger.Query{Name: ledger.TermKind, Value: string(evidence.KindCheckpointAnchored)})
	if err != nil {
		l.t.Fatal(err)
	}
	return es
}

// TestRekor runs everything that needs a real Rekor against one, since
// starting MariaDB, Trillian and Rekor takes seconds.
func TestRekor(t *testing.T) {
	rekor := rekortest.Start(t)
	t.Logf("Rekor, Trillian and MariaDB started in %v", rekor.Started.Round(time.Millisecond))
	t.Run("anchor and verify", func(t *testing.T) { testAnchor(t, rekor) })
	v1 := rekorTarget{URL: rekor.URL, Keys: []crypto.PublicKey{rekor.PublicKey}}
	t.Run("anchor of a root the log never had", func(t *testing.T) { testForgedRoot(t, v1) })
	t.Run("Run anchors while the log grows", func(t *testing.T) { testRun(t, v1) })
}

// rekorTarget is the Rekor, of either version, a test anchors in.
type rekorTarget struct {
	URL     string
	Version int
	Keys    []crypto.PublicKey
}

func (r rekorTarget) config(log anchor.Log, l *testLog) anchor.Config {
	return anchor.Config{Rekor: r.URL, RekorVersion: r.Version, RekorKeys: r.Keys, Log: log, LogKey: l.key, Recorder: l.rec}
}

func testAnchor(t *testing.T, rekor *rekortest.Rekor) {
	ctx := context.Background()
	l := newTestLog(t)
	l.add(3)
	l.settle()
	a := l.anchorer(t, rekor)

	res, err := a.Anchor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Anchor.CheckpointSize != 4 || res.Receipt.Index != 4 || res.Receipt.Kind != evidence.KindCheckpointAnchored {
		t.Fatalf("anchored checkpoint %d as entry %d (%s), want checkpoint 4 as entry 4", res.Anchor.CheckpointSize, res.Receipt.Index, res.Receipt.Kind)
	}
	if res.Receipt.Signer.Name != verifier.LogSigner {
		t.Errorf("the anchor is signed by %q, not the log", res.Receipt.Signer.Name)
	}
	root, err := l.log.RootHash(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if res.Anchor.RootHash != hexOf(root) {
		t.Errorf("anchored root %s, the log's root at 4 is %x", res.Anchor.RootHash, root)
	}
	id, _ := audit.RekorLogID(rekor.PublicKey)
	if res.Anchor.LogID != id || res.Anchor.InclusionProof.TreeSize <= res.Anchor.InclusionProof.LogIndex {
		t.Errorf("anchor names Rekor log %s (tree size %d, index %d), want %s", res.Anchor.LogID,
			res.Anchor.InclusionProof.TreeSize, res.Anchor.InclusionProof.LogIndex, id)
	}

	// The log grows and is anchored again, in a later Rekor entry.
	l.add(2)
	l.settle()
	res2, err := a.Anchor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Anchor.CheckpointSize != 7 || res2.Anchor.LogIndex <= res.Anchor.LogIndex {
		t.Errorf("second anchor: checkpoint %d at Rekor index %d, want 7 after index %d", res2.Anchor.CheckpointSize, res2.Anchor.LogIndex, res.Anchor.LogIndex)
	}

	rep, err := l.check(rekor.PublicKey)
	if err != nil {
		t.Fatalf("CheckLog with Rekor's key: %v", err)
	}
	if rep.Anchors != 2 || rep.AnchorsUnchecked != 0 {
		t.Errorf("CheckLog verified %d anchors (%d unchecked), want 2", rep.Anchors, rep.AnchorsUnchecked)
	}
	rep, err = l.check()
	if err != nil {
		t.Fatalf("CheckLog without Rekor's key: %v", err)
	}
	if rep.Anchors != 0 || rep.AnchorsUnchecked != 2 {
		t.Errorf("CheckLog without Rekor's key: %d anchors verified, %d unchecked, want 0 and 2", rep.Anchors, rep.AnchorsUnchecked)
	}
	writeVector(t, "EVIDENT_ANCHOR_VECTOR", res2.Anchor, l.signer.VerifierKey(), pemKey(t, rekor.PublicKey))

	t.Run("resubmitting a checkpoint records Rekor's existing entry", func(t *testing.T) {
		l.settle()
		signed, err := l.log.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		pinned := pinnedLog{Log: l.log, cp: signed}
		a1, err := anchor.New(anchor.Config{Rekor: rekor.URL, RekorKeys: []crypto.PublicKey{rekor.PublicKey}, Log: pinned, LogKey: l.key, Recorder: l.rec})
		if err != nil {
			t.Fatal(err)
		}
		first, err := a1.Anchor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		again, err := a1.Anchor(ctx)
		if err != nil {
			t.Fatalf("second submission of the same checkpoint: %v", err)
		}
		if again.Anchor.LogIndex != first.Anchor.LogIndex || again.Anchor.Body != first.Anchor.Body {
			t.Errorf("Rekor index %d on resubmission, want the existing %d", again.Anchor.LogIndex, first.Anchor.LogIndex)
		}
		if again.Receipt.Index == first.Receipt.Index {
			t.Errorf("the resubmission was not recorded")
		}
	})

	t.Run("a Rekor that is not pinned is refused and nothing is recorded", func(t *testing.T) {
		other, err := anchor.New(anchor.Config{Rekor: rekor.URL, RekorKeys: []crypto.PublicKey{l.key.Public()}, Log: l.log, LogKey: l.key, Recorder: l.rec})
		if err != nil {
			t.Fatal(err)
		}
		l.add(1)
		l.settle()
		before := l.log.Size()
		_, err = other.Anchor(ctx)
		if !errors.Is(err, audit.ErrBadAnchor) || !strings.Contains(err.Error(), "not the ID of a trusted Rekor key") {
			t.Fatalf("anchoring with an unpinned Rekor: %v, want ErrBadAnchor naming the key", err)
		}
		if l.log.Size() != before {
			t.Errorf("the log grew from %d to %d after a refused anchor", before, l.log.Size())
		}
	})

	t.Run("tampered SET refused", func(t *testing.T) {
		bad := res.Anchor
		set, _ := base64.StdEncoding.DecodeString(bad.SignedEntryTimestamp)
		set[len(set)/2] ^= 1
		bad.SignedEntryTimestamp = base64.StdEncoding.EncodeToString(set)
		err := audit.VerifyAnchor(&bad, testOrigin, l.key.Public().(ed25519.PublicKey), []crypto.PublicKey{rekor.PublicKey})
		if !errors.Is(err, audit.ErrBadAnchor) || !strings.Contains(err.Error(), "signed entry timestamp") {
			t.Fatalf("VerifyAnchor of a tampered SET: %v", err)
		}
		// Recorded in the log (signed by the log key: the record is
		// authentic, its content is not), the audit stops at it.
		idx := record(t, l, bad)
		_, err = l.check(rekor.PublicKey)
		var be *audit.BadEntryError
		if !errors.As(err, &be) || be.Index != idx || !errors.Is(err, audit.ErrBadAnchor) {
			t.Fatalf("CheckLog of a log with a tampered SET at entry %d: %v", idx, err)
		}
	})
}

// TestAnchorOfARootTheLogNeverHad anchors, for real, a checkpoint the log
// key signed but the log never had: Rekor accepts it, and the audit refuses it.
func testForgedRoot(t *testing.T, rekor rekorTarget) {
	ctx := context.Background()
	l := newTestLog(t)
	l.add(2)
	l.settle()
	size := l.log.Size()
	forged := sha256.Sum256([]byte("another history"))
	signed, err := note.Sign(&note.Note{Text: string(checkpoint.Text(testOrigin, size, forged))}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	a, err := anchor.New(rekor.config(pinnedLog{Log: l.log, cp: signed}, l))
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Anchor(ctx)
	if err != nil {
		t.Fatalf("Rekor's side of the forged anchor should verify: %v", err)
	}
	_, err = l.check(rekor.Keys...)
	var be *audit.BadEntryError
	if !errors.As(err, &be) || be.Index != res.Receipt.Index || !strings.Contains(err.Error(), "the log's root at that size is") {
		t.Fatalf("CheckLog of an anchor of a root the log never had (entry %d): %v", res.Receipt.Index, err)
	}
	// Without Rekor's key the log-side check still refuses it.
	if _, err := l.check(); !errors.Is(err, audit.ErrBadAnchor) {
		t.Fatalf("CheckLog without Rekor's key: %v", err)
	}
}

// TestRunAnchorsWhileTheLogGrows runs the serve option's loop against a real
// Rekor: it anchors new checkpoints and leaves an idle log alone.
func testRun(t *testing.T, rekor rekorTarget) {
	l := newTestLog(t)
	l.add(2)
	l.settle()
	watched := &countingLog{Log: l.log}
	a, err := anchor.New(rekor.config(watched, l))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, 50*time.Millisecond) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(stop)
	waitAnchors := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for len(l.anchors()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d anchors recorded, want %d", len(l.anchors()), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAnchors(1)
	// Idle: the only new entry is the anchor itself. Wait for three reads
	// of the settled checkpoint: a round reads it once to decide and once
	// more if it anchors, and records that anchor before the next round
	// reads again, so by the third read a wrong anchor is in the log.
	l.settle()
	read := watched.reads.Load()
	deadline := time.Now().Add(30 * time.Second)
	for watched.reads.Load() < read+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the anchoring loop read the checkpoint %d times in 30s, want 3", watched.reads.Load()-read)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(l.anchors()); n != 1 {
		t.Fatalf("an idle log was anchored %d times, want once", n)
	}
	l.add(1)
	waitAnchors(2)
	st, err := l.anchors()[1].Statement()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Predicate.Anchor.CheckpointSize; got < 5 {
		t.Errorf("the second anchor covers %d entries, want the new record (entry 4) too", got)
	}
	stop()
	if _, err := l.check(rekor.Keys...); err != nil {
		t.Fatalf("CheckLog: %v", err)
	}
}

// pinnedLog is the real log with its latest checkpoint pinned to cp: the
// way to submit one checkpoint twice, or one the log never signed.
type pinnedLog struct {
	*ledger.Log
	cp []byte
}

func (p pinnedLog) Checkpoint() ([]byte, error) { return p.cp, nil }

// countingLog is the real log, counting the anchoring loop's reads of its
// checkpoint: the loop's rounds, seen from outside.
type countingLog struct {
	*ledger.Log
	reads atomic.Int64
}

func (c *countingLog) Checkpoint() ([]byte, error) {
	c.reads.Add(1)
	return c.Log.Checkpoint()
}

// record appends an anchor block as the log's own record.
func record(t *testing.T, l *testLog, a evidence.Anchor) uint64 {
	t.Helper()
	r, err := l.rec.Record(context.Background(), []evidence.Subject{{Name: "checkpoint", Digest: map[string]string{"sha256": a.RootHash}}},
		evidence.Transition{Kind: evidence.KindCheckpointAnchored, ChangeID: "checkpoint-tampered", OccurredAt: time.Now().UTC(), Actor: "test", Anchor: &a})
	if err != nil {
		t.Fatal(err)
	}
	return r.Index
}

func hexOf(b [32]byte) string { return hex.EncodeToString(b[:]) }

// writeVector saves a real anchor, with the keys to check it (the pinned
// Rekor key as its key file holds it), as a test vector for the audit
// package's offline tests when the variable env names a file:
// go test ./anchor -run TestRekor (with EVIDENT_ANCHOR_VECTOR or
// EVIDENT_ANCHOR_VECTOR_V2 set).
func writeVector(t *testing.T, env string, a evidence.Anchor, logVKey string, rekorKeyPEM []byte) {
	path := os.Getenv(env)
	if path == "" {
		return
	}
	b, err := json.MarshalIndent(map[string]any{
		"origin":   testOrigin,
		"logKey":   logVKey,
		"rekorKey": string(rekorKeyPEM),
		"anchor":   a,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func pemKey(t *testing.T, k crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
