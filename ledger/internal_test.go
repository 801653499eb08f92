package ledger

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"evident.dev/evident/checkpoint"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

// These tests reach inside the package: the frontier, the segment files and
// the pipeline's queue. Records here need not carry valid statements: they
// are never replayed.

const internalOrigin = "evident.test/internal"

func internalLog(t *testing.T, dir string, mod func(*Config)) *Log {
	t.Helper()
	seed := sha256.Sum256([]byte("internal log key"))
	signer, err := checkpoint.NewSigner(internalOrigin, ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: dir, Origin: internalOrigin, Signer: signer}
	if mod != nil {
		mod(&cfg)
	}
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func rawRecord(n int) Record {
	return Record{
		Envelope: fmt.Appendf(nil, `{"payloadType":"test","payload":"%d"}`, n),
		Digest:   sha256.Sum256(fmt.Appendf(nil, "record %d", n)),
		Terms:    []Term{{Name: TermChange, Value: fmt.Sprint("CHG-", n)}},
	}
}

// TestFrontier: after n leaves the frontier holds exactly popcount(n)
// hashes, the roots of the complete subtrees, from which alone the next
// leaf's stored hashes and the tree hash follow.
func TestFrontier(t *testing.T) {
	var all []tlog.Hash // every stored hash, the reference
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = all[x]
		}
		return out, nil
	})
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	rng := rf.NewEmptyRange(0)
	f := frontier{}
	for n := int64(0); n < 2100; n++ {
		leafHash := tlog.RecordHash(fmt.Appendf(nil, "leaf %d", n))
		stored, err := tlog.StoredHashesForRecordHash(n, leafHash, f)
		if err != nil {
			t.Fatalf("leaf %d from the frontier: %v", n, err)
		}
		want, err := tlog.StoredHashesForRecordHash(n, leafHash, reader)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(stored) != fmt.Sprint(want) {
			t.Fatalf("leaf %d: stored hashes from the frontier differ", n)
		}
		all = append(all, stored...)
		f.add(n, stored)
		if err := rng.Append(leafHash[:], nil); err != nil {
			t.Fatal(err)
		}

		size := n + 1
		if len(f) != bits.OnesCount64(uint64(size)) {
			t.Fatalf("after %d leaves the frontier holds %d hashes, want %d", size, len(f), bits.OnesCount64(uint64(size)))
		}
		for level := range bits.Len64(uint64(size)) {
			if size&(1<<level) == 0 {
				continue
			}
			idx := tlog.StoredHashIndex(level, size>>level-1)
			if h, ok := f[idx]; !ok || h != all[idx] {
				t.Fatalf("after %d leaves the frontier lacks the subtree root (level %d)", size, level)
			}
		}
		root, err := tlog.TreeHash(size, f)
		if err != nil {
			t.Fatalf("tree hash of %d from the frontier: %v", size, err)
		}
		want0, err := rng.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(root[:]) != string(want0) {
			t.Fatalf("tree hash of %d from the frontier %x, compact range says %x", size, root, want0)
		}
	}
}

// TestLoadFrontier: the frontier read back from storage at any size matches
// the tree.
func TestLoadFrontier(t *testing.T) {
	ctx := t.Context()
	l := internalLog(t, t.TempDir(), nil)
	for i := range 37 {
		if _, err := l.Append(ctx, rawRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	for size := uint64(0); size <= 37; size++ {
		f, err := l.frontierAt(size)
		if err != nil {
			t.Fatal(err)
		}
		if len(f) != bits.OnesCount64(size) {
			t.Fatalf("frontier at %d holds %d hashes", size, len(f))
		}
		got, err := tlog.TreeHash(int64(size), f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := l.RootHash(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("frontier at %d gives root %x, want %x", size, got, want)
		}
	}
}

// TestSegmentReaders reads many segments at once: evicting cached read
// handles must never close one another reader is using.
func TestSegmentReaders(t *testing.T) {
	s, err := openSegments(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	const nseg = 100 // more than the handle cache holds
	for seg := range uint64(nseg) {
		if err := os.WriteFile(s.path(seg), frame(nil, fmt.Appendf(nil, "leaf of segment %03d", seg)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 3000 {
				seg := uint64(g*7919+i*31) % nseg
				leaf, err := s.read(seg*segmentEntries, 0, uint32(len("leaf of segment 000")))
				if err == nil && string(leaf) != fmt.Sprintf("leaf of segment %03d", seg) {
					err = fmt.Errorf("segment %d: read %q", seg, leaf)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(s.readers) > 64 {
		t.Errorf("%d read handles cached", len(s.readers))
	}
}

// TestFrames: the framing refuses what a torn or damaged write leaves.
func TestFrames(t *testing.T) {
	leaf := []byte("evident.dev/entry/v1\n")
	good := frame(nil, leaf)
	if got, err := unframe(good); err != nil || string(got) != string(leaf) {
		t.Fatalf("unframe(frame(leaf)) = %q, %v", got, err)
	}
	for name, b := range map[string][]byte{
		"empty":      {},
		"short":      good[:5],
		"cut":        good[:len(good)-1],
		"bad crc":    append(good[:len(good)-1:len(good)-1], good[len(good)-1]^1),
		"bad leaf":   append(append(good[:4:4], 'X'), good[5:]...),
		"zero frame": make([]byte, frameOverhead),
	} {
		if _, err := unframe(b); err == nil {
			t.Errorf("unframe accepted a %s frame", name)
		}
	}
}

// gate blocks a call once armed, until opened.
type gate struct {
	mu      sync.Mutex
	armed   bool
	entered chan struct{}
	release chan struct{}
	once    *sync.Once
}

// arm makes the next call block; it is opened at the latest when the test
// ends, so that a failed test does not leave the log stuck.
func (g *gate) arm(t *testing.T) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.entered, g.release, g.once = true, make(chan struct{}), make(chan struct{}), &sync.Once{}
	t.Cleanup(g.open)
}

func (g *gate) open() {
	g.mu.Lock()
	release, once := g.release, g.once
	g.mu.Unlock()
	once.Do(func() { close(release) })
}

func (g *gate) pass() {
	g.mu.Lock()
	armed, entered, release := g.armed, g.entered, g.release
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(entered)
		<-release
	}
}

func (g *gate) now() time.Time { g.pass(); return time.Now() }

func waitQueue(t *testing.T, l *Log, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(l.queue) != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d, want %d", len(l.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type outcome struct {
	r   Receipt
	err error
}

func appendAsync(l *Log, rec Record) <-chan outcome {
	c := make(chan outcome, 1)
	go func() {
		r, err := l.Append(context.Background(), rec)
		c <- outcome{r, err}
	}()
	return c
}

func await(t *testing.T, c <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-c:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("Append did not return")
		return outcome{}
	}
}

// TestDuplicatesInOneBatch: one record queued many times is taken in one
// batch; it is appended once and every other copy gets its receipt.
func TestDuplicatesInOneBatch(t *testing.T) {
	var g gate
	l := internalLog(t, t.TempDir(), func(c *Config) { c.Clock = g.now })
	g.arm(t)
	first := appendAsync(l, rawRecord(0))
	<-g.entered // the sequencer is stalled holding record 0
	const k = 20
	var copies []<-chan outcome
	for range k {
		copies = append(copies, appendAsync(l, rawRecord(1)))
	}
	waitQueue(t, l, k)
	g.open()
	if o := await(t, first); o.err != nil || o.r.Index != 0 {
		t.Fatalf("first record: %+v", o)
	}
	var orig []Receipt
	var all []Receipt
	for _, c := range copies {
		o := await(t, c)
		if o.err != nil {
			t.Fatal(o.err)
		}
		all = append(all, o.r)
		if !o.r.Duplicate {
			orig = append(orig, o.r)
		}
	}
	if len(orig) != 1 || orig[0].Index != 1 {
		t.Fatalf("%d copies were appended (%+v), want exactly one at index 1", len(orig), orig)
	}
	for _, r := range all {
		r.Duplicate = false
		if r.Index != orig[0].Index || r.EntryHash != orig[0].EntryHash || r.LeafHash != orig[0].LeafHash || !r.ReceivedAt.Equal(orig[0].ReceivedAt) {
			t.Fatalf("duplicate receipt %+v, want %+v", r, orig[0])
		}
	}
	if l.Size() != 2 {
		t.Fatalf("Size = %d, want 2", l.Size())
	}
}

// TestFailedPrepareKeepsTheLogGoing: a batch that cannot be prepared (here:
// it re-sends a record whose entry is damaged, so its receipt cannot be
// read) fails alone, even while an earlier batch is still being committed.
func TestFailedPrepareKeepsTheLogGoing(t *testing.T) {
	dir := t.TempDir()
	l := internalLog(t, dir, nil)
	// Two records: the first is damaged below; a damaged last entry would
	// stop the log from opening at all.
	for _, r := range []Record{rawRecord(0), rawRecord(1)} {
		if _, err := l.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	flipSegmentBit(t, dir, 20)

	for round := range 5 {
		var g gate
		l = internalLog(t, dir, func(c *Config) { c.Clock = g.now })
		base := l.Size()
		g.arm(t)
		good := appendAsync(l, rawRecord(100+2*round))
		<-g.entered
		dup := appendAsync(l, rawRecord(0)) // its original is damaged
		waitQueue(t, l, 1)
		g.open()
		// The good record's batch goes to the committer; the next batch
		// fails to prepare while that commit may still be running.
		if o := await(t, good); o.err != nil || o.r.Index != base {
			t.Fatalf("round %d: good record: %+v", round, o)
		}
		if o := await(t, dup); o.err == nil {
			t.Fatalf("round %d: re-sending the damaged record succeeded", round)
		}
		o := await(t, appendAsync(l, rawRecord(101+2*round)))
		if o.err != nil || o.r.Index != base+1 {
			t.Fatalf("round %d: the log is stuck after a failed batch: index %d, %v", round, o.r.Index, o.err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// blockingHandler is a slog handler that stalls the goroutine logging msg
// once armed: the committer logs a failed commit before it answers anyone.
type blockingHandler struct {
	msg string
	g   *gate
}

func (h blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h blockingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.g.pass()
	}
	return nil
}
func (h blockingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h blockingHandler) WithGroup(string) slog.Handler      { return h }

// TestCommitFailure: a batch whose commit fails fails its waiters with
// ErrStorage, and so do waiters answered as duplicates of it; nothing of it
// is stored, and the log goes on once storage works again.
func TestCommitFailure(t *testing.T) {
	dir := t.TempDir()
	var g, seq gate
	l := internalLog(t, dir, func(c *Config) {
		c.Logger = slog.New(blockingHandler{msg: "batch commit failed", g: &g})
		c.Clock = seq.now
	})
	// The segment file cannot be opened for writing.
	seg := filepath.Join(dir, "entries", "000000000000.seg")
	if err := os.Mkdir(seg, 0o700); err != nil {
		t.Fatal(err)
	}
	g.arm(t)
	first := appendAsync(l, rawRecord(0))
	<-g.entered // the committer failed and is about to answer
	// A copy of the record, taken while the failed batch is in flight, is
	// answered as its duplicate once that batch is durable, which it never
	// will be. The sequencer read the clock for the first batch before
	// handing it to the committer, so its next read is the one for the
	// batch holding the copy.
	seq.arm(t)
	dup := appendAsync(l, rawRecord(0))
	<-seq.entered
	seq.open()
	g.open()
	if o := await(t, first); !errors.Is(o.err, ErrStorage) {
		t.Fatalf("Append whose commit failed: %v, want ErrStorage", o.err)
	}
	if o := await(t, dup); !errors.Is(o.err, ErrStorage) {
		t.Fatalf("duplicate of a failed record: %+v, %v, want ErrStorage", o.r, o.err)
	}
	if l.Size() != 0 {
		t.Fatalf("Size = %d after a failed commit", l.Size())
	}

	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	// The sequencer may learn of the failure only from the next batch:
	// that one may fail too, retrying succeeds.
	o := await(t, appendAsync(l, rawRecord(0)))
	if o.err != nil {
		if !errors.Is(o.err, ErrStorage) {
			t.Fatal(o.err)
		}
		o = await(t, appendAsync(l, rawRecord(0)))
	}
	if o.err != nil || o.r.Index != 0 || o.r.Duplicate {
		t.Fatalf("retry after storage recovered: index %d duplicate %v: %v", o.r.Index, o.r.Duplicate, o.err)
	}
	for i := 1; i < 3; i++ {
		o := await(t, appendAsync(l, rawRecord(i)))
		if o.err != nil || o.r.Index != uint64(i) || o.r.Duplicate {
			t.Fatalf("append %d after storage recovered: index %d duplicate %v: %v", i, o.r.Index, o.r.Duplicate, o.err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = internalLog(t, dir, nil)
	if l.Size() != 3 {
		t.Fatalf("Size after reopen = %d, want 3", l.Size())
	}
}

// TestDiscard: a failed batch's frames are removed from the segments, so a
// shorter batch written at the same offsets next leaves nothing stale after
// it, and no segment the log has not reached is left behind.
func TestDiscard(t *testing.T) {
	s, err := openSegments(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	frames := func(first, n int) []byte {
		var b []byte
		for i := range n {
			b = frame(b, fmt.Appendf(nil, "leaf %d", first+i))
		}
		return b
	}
	durable := frames(0, 3)
	if err := s.append([]segmentWrite{{seg: 0, offset: 0, data: durable}}); err != nil {
		t.Fatal(err)
	}
	// A failed batch that ran over into the next segment.
	failed := []segmentWrite{
		{seg: 0, offset: uint64(len(durable)), data: frames(3, 2)},
		{seg: 1, offset: 0, data: frames(5, 1)},
	}
	if err := s.append(failed); err != nil {
		t.Fatal(err)
	}
	if err := s.discard(failed); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(s.path(0)); err != nil || st.Size() != int64(len(durable)) {
		t.Fatalf("segment 0 after discard: %v, %v; want %d bytes", st, err, len(durable))
	}
	if _, err := os.Stat(s.path(1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment 1 after discard: %v", err)
	}
	// The retry is shorter.
	if err := s.append([]segmentWrite{{seg: 0, offset: uint64(len(durable)), data: frames(10, 1)}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	next, _, err := s.scan(0, 0, 0, func(_, _ uint64, leaf []byte) error {
		got = append(got, string(leaf))
		return nil
	})
	if err != nil || next != 4 || fmt.Sprint(got) != "[leaf 0 leaf 1 leaf 2 leaf 10]" {
		t.Fatalf("segments hold %q (next %d, %v)", got, next, err)
	}
	if st, _ := os.Stat(s.path(0)); st.Size() != int64(len(durable)+len(frames(10, 1))) {
		t.Fatalf("segment 0 holds %d bytes: stale frames after the retry", st.Size())
	}
}

// TestDamagedLastEntryOfSealedChunk: the index postings of a sealed chunk
// are checked against its last entry's hash. When that entry is damaged,
// the next entry still names the hash, so only the damaged entry is lost to
// the index: the chunk's other entries are still found by their terms.
func TestDamagedLastEntryOfSealedChunk(t *testing.T) {
	dir := t.TempDir()
	l := internalLog(t, dir, nil)
	n := chunkSize + 10
	pending := make([]<-chan outcome, n)
	for i := range n {
		pending[i] = appendAsync(l, rawRecord(i))
	}
	change := map[uint64]string{} // entry index -> its change term
	for i, c := range pending {
		o := await(t, c)
		if o.err != nil {
			t.Fatal(o.err)
		}
		change[o.r.Index] = rawRecord(i).Terms[0].Value
	}
	last := uint64(chunkSize - 1)
	txn := l.db.NewTransaction(false)
	loc, err := locate(txn, last)
	txn.Discard()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	flipSegmentBit(t, dir, int64(loc.offset)+20)
	l = internalLog(t, dir, nil)
	for _, i := range []uint64{0, 100, last - 1} {
		got, err := l.Lookup(t.Context(), Query{Name: TermChange, Value: change[i]})
		if err != nil || !slices.Contains(got, i) {
			t.Errorf("entry %d of the chunk whose last entry is damaged: lookup of %s gives %v, %v", i, change[i], got, err)
		}
	}
	if _, err := l.Entry(t.Context(), last); err == nil {
		t.Errorf("the damaged entry %d reads without error", last)
	}
}

// flipSegmentBit damages the first entry segment of the log in dir at
// offset: a frame whose checksum then fails.
func flipSegmentBit(t *testing.T, dir string, offset int64) {
	t.Helper()
	seg := filepath.Join(dir, "entries", "000000000000.seg")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[offset] ^= 1
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
