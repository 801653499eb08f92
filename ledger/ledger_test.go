package ledger_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// TestRecordDigestMatchesVerifier pins the test records to what ingest
// appends: the verifier accepts them and derives the same digest and terms.
func TestRecordDigestMatchesVerifier(t *testing.T) {
	der, err := x509.MarshalPKIXPublicKey(recordKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{{
		Name:      "ci",
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Scope:     verifier.Scope{Environments: []string{"*"}},
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []spec{{n: 1}, {n: 2, kind: evidence.KindApplyStarted, env: "staging"}} {
		rec := makeRecord(t, s)
		got, err := v.Verify(rec.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != rec.Digest || got.Signer.Name != "ci" {
			t.Fatalf("verifier digest %x signer %v, test record digest %x", got.Digest, got.Signer, rec.Digest)
		}
		if !slices.Equal(ledger.TermsFor(got.Statement, evidence.EntryMeta{Findings: rec.Findings}), rec.Terms) || len(rec.Terms) < 5 {
			t.Fatalf("record terms %v, want %v", rec.Terms, ledger.TermsFor(got.Statement, evidence.EntryMeta{Findings: rec.Findings}))
		}
	}
}

func TestConcurrentAppend(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 500
	}
	l := openLog(t, t.TempDir(), nil)
	recs := makeRecords(t, 0, n)
	rcs := appendConcurrently(t, l, recs, 64)

	if got := l.Size(); got != uint64(n) {
		t.Fatalf("Size = %d, want %d", got, n)
	}
	byIndex := make([]int, n)
	for i := range byIndex {
		byIndex[i] = -1
	}
	for i, rc := range rcs {
		switch {
		case rc.Duplicate:
			t.Fatalf("record %d: receipt marked duplicate", i)
		case rc.Index >= uint64(n):
			t.Fatalf("record %d: index %d beyond the log of %d", i, rc.Index, n)
		case byIndex[rc.Index] >= 0:
			t.Fatalf("records %d and %d both got index %d", byIndex[rc.Index], i, rc.Index)
		}
		byIndex[rc.Index] = i
	}

	ls := leaves(t, l)
	checkChain(t, ls)
	terms := make([][]ledger.Term, len(ls))
	for idx, leaf := range ls {
		rc, rec := rcs[byIndex[idx]], recs[byIndex[idx]]
		if rc.EntryHash != sha256.Sum256(leaf) {
			t.Fatalf("entry %d: receipt entry hash is not SHA-256(leaf)", idx)
		}
		if !bytes.Equal(rc.LeafHash[:], rfc6962.DefaultHasher.HashLeaf(leaf)) {
			t.Fatalf("entry %d: receipt leaf hash is not the RFC 6962 leaf hash", idx)
		}
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		if !e.ReceivedAt.Equal(rc.ReceivedAt) {
			t.Fatalf("entry %d: leaf receivedAt %v, receipt %v", idx, e.ReceivedAt, rc.ReceivedAt)
		}
		if e.Meta.RecordDigest != hex.EncodeToString(rec.Digest[:]) || e.Meta.Signer != rec.Signer ||
			!reflect.DeepEqual(e.Meta.Findings, rec.Findings) || !bytes.Equal(e.Envelope, rec.Envelope) {
			t.Fatalf("entry %d does not hold the record its receipt was given for", idx)
		}
		terms[idx] = rec.Terms
	}

	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var want ledger.IndexDigest
	for idx, ts := range terms {
		want.AddTerms(uint64(idx), snap.Indexed(uint64(idx), ts))
	}
	if snap.Size() != uint64(n) {
		t.Fatalf("snapshot size %d, want %d", snap.Size(), n)
	}
	next := uint64(0)
	if err := snap.Leaves(t.Context(), func(i uint64, leaf []byte) error {
		if i != next || !bytes.Equal(leaf, ls[i]) {
			return fmt.Errorf("snapshot leaf %d differs from Leaf(%d)", i, i)
		}
		next++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if next != uint64(n) {
		t.Fatalf("snapshot gave %d leaves, want %d", next, n)
	}
	if err := snap.CheckTree(t.Context(), leafHashes(ls)); err != nil {
		t.Fatal(err)
	}
	got, err := snap.Indexes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got != want || got.Count == 0 {
		t.Fatalf("stored index digest %+v, want %+v", got, want)
	}
}

// TestProofs checks the log's proofs with an independent RFC 6962
// implementation (transparency-dev/merkle) against the roots of signed
// checkpoints opened with transparency-dev/formats.
func TestProofs(t *testing.T) {
	const n = 300
	ctx := t.Context()
	// Every batch checkpoints, and appending one at a time makes every
	// batch one record: a checkpoint for every size.
	l := openLog(t, t.TempDir(), func(c *ledger.Config) { c.CheckpointInterval = time.Nanosecond })
	appendAll(t, l, makeRecords(t, 0, n))
	ls := leaves(t, l)
	lh := leafHashes(ls)
	roots := compactRoots(t, lh)

	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	notes, err := snap.Checkpoints(ctx)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != n {
		t.Fatalf("%d checkpoints, want one per size (%d)", len(notes), n)
	}
	cpRoot := make([][]byte, n+1)
	for i, signed := range notes {
		cp := parseCheckpoint(t, signed)
		if cp.Size != uint64(i+1) {
			t.Fatalf("checkpoint %d has size %d, want %d", i, cp.Size, i+1)
		}
		if !bytes.Equal(cp.Hash, roots[cp.Size]) {
			t.Fatalf("checkpoint of size %d signs root %x, the tree's root is %x", cp.Size, cp.Hash, roots[cp.Size])
		}
		cpRoot[cp.Size] = cp.Hash
	}

	for size := uint64(0); size <= n; size++ {
		root, err := l.RootHash(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(root[:], roots[size]) {
			t.Fatalf("RootHash(%d) = %x, want %x", size, root, roots[size])
		}
	}

	var sizes []uint64
	for p := uint64(1); p <= n; p *= 2 {
		sizes = append(sizes, p-1, p, p+1)
	}
	sizes = append(sizes, 3, 100, n-1, n)
	sizes = slices.DeleteFunc(sizes, func(s uint64) bool { return s == 0 || s > n })
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)

	checked := 0
	for _, size := range sizes {
		idxs := []uint64{0, 1, size / 2, size - 2, size - 1}
		for p := uint64(1); p < size; p *= 2 {
			idxs = append(idxs, p-1, p, p+1)
		}
		for _, i := range idxs {
			if i >= size {
				continue
			}
			pr, err := l.InclusionProof(ctx, i, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", i, size, err)
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, lh[i][:], toSlices(pr), cpRoot[size]); err != nil {
				t.Fatalf("inclusion of %d in %d does not verify: %v", i, size, err)
			}
			// The check is not vacuous: the proof binds the leaf and the size.
			if other := (i + 1) % size; other != i {
				if proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, lh[other][:], toSlices(pr), cpRoot[size]) == nil {
					t.Fatalf("inclusion proof of %d in %d also verifies leaf %d", i, size, other)
				}
			}
			if size < n && proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, lh[i][:], toSlices(pr), cpRoot[size+1]) == nil {
				t.Fatalf("inclusion proof of %d in %d also verifies against the root of %d", i, size, size+1)
			}
			checked++
		}
		for _, from := range sizes {
			if from > size {
				break
			}
			pr, err := l.ConsistencyProof(ctx, from, size)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", from, size, err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from, size, toSlices(pr), cpRoot[from], cpRoot[size]); err != nil {
				t.Fatalf("consistency of %d with %d does not verify: %v", from, size, err)
			}
			if from < size && proof.VerifyConsistency(rfc6962.DefaultHasher, from, size, toSlices(pr), cpRoot[from+1], cpRoot[size]) == nil {
				t.Fatalf("consistency proof %d->%d also verifies from the root of %d", from, size, from+1)
			}
			checked++
		}
	}
	t.Logf("checked %d proofs", checked)

	for _, c := range []struct {
		name string
		err  error
	}{
		{"inclusion beyond the log", errOf(l.InclusionProof(ctx, 0, n+1))},
		{"inclusion index = size", errOf(l.InclusionProof(ctx, 5, 5))},
		{"consistency from 0", errOf(l.ConsistencyProof(ctx, 0, 5))},
		{"consistency backwards", errOf(l.ConsistencyProof(ctx, 6, 5))},
		{"consistency beyond the log", errOf(l.ConsistencyProof(ctx, 5, n+1))},
		{"root beyond the log", errOf(l.RootHash(ctx, n+1))},
		{"leaf beyond the log", errOf(l.Leaf(ctx, n))},
	} {
		if !errors.Is(c.err, ledger.ErrNotFound) {
			t.Errorf("%s: error %v, want ErrNotFound", c.name, c.err)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }

func toSlices(p [][32]byte) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func TestIdempotency(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	rec := makeRecord(t, spec{n: 1})

	first, err := l.Append(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate {
		t.Fatal("first append marked duplicate")
	}
	same := func(what string, got ledger.Receipt, want ledger.Receipt) {
		t.Helper()
		if !got.Duplicate {
			t.Fatalf("%s: not marked duplicate", what)
		}
		if got.Index != want.Index || got.EntryHash != want.EntryHash || got.LeafHash != want.LeafHash || !got.ReceivedAt.Equal(want.ReceivedAt) {
			t.Fatalf("%s: receipt %+v, want the original %+v", what, got, want)
		}
	}
	again, err := l.Append(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	same("sequential duplicate", again, first)
	// A different envelope with the same digest (another signature over the
	// same statement) is the same record.
	resigned := rec
	resigned.Envelope = []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`)
	again, err = l.Append(ctx, resigned)
	if err != nil {
		t.Fatal(err)
	}
	same("same digest, other envelope", again, first)
	if l.Size() != 1 {
		t.Fatalf("Size = %d after duplicates, want 1", l.Size())
	}

	// The same new record from many goroutines at once: one entry.
	rec2 := makeRecord(t, spec{n: 2})
	const k = 32
	rcs := make([]ledger.Receipt, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range k {
		wg.Go(func() {
			<-start
			rcs[i], errs[i] = l.Append(ctx, rec2)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	var orig []ledger.Receipt
	for _, rc := range rcs {
		if !rc.Duplicate {
			orig = append(orig, rc)
		}
	}
	if len(orig) != 1 {
		t.Fatalf("%d of %d concurrent appends of one record were not duplicates, want 1", len(orig), k)
	}
	for i, rc := range rcs {
		if rc != orig[0] {
			same(fmt.Sprintf("concurrent duplicate %d", i), rc, orig[0])
		}
	}
	if orig[0].Index != 1 || l.Size() != 2 {
		t.Fatalf("concurrent record got index %d, log size %d; want 1 and 2", orig[0].Index, l.Size())
	}

	// Across a restart, and after Badger lost its state.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, lose := range []bool{false, true} {
		if lose {
			if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
				t.Fatal(err)
			}
		}
		l = openLog(t, dir, nil)
		again, err = l.Append(ctx, rec)
		if err != nil {
			t.Fatal(err)
		}
		same(fmt.Sprintf("duplicate after reopen (index lost: %v)", lose), again, first)
		again, err = l.Append(ctx, rec2)
		if err != nil {
			t.Fatal(err)
		}
		same(fmt.Sprintf("duplicate after reopen (index lost: %v)", lose), again, orig[0])
		if l.Size() != 2 {
			t.Fatalf("Size = %d, want 2", l.Size())
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// state is everything a test compares across a restart.
type state struct {
	size       uint64
	leaves     [][]byte
	checkpoint []byte
}

func capture(t *testing.T, l *ledger.Log) state {
	t.Helper()
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	return state{size: l.Size(), leaves: leaves(t, l), checkpoint: cp}
}

// checkLog checks a log holds exactly the leaves given, with a tree, index
// terms and proofs that agree with them.
func checkLog(t *testing.T, l *ledger.Log, ls [][]byte, recs map[[32]byte]ledger.Record) {
	t.Helper()
	ctx := t.Context()
	if l.Size() != uint64(len(ls)) {
		t.Fatalf("Size = %d, want %d", l.Size(), len(ls))
	}
	got := leaves(t, l)
	for i := range ls {
		if !bytes.Equal(got[i], ls[i]) {
			t.Fatalf("leaf %d changed", i)
		}
	}
	checkChain(t, got)
	lh := leafHashes(got)
	roots := compactRoots(t, lh)
	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if err := snap.CheckTree(ctx, lh); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := snap.Leaves(ctx, func(uint64, []byte) error { n++; return nil }); err != nil || n != len(ls) {
		t.Fatalf("Snapshot.Leaves: %d leaves, %v", n, err)
	}
	var want ledger.IndexDigest
	for i, leaf := range got {
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		st, err := e.Statement()
		if err != nil {
			t.Fatal(err)
		}
		want.AddTerms(uint64(i), snap.Indexed(uint64(i), ledger.TermsFor(st, e.Meta)))
	}
	idx, err := snap.Indexes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx != want {
		t.Fatalf("stored index terms (%d) differ from those derived from the leaves (%d)", idx.Count, want.Count)
	}
	// Every checkpoint verifies and signs the root of its size.
	cps, err := snap.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, signed := range cps {
		cp := parseCheckpoint(t, signed)
		if cp.Size > uint64(len(ls)) || !bytes.Equal(cp.Hash, roots[cp.Size]) {
			t.Fatalf("checkpoint of size %d does not sign the log's root", cp.Size)
		}
	}
	// Proofs of some entries against the full tree, and lookups.
	size := uint64(len(ls))
	for _, i := range []uint64{0, size / 3, size / 2, size - 1} {
		pr, err := l.InclusionProof(ctx, i, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, size, lh[i][:], toSlices(pr), roots[size]); err != nil {
			t.Fatalf("inclusion of %d in %d: %v", i, size, err)
		}
		if i > 0 {
			pr, err := l.ConsistencyProof(ctx, i, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, i, size, toSlices(pr), roots[i], roots[size]); err != nil {
				t.Fatalf("consistency %d->%d: %v", i, size, err)
			}
		}
		e, _ := evidence.ParseLeaf(got[i])
		st, _ := e.Statement()
		found, err := l.Lookup(ctx, ledger.Query{Name: ledger.TermChange, Value: st.Predicate.ChangeID})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(found, i) {
			t.Fatalf("Lookup(change %s) = %v, want it to hold %d", st.Predicate.ChangeID, found, i)
		}
		// The idempotency record survived too.
		if rec, ok := recs[sha256.Sum256(got[i])]; ok {
			rc, err := l.Append(ctx, rec)
			if err != nil {
				t.Fatal(err)
			}
			if !rc.Duplicate || rc.Index != i {
				t.Fatalf("re-appending entry %d: receipt %+v", i, rc)
			}
		}
	}
}

// byEntryHash maps the receipts' entry hashes to their records.
func byEntryHash(recs []ledger.Record, rcs []ledger.Receipt) map[[32]byte]ledger.Record {
	m := map[[32]byte]ledger.Record{}
	for i, rc := range rcs {
		m[rc.EntryHash] = recs[i]
	}
	return m
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	recs := makeRecords(t, 0, 300)
	rcs := appendConcurrently(t, l, recs, 16)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(t.Context(), recs[0]); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}

	l = openLog(t, dir, nil)
	before := capture(t, l)
	// Close signed a final checkpoint covering everything.
	if cp := parseCheckpoint(t, before.checkpoint); cp.Size != 300 || l.CheckpointSize() != 300 {
		t.Fatalf("checkpoint after Close covers %d (CheckpointSize %d), want 300", cp.Size, l.CheckpointSize())
	}
	checkLog(t, l, before.leaves, byEntryHash(recs, rcs))

	// Appending continues the chain.
	rc, err := l.Append(t.Context(), makeRecord(t, spec{n: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := l.Leaf(t.Context(), rc.Index)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := evidence.ParseLeaf(leaf)
	if rc.Index != 300 || e.PrevHash != sha256.Sum256(before.leaves[299]) {
		t.Fatalf("append after reopen: index %d, previous hash %x", rc.Index, e.PrevHash)
	}
}

// TestRecoverLostIndex deletes Badger's state: everything derived is
// rebuilt from the segment files.
func TestRecoverLostIndex(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	recs := makeRecords(t, 0, 1500) // more than one replay transaction
	rcs := appendConcurrently(t, l, recs, 16)
	before := capture(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	finalCP, err := checkpoint.Open(mustCheckpoint(t, dir), testOrigin, noteVerifier(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir, nil)
	// The replayed entries get a checkpoint of their own, signing the same
	// root as before.
	waitFor(t, "a checkpoint of the replayed log", func() bool { return l.CheckpointSize() == l.Size() })
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if c := parseCheckpoint(t, cp); c.Size != finalCP.Size || !bytes.Equal(c.Hash, finalCP.Root[:]) {
		t.Fatalf("checkpoint after recovery (%d, %x) differs from before (%d, %x)", c.Size, c.Hash, finalCP.Size, finalCP.Root)
	}
	checkLog(t, l, before.leaves, byEntryHash(recs, rcs))
}

// mustCheckpoint reads the latest checkpoint of a closed log.
func mustCheckpoint(t *testing.T, dir string) []byte {
	t.Helper()
	l := openLog(t, dir, nil)
	defer l.Close()
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestRecoverOlderIndex restores an old copy of Badger's state, as a crash
// that lost Badger's unsynced writes leaves it.
func TestRecoverOlderIndex(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	recs := makeRecords(t, 0, 400)
	rcs := appendConcurrently(t, l, recs[:150], 8)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "index")
	copyDir(t, filepath.Join(dir, "index"), backup)

	l = openLog(t, dir, nil)
	rcs = append(rcs, appendConcurrently(t, l, recs[150:], 8)...)
	before := capture(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, filepath.Join(dir, "index"))

	l = openLog(t, dir, nil)
	if l.Size() != 400 {
		t.Fatalf("Size after recovery = %d, want 400", l.Size())
	}
	waitFor(t, "a checkpoint of the replayed log", func() bool { return l.CheckpointSize() == 400 })
	checkLog(t, l, before.leaves, byEntryHash(recs, rcs))
	// The old checkpoint (150) is still there and consistent with the new.
	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	cps, err := snap.Checkpoints(t.Context())
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []uint64
	for _, c := range cps {
		sizes = append(sizes, parseCheckpoint(t, c).Size)
	}
	if !slices.Contains(sizes, 150) || sizes[len(sizes)-1] != 400 {
		t.Fatalf("checkpoint sizes %v, want 150 kept and 400 last", sizes)
	}
}

func TestTornTail(t *testing.T) {
	const n = 40
	recs := makeRecords(t, 0, n+1)
	for _, c := range []struct {
		name      string
		tail      func(last []byte) []byte // what a crash left after the last frame, given that frame
		loseIndex bool
	}{
		{"garbage", func([]byte) []byte { return []byte("\x00\x00\x01\x00half a frame of garbage") }, false},
		{"half frame", func(last []byte) []byte { return last[:len(last)/2] }, false},
		{"header only", func(last []byte) []byte { return last[:3] }, false},
		{"huge length", func([]byte) []byte { return []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3} }, false},
		{"bad checksum", func(last []byte) []byte {
			b := bytes.Clone(last)
			b[len(b)-1] ^= 1
			return b
		}, false},
		{"zeros", func([]byte) []byte { return make([]byte, 4096) }, false},
		{"half frame, index lost", func(last []byte) []byte { return last[:len(last)-5] }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, nil)
			rcs := appendAll(t, l, recs[:n])
			before := capture(t, l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			segs := segmentFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segment files %v", segs)
			}
			b, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			offs := frameOffsets(t, segs[0])
			if len(offs) != n {
				t.Fatalf("%d frames in the segment, want %d", len(offs), n)
			}
			torn := c.tail(b[offs[n-1]:])
			if err := os.WriteFile(segs[0], append(bytes.Clone(b), torn...), 0o600); err != nil {
				t.Fatal(err)
			}
			if c.loseIndex {
				if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
					t.Fatal(err)
				}
			}

			l = openLog(t, dir, nil)
			if l.Size() != n {
				t.Fatalf("Size = %d, want %d", l.Size(), n)
			}
			if after, err := os.ReadFile(segs[0]); err != nil || !bytes.Equal(after, b) {
				t.Fatalf("the torn tail was not cut off: %d bytes, want %d (%v)", len(after), len(b), err)
			}
			rc, err := l.Append(t.Context(), recs[n])
			if err != nil {
				t.Fatal(err)
			}
			if rc.Index != n {
				t.Fatalf("append after the cut got index %d, want %d", rc.Index, n)
			}
			leaf, err := l.Leaf(t.Context(), n)
			if err != nil {
				t.Fatal(err)
			}
			all := append(before.leaves, leaf)
			m := byEntryHash(recs[:n], rcs)
			checkLog(t, l, all, m)

			// And it all survives another restart.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, nil)
			checkLog(t, l, all, m)
		})
	}
}

// TestDamagedEntry flips one byte of an early entry: the damage is reported
// naming that entry, not served.
func TestDamagedEntry(t *testing.T) {
	const n, bad = 30, 11
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	recs := makeRecords(t, 0, n)
	appendAll(t, l, recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seg := segmentFiles(t, dir)[0]
	offs := frameOffsets(t, seg)
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[offs[bad]+4+100] ^= 0x20 // inside the leaf
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir, nil)
	if l.Size() != n {
		t.Fatalf("Size = %d, want %d", l.Size(), n)
	}
	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var seen []uint64
	err = snap.Leaves(t.Context(), func(i uint64, _ []byte) error { seen = append(seen, i); return nil })
	mustContain(t, err, fmt.Sprintf("entry %d:", bad))
	if len(seen) != bad {
		t.Fatalf("Leaves passed %d entries before the damaged one, want %d", len(seen), bad)
	}
	_, err = l.Leaf(t.Context(), bad)
	mustContain(t, err, fmt.Sprintf("entry %d", bad))
	_, err = snap.Leaf(bad)
	mustContain(t, err, fmt.Sprintf("entry %d", bad))
	for _, i := range []uint64{0, bad - 1, bad + 1, n - 1} {
		if _, err := l.Leaf(t.Context(), i); err != nil {
			t.Fatalf("Leaf(%d) next to the damage: %v", i, err)
		}
	}
	// A duplicate of the damaged entry cannot be confirmed, but the log
	// goes on.
	if _, err := l.Append(t.Context(), recs[bad]); err == nil {
		t.Fatal("re-appending the damaged entry succeeded")
	}
	rc, err := l.Append(t.Context(), makeRecord(t, spec{n: 1000}))
	if err != nil || rc.Index != n {
		t.Fatalf("append after the damage: %+v, %v", rc, err)
	}
}

func TestLookup(t *testing.T) {
	const n = 150
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	specs := make([]spec, n)
	recs := make([]ledger.Record, n)
	for i := range specs {
		s := spec{
			n:      i,
			change: fmt.Sprintf("CHG-%d", i%7),
			env:    []string{"prod", "staging"}[i%2],
			stack:  fmt.Sprintf("stack-%d", i%3),
			actor:  fmt.Sprintf("actor-%d", i%5),
			// A permutation of 50 minutes: time order is not log order,
			// and three entries share each time.
			at: baseTime.Add(time.Duration(i*7%50) * time.Minute),
		}
		if i%4 == 0 {
			s.kind = evidence.KindApplyStarted
		}
		specs[i], recs[i] = s, makeRecord(t, s)
	}
	rcs := appendConcurrently(t, l, recs, 8)
	type entry struct {
		index uint64
		spec
	}
	var entries []entry
	for i, rc := range rcs {
		entries = append(entries, entry{rc.Index, specs[i]})
	}
	slices.SortFunc(entries, func(a, b entry) int { return int(a.index) - int(b.index) })

	// want selects entries, by index or (timed) by time then index.
	want := func(keep func(entry) bool, timed bool, limit int) []uint64 {
		var sel []entry
		for _, e := range entries {
			if keep(e) {
				sel = append(sel, e)
			}
		}
		if timed {
			slices.SortStableFunc(sel, func(a, b entry) int { return a.at.Compare(b.at) })
		}
		out := []uint64{}
		for _, e := range sel {
			if len(out) == limit {
				break
			}
			out = append(out, e.index)
		}
		return out
	}
	from, to := baseTime.Add(10*time.Minute), baseTime.Add(20*time.Minute)
	cases := []struct {
		name string
		q    ledger.Query
		want []uint64
	}{
		{"change", ledger.Query{Name: ledger.TermChange, Value: "CHG-3"},
			want(func(e entry) bool { return e.change == "CHG-3" }, false, 100)},
		{"kind, limit", ledger.Query{Name: ledger.TermKind, Value: "apply.started", Limit: 5},
			want(func(e entry) bool { return e.kind == evidence.KindApplyStarted }, false, 5)},
		{"kind, default limit 100", ledger.Query{Name: ledger.TermKind, Value: "plan.created"},
			want(func(e entry) bool { return e.kind != evidence.KindApplyStarted }, false, 100)},
		{"actor", ledger.Query{Name: ledger.TermActor, Value: "actor-2"},
			want(func(e entry) bool { return e.actor == "actor-2" }, false, 100)},
		{"stack", ledger.Query{Name: ledger.TermStack, Value: "stack-0", Limit: 1000},
			want(func(e entry) bool { return e.stack == "stack-0" }, false, 1000)},
		{"environment by time", ledger.Query{Name: ledger.TermEnvironment, Value: "prod"},
			want(func(e entry) bool { return e.env == "prod" }, true, 100)},
		{"environment, time range", ledger.Query{Name: ledger.TermEnvironment, Value: "staging", From: from, To: to},
			want(func(e entry) bool { return e.env == "staging" && !e.at.Before(from) && e.at.Before(to) }, true, 100)},
		{"environment, time range, limit", ledger.Query{Name: ledger.TermEnvironment, Value: "prod", From: from, To: to, Limit: 4},
			want(func(e entry) bool { return e.env == "prod" && !e.at.Before(from) && e.at.Before(to) }, true, 4)},
		{"environment, from only", ledger.Query{Name: ledger.TermEnvironment, Value: "prod", From: to},
			want(func(e entry) bool { return e.env == "prod" && !e.at.Before(to) }, true, 100)},
		{"environment, to only", ledger.Query{Name: ledger.TermEnvironment, Value: "prod", To: from},
			want(func(e entry) bool { return e.env == "prod" && e.at.Before(from) }, true, 100)},
		{"empty range", ledger.Query{Name: ledger.TermEnvironment, Value: "prod", From: to, To: from}, []uint64{}},
		{"no such value", ledger.Query{Name: ledger.TermChange, Value: "CHG-99"}, []uint64{}},
		{"value prefix is not a match", ledger.Query{Name: ledger.TermEnvironment, Value: "pro"}, []uint64{}},
		{"value extension is not a match", ledger.Query{Name: ledger.TermChange, Value: "CHG-1", Limit: 1000},
			want(func(e entry) bool { return e.change == "CHG-1" }, false, 1000)},
		{"term name is part of the key", ledger.Query{Name: ledger.TermActor, Value: "prod"}, []uint64{}},
	}
	check := func(t *testing.T) {
		for _, c := range cases {
			got, err := l.Lookup(ctx, c.q)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got == nil {
				got = []uint64{}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("%s: Lookup = %v, want %v", c.name, got, c.want)
			}
		}
	}
	// The cases are not trivial.
	if len(cases[2].want) != 100 || len(cases[6].want) < 3 || len(cases[5].want) < 50 {
		t.Fatalf("test data too thin: %d %d %d", len(cases[2].want), len(cases[6].want), len(cases[5].want))
	}
	t.Run("live", check)

	if _, err := l.Lookup(ctx, ledger.Query{Name: string(make([]byte, 300)), Value: "x"}); err == nil {
		t.Error("Lookup with a 300-byte term name succeeded")
	}

	// The indexes rebuilt by recovery answer the same.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	t.Run("recovered", check)
}

// manualClock is a test clock moved by hand.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestCheckpointInterval(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := &manualClock{now: baseTime}
	cfg := func(c *ledger.Config) {
		c.Clock = clock.Now
		c.CheckpointInterval = time.Hour
	}
	l := openLog(t, dir, cfg)
	if _, err := l.Checkpoint(); !errors.Is(err, ledger.ErrEmpty) {
		t.Fatalf("Checkpoint of an empty log: %v, want ErrEmpty", err)
	}
	recs := makeRecords(t, 0, 6)
	step := func(i int, wantCP uint64) {
		t.Helper()
		rc, err := l.Append(ctx, recs[i])
		if err != nil {
			t.Fatal(err)
		}
		if !rc.ReceivedAt.Equal(clock.Now()) {
			t.Fatalf("receivedAt %v, want the clock's %v", rc.ReceivedAt, clock.Now())
		}
		if got := l.CheckpointSize(); got != wantCP {
			t.Fatalf("after %d appends the checkpoint covers %d, want %d", i+1, got, wantCP)
		}
		cp := parseCheckpoint(t, must(l.Checkpoint()))
		root := must(l.RootHash(ctx, wantCP))
		if cp.Size != wantCP || !bytes.Equal(cp.Hash, root[:]) {
			t.Fatalf("latest checkpoint (%d, %x), want (%d, %x)", cp.Size, cp.Hash, wantCP, root)
		}
	}
	step(0, 1) // the first batch is checkpointed
	step(1, 1) // then not again within the interval
	step(2, 1)
	clock.Advance(2 * time.Hour)
	step(3, 4)
	step(4, 4)
	if err := l.Close(); err != nil { // signs a final checkpoint
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	if l.CheckpointSize() != 5 {
		t.Fatalf("checkpoint after Close covers %d, want 5", l.CheckpointSize())
	}
	step(5, 6) // the first batch after Open is checkpointed
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	snap := must(l.Snapshot())
	defer snap.Close()
	var sizes []uint64
	for _, c := range must(snap.Checkpoints(ctx)) {
		sizes = append(sizes, parseCheckpoint(t, c).Size)
	}
	if !slices.Equal(sizes, []uint64{1, 4, 5, 6}) {
		t.Fatalf("checkpoint sizes %v, want [1 4 5 6]", sizes)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestCheckpointTimer: a log that goes quiet is checkpointed within the
// interval; a checkpoint never runs ahead of the durable log.
func TestCheckpointTimer(t *testing.T) {
	l := openLog(t, t.TempDir(), func(c *ledger.Config) { c.CheckpointInterval = 30 * time.Millisecond })
	recs := makeRecords(t, 0, 600)
	done := make(chan struct{})
	var bad error
	go func() {
		defer close(done)
		for {
			select {
			case <-t.Context().Done():
				return
			default:
			}
			cp, err := l.Checkpoint()
			size := l.Size()
			if err == nil {
				if c := parseCheckpoint(t, cp); c.Size > size {
					bad = fmt.Errorf("checkpoint of size %d published while the log held %d", c.Size, size)
					return
				}
			}
			if size == 600 {
				return
			}
			// Look again once the log has grown: a checkpoint is
			// published with the batch it signs, so a checkpoint ahead of
			// the log would show right after a publication.
			if _, err := l.Wait(t.Context(), size); err != nil {
				return
			}
		}
	}()
	appendConcurrently(t, l, recs, 32)
	<-done
	if bad != nil {
		t.Fatal(bad)
	}
	waitFor(t, "a checkpoint of the whole log", func() bool { return l.CheckpointSize() == 600 })
	cp := parseCheckpoint(t, must(l.Checkpoint()))
	roots := compactRoots(t, leafHashes(leaves(t, l)))
	if cp.Size != 600 || !bytes.Equal(cp.Hash, roots[600]) {
		t.Fatalf("checkpoint (%d, %x), want (600, %x)", cp.Size, cp.Hash, roots[600])
	}
}

// gateClock blocks the first call after arm until release: the sequencer
// calls the clock once it has taken a batch, so it stalls there.
type gateClock struct {
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
}

func (g *gateClock) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.entered, g.release = true, make(chan struct{}), make(chan struct{})
}

func (g *gateClock) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	}
}

func (g *gateClock) Now() time.Time {
	g.mu.Lock()
	armed, entered, release := g.armed, g.entered, g.release
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(entered)
		<-release
	}
	return time.Now()
}

func TestOverload(t *testing.T) {
	ctx := t.Context()
	t.Run("queue full", func(t *testing.T) {
		const queue, extra = 4, 8
		clock := &gateClock{}
		l := openLog(t, t.TempDir(), func(c *ledger.Config) { c.QueueSize = queue; c.Clock = clock.Now })
		recs := makeRecords(t, 0, 1+queue+extra)
		clock.arm()
		t.Cleanup(clock.open)
		results := make(chan error, len(recs))
		go func() { _, err := l.Append(ctx, recs[0]); results <- err }()
		<-clock.entered // the sequencer holds recs[0] and is stalled
		for _, r := range recs[1:] {
			go func() { _, err := l.Append(ctx, r); results <- err }()
		}
		// With the sequencer stalled, only the queue's worth can wait: the
		// rest fail at once.
		for range extra {
			select {
			case err := <-results:
				if !errors.Is(err, ledger.ErrOverloaded) {
					t.Fatalf("Append with a full queue: %v, want ErrOverloaded", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Append with a full queue did not fail fast")
			}
		}
		clock.open()
		for range 1 + queue {
			if err := <-results; err != nil {
				t.Fatalf("queued Append: %v", err)
			}
		}
		if l.Size() != 1+queue {
			t.Fatalf("Size = %d, want %d", l.Size(), 1+queue)
		}
		checkChain(t, leaves(t, l))
	})

	t.Run("stress", func(t *testing.T) {
		l := openLog(t, t.TempDir(), func(c *ledger.Config) { c.QueueSize = 2; c.MaxBatch = 2 })
		recs := makeRecords(t, 0, 1200)
		rcs := make([]ledger.Receipt, len(recs))
		errs := make([]error, len(recs))
		var wg sync.WaitGroup
		const goroutines = 64
		for g := range goroutines {
			wg.Go(func() {
				for i := g; i < len(recs); i += goroutines {
					rcs[i], errs[i] = l.Append(ctx, recs[i])
				}
			})
		}
		wg.Wait()
		ok := map[string]ledger.Receipt{}
		overloaded := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok[hex.EncodeToString(recs[i].Digest[:])] = rcs[i]
			case errors.Is(err, ledger.ErrOverloaded):
				overloaded++
			default:
				t.Fatalf("Append: %v", err)
			}
		}
		t.Logf("%d appended, %d overloaded", len(ok), overloaded)
		if l.Size() != uint64(len(ok)) {
			t.Fatalf("Size = %d, but %d appends succeeded", l.Size(), len(ok))
		}
		ls := leaves(t, l)
		checkChain(t, ls)
		for i, leaf := range ls {
			e := must(evidence.ParseLeaf(leaf))
			rc, found := ok[e.Meta.RecordDigest]
			if !found {
				t.Fatalf("entry %d holds a record whose Append failed", i)
			}
			if rc.Index != uint64(i) || rc.EntryHash != sha256.Sum256(leaf) {
				t.Fatalf("entry %d: receipt %+v", i, rc)
			}
		}
		snap := must(l.Snapshot())
		defer snap.Close()
		if err := snap.CheckTree(ctx, leafHashes(ls)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCloseWhileAppending: every Append either gets a durable receipt or
// ErrClosed; nothing accepted is lost and nothing refused is stored.
func TestCloseWhileAppending(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	recs := makeRecords(t, 0, 3000)
	rcs := make([]ledger.Receipt, len(recs))
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	const goroutines = 32
	var started sync.WaitGroup
	started.Add(goroutines)
	for g := range goroutines {
		wg.Go(func() {
			started.Done()
			for i := g; i < len(recs); i += goroutines {
				rcs[i], errs[i] = l.Append(ctx, recs[i])
			}
		})
	}
	started.Wait()
	waitFor(t, "some appends", func() bool { return l.Size() >= 100 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	succeeded := map[string]ledger.Receipt{}
	for i, err := range errs {
		switch {
		case err == nil:
			succeeded[hex.EncodeToString(recs[i].Digest[:])] = rcs[i]
		case !errors.Is(err, ledger.ErrClosed):
			t.Fatalf("Append during Close: %v, want success or ErrClosed", err)
		}
	}
	if len(succeeded) == len(recs) {
		t.Log("every append finished before Close: nothing refused")
	}
	l = openLog(t, dir, nil)
	if l.Size() != uint64(len(succeeded)) {
		t.Fatalf("Size = %d, but %d appends succeeded", l.Size(), len(succeeded))
	}
	if l.CheckpointSize() != l.Size() {
		t.Fatalf("the checkpoint at Close covers %d of %d", l.CheckpointSize(), l.Size())
	}
	for i, leaf := range leaves(t, l) {
		e := must(evidence.ParseLeaf(leaf))
		rc, ok := succeeded[e.Meta.RecordDigest]
		if !ok || rc.Index != uint64(i) || rc.EntryHash != sha256.Sum256(leaf) {
			t.Fatalf("entry %d does not match a receipt", i)
		}
	}
}

// TestSnapshotIsolation: a snapshot keeps its view while the log grows.
func TestSnapshotIsolation(t *testing.T) {
	ctx := t.Context()
	l := openLog(t, t.TempDir(), nil)
	recs := makeRecords(t, 0, 20)

	empty := must(l.Snapshot())
	defer empty.Close()
	appendAll(t, l, recs[:10])
	ten := must(l.Snapshot())
	defer ten.Close()
	appendAll(t, l, recs[10:])

	for _, c := range []struct {
		snap *ledger.Snapshot
		size int
	}{{empty, 0}, {ten, 10}} {
		if c.snap.Size() != uint64(c.size) {
			t.Fatalf("snapshot size %d, want %d", c.snap.Size(), c.size)
		}
		n := 0
		if err := c.snap.Leaves(ctx, func(uint64, []byte) error { n++; return nil }); err != nil {
			t.Fatalf("Leaves of a snapshot of %d: %v", c.size, err)
		}
		if n != c.size {
			t.Fatalf("Leaves of a snapshot of %d gave %d", c.size, n)
		}
		if err := c.snap.CheckTree(ctx, leafHashes(leaves(t, l)[:c.size])); err != nil {
			t.Fatalf("CheckTree of a snapshot of %d: %v", c.size, err)
		}
		if _, err := c.snap.Leaf(uint64(c.size)); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("snapshot Leaf beyond its size: %v", err)
		}
	}
}

func TestAppendRefusesBadRecords(t *testing.T) {
	ctx := t.Context()
	l := openLog(t, t.TempDir(), nil)
	good := makeRecord(t, spec{n: 1})
	for _, c := range []struct {
		name string
		mod  func(*ledger.Record)
	}{
		{"long term name", func(r *ledger.Record) { r.Terms = []ledger.Term{{Name: string(make([]byte, 256)), Value: "x"}} }},
		{"empty term name", func(r *ledger.Record) { r.Terms = []ledger.Term{{Value: "x"}} }},
		{"long term value", func(r *ledger.Record) { r.Terms = []ledger.Term{{Name: "x", Value: string(make([]byte, 1<<16))}} }},
		{"empty envelope", func(r *ledger.Record) { r.Envelope = nil }},
		{"envelope not compact", func(r *ledger.Record) { r.Envelope = []byte("{\n}") }},
		{"envelope too big", func(r *ledger.Record) { r.Envelope = bytes.Repeat([]byte(" "), 64<<20) }},
	} {
		rec := good
		rec.Digest = sha256.Sum256([]byte(c.name))
		c.mod(&rec)
		if _, err := l.Append(ctx, rec); err == nil {
			t.Errorf("%s: Append succeeded", c.name)
		}
	}
	if l.Size() != 0 {
		t.Fatalf("Size = %d after refused records", l.Size())
	}
	if _, err := l.Append(ctx, good); err != nil {
		t.Fatal(err)
	}
}

// TestBadRecordFailsAlone: a malformed record queued with good ones fails
// alone, and the log goes on.
func TestBadRecordFailsAlone(t *testing.T) {
	ctx := t.Context()
	clock := &gateClock{}
	l := openLog(t, t.TempDir(), func(c *ledger.Config) { c.Clock = clock.Now })
	recs := makeRecords(t, 0, 3)
	bad := makeRecord(t, spec{n: 99})
	bad.Envelope = append([]byte("{\n"), bad.Envelope[1:]...)

	clock.arm()
	t.Cleanup(clock.open)
	var answered atomic.Int32
	result := func(r ledger.Record) <-chan error {
		c := make(chan error, 1)
		go func() { _, err := l.Append(ctx, r); answered.Add(1); c <- err }()
		return c
	}
	first := result(recs[0])
	<-clock.entered // the sequencer holds recs[0]; the next two wait behind it
	badDone, second := result(bad), result(recs[1])
	// Append may refuse the bad record before it queues; either way both
	// have been dealt with before the sequencer moves on (first is not
	// answered while the sequencer is stalled).
	waitFor(t, "the bad and the second record to queue or be refused", func() bool {
		return ledger.QueueLen(l)+int(answered.Load()) == 2
	})
	clock.open()
	for i, c := range []<-chan error{first, second} {
		if err := <-c; err != nil {
			t.Fatalf("good record %d queued with a bad one: %v", i, err)
		}
	}
	if err := <-badDone; err == nil {
		t.Fatal("the bad record was appended")
	}
	rc, err := l.Append(ctx, recs[2])
	if err != nil || rc.Index != 2 {
		t.Fatalf("append after the bad record: %+v, %v", rc, err)
	}
}

func TestOpenConfig(t *testing.T) {
	dir := t.TempDir()
	signer := testSigner(t)
	for _, cfg := range []ledger.Config{
		{Origin: testOrigin, Signer: signer},
		{Dir: dir, Signer: signer},
		{Dir: dir, Origin: testOrigin},
		{Dir: dir, Origin: "other.example/log", Signer: signer},
	} {
		if l, err := ledger.Open(cfg); err == nil {
			l.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
	// A second Open of the same directory fails while the first holds it.
	l := openLog(t, dir, nil)
	if l2, err := ledger.Open(ledger.Config{Dir: dir, Origin: testOrigin, Signer: signer}); err == nil {
		l2.Close()
		t.Error("a second Open of an open log succeeded")
	}
	if l.Origin() != testOrigin || l.VerifierKey() != signer.VerifierKey() {
		t.Errorf("Origin %q, VerifierKey %q", l.Origin(), l.VerifierKey())
	}
}

// TestSegmentBoundary fills the first segment file and runs into the next:
// reads, proofs, recovery and a torn tail across the boundary.
func TestSegmentBoundary(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 65,736 entries")
	}
	const n = 1<<16 + 200
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	recs := makeRecords(t, 0, n)
	rcs := appendConcurrently(t, l, recs, 64)
	before := leaves(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := segmentFiles(t, dir)
	if len(files) != 2 {
		t.Fatalf("segment files %v, want 2", files)
	}
	if got := len(frameOffsets(t, files[0])); got != 1<<16 {
		t.Fatalf("first segment holds %d frames, want %d", got, 1<<16)
	}
	// A crash tore the tail of the second segment and lost Badger's state.
	f, err := os.OpenFile(files[1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0, 0, 0x10, 0, 'x'}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir, nil)
	waitFor(t, "a checkpoint of the replayed log", func() bool { return l.CheckpointSize() == n })
	checkLog(t, l, before, byEntryHash(recs, rcs))
	cp := parseCheckpoint(t, must(l.Checkpoint()))
	lh := leafHashes(before)
	for _, i := range []uint64{0, 1<<16 - 2, 1<<16 - 1, 1 << 16, 1<<16 + 1, n - 1} {
		pr := must(l.InclusionProof(t.Context(), i, n))
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, n, lh[i][:], toSlices(pr), cp.Hash); err != nil {
			t.Fatalf("inclusion of %d: %v", i, err)
		}
	}
	rc, err := l.Append(t.Context(), makeRecord(t, spec{n: n}))
	if err != nil || rc.Index != n {
		t.Fatalf("append after recovery: %+v, %v", rc, err)
	}
}
