package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/replica"
)

// specReader is an outside tlog-tiles client: x/mod's tile reader over the
// bucket, asking for the exact paths the spec gives a checkpoint, and
// falling back to the full tile when a partial one is gone, as the spec lets
// a client do once the full tile exists.
type specReader struct{ store replica.Store }

func (r specReader) Height() int { return 8 }
func (r specReader) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		b, err := r.get(t)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
func (r specReader) SaveTiles([]tlog.Tile, [][]byte) {}

func (r specReader) get(t tlog.Tile) ([]byte, error) {
	b, err := r.store.Get(context.Background(), c2spPath(t))
	if errors.Is(err, replica.ErrNotExist) && t.W < 256 {
		full := t
		full.W = 256
		if b, err = r.store.Get(context.Background(), c2spPath(full)); err == nil {
			b = b[:len(b)*t.W/256]
			if t.L == -1 { // entry bundles are not fixed-width: cut by entries
				b, err = firstEntries(b, t.W)
			}
		}
	}
	return b, err
}

func firstEntries(bundle []byte, n int) ([]byte, error) {
	leaves, err := replica.DecodeBundle(bundle)
	if err != nil || len(leaves) < n {
		return nil, fmt.Errorf("full bundle of %d entries (%v), want at least %d", len(leaves), err, n)
	}
	return replica.EncodeBundle(leaves[:n])
}

// checkReadable reads a checkpoint as an outside client would: every hash
// tile of its tree, and the entry bundle at its width, whose last entry it
// proves included.
func checkReadable(cp []byte, v note.Verifier, store replica.Store) (uint64, error) {
	c, _, _, err := log.ParseCheckpoint(cp, origin, v)
	if err != nil {
		return 0, err
	}
	tree := tlog.Tree{N: int64(c.Size), Hash: tlog.Hash(c.Hash)}
	r := specReader{store}
	hr := tlog.TileHashReader(tree, r)
	if h, err := tlog.TreeHash(tree.N, hr); err != nil || h != tree.Hash {
		return c.Size, fmt.Errorf("tree of %d: %v", c.Size, err)
	}
	last := tree.N - 1
	bundle := tlog.TileForIndex(8, tlog.StoredHashIndex(0, last))
	bundle.L, bundle.W = -1, int(tree.N-bundle.N*256)
	bs, err := r.ReadTiles([]tlog.Tile{bundle})
	if err != nil {
		return c.Size, fmt.Errorf("entry bundle %s of checkpoint %d: %w", c2spPath(bundle), c.Size, err)
	}
	leaves, err := replica.DecodeBundle(bs[0])
	if err != nil || len(leaves) != bundle.W {
		return c.Size, fmt.Errorf("entry bundle %s: %d entries (%v), want %d", c2spPath(bundle), len(leaves), err, bundle.W)
	}
	proof, err := tlog.ProveRecord(tree.N, last, hr)
	if err != nil {
		return c.Size, err
	}
	return c.Size, tlog.CheckRecord(proof, tree.N, tree.Hash, last, tlog.RecordHash(leaves[len(leaves)-1]))
}

// Every checkpoint the bucket publishes, polled while a writer exports under
// load, is fully readable at once by an outside tlog-tiles client: its hash
// tiles, and the entry bundle at its exact width.
func TestEveryPublishedCheckpointIsReadable(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")
	w, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: origin, Signer: noteSigner(t), CheckpointInterval: 15 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	exp, _ := startExporter(t, w, store)
	v, _ := note.NewVerifier(w.VerifierKey())

	ctx, cancel := context.WithCancel(context.Background())
	var partial atomic.Int64 // checkpoints read at a partial width
	var pollErr error
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		var last []byte
		for ctx.Err() == nil {
			cp, err := store.Get(ctx, replica.CheckpointPath)
			if err != nil || bytes.Equal(cp, last) {
				time.Sleep(2 * time.Millisecond) // the pause of a poll: the reader races the exporter on purpose
				continue
			}
			last = cp
			size, err := checkReadable(cp, v, store)
			if err != nil {
				pollErr = fmt.Errorf("published checkpoint %d: %w", size, err)
				return
			}
			if size%256 != 0 {
				partial.Add(1)
			}
		}
	}()
	// Load in spurts, so that checkpoints land at many widths, until the
	// poller has read enough checkpoints at partial widths (fewer under the
	// race detector, which slows everything tenfold).
	want := int64(20)
	if testing.Short() {
		want = 5
	}
	recs := newRecordMaker(t)
	// A machine busy with other builds reads fewer checkpoints a second:
	// the bound is generous, the count is what is tested.
	deadline := time.Now().Add(3 * time.Minute)
	n := 0
	for ; partial.Load() < want && time.Now().Before(deadline); n += 30 {
		appendN(t, w, recs, n, 30)
		time.Sleep(5 * time.Millisecond) // real time: lets a checkpoint land between batches, which is what the reader must catch
	}
	waitFor(t, "export of every entry", func() bool { return exp.Exported() == uint64(n) })
	cancel()
	<-polled
	if pollErr != nil {
		t.Fatal(pollErr)
	}
	if partial.Load() < want {
		t.Fatalf("only %d checkpoints at partial widths read in 3 minutes", partial.Load())
	}
	t.Logf("%d checkpoints at partial widths read in full, %d entries", partial.Load(), n)
}

// pausable blocks every call while paused: a writer process stopped
// (SIGSTOP) with its requests to the object store in flight.
type pausable struct {
	replica.Store
	mu sync.RWMutex
}

func (p *pausable) Put(ctx context.Context, key string, data []byte, cond replica.Cond) (string, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.Store.Put(ctx, key, data, cond)
}
func (p *pausable) Get(ctx context.Context, key string) ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.Store.Get(ctx, key)
}
func (p *pausable) Stat(ctx context.Context, key string) (string, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.Store.Stat(ctx, key)
}

// A writer stalled while another takes over the bucket cannot overwrite
// it, nor acknowledge a record the new writer lacks: when it resumes, its
// exporter stops with ErrFenced, its waiting records fail, and the bucket
// holds exactly the new writer's log, which a restore brings back whole,
// skipping the bundles the stalled writer left.
func TestStalledWriterIsFenced(t *testing.T) {
	ctx := context.Background()
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	recs := newRecordMaker(t)

	// Writer A acknowledges 300 records, then stalls with more in flight.
	storeA := &pausable{Store: openStore(t, m, "evident")}
	a := openWriter(t, t.TempDir())
	expA, err := replica.NewExporter(replica.ExporterConfig{Log: a, Store: storeA, Writer: "A", Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runA, stopA := context.WithCancel(ctx)
	defer stopA()
	doneA := make(chan error, 1)
	go func() { doneA <- expA.Run(runA) }()
	durableA := replica.DurableAppender{Log: a, Exporter: expA}
	appendN(t, durableA, recs, 0, 300)
	storeA.mu.Lock() // SIGSTOP
	var ackedByA atomic.Int64
	var pending sync.WaitGroup
	for i := 300; i < 340; i++ {
		pending.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if _, err := durableA.Append(ctx, recs.record(t, i)); err == nil {
				ackedByA.Add(1)
			}
		})
	}
	waitFor(t, "A's log to hold its unacknowledged records", func() bool { return a.Size() == 340 })

	// Writer B claims the bucket, restores, and acknowledges 200 records.
	storeB := openStore(t, m, "evident")
	claim, err := replica.ClaimBucket(ctx, storeB, "B")
	if err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	r := openFollower(t, dirB)
	if n, err := replica.Restore(ctx, r, storeB, nil); err != nil || n < 300 {
		t.Fatalf("B's restore: %d entries, %v; want at least A's 300 acknowledged", n, err)
	}
	r.Close()
	b := openWriter(t, dirB)
	expB, err := replica.NewExporter(replica.ExporterConfig{Log: b, Store: storeB, Claim: claim, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, expB.Run)
	durableB := replica.DurableAppender{Log: b, Exporter: expB}
	appendN(t, durableB, recs, 1000, 200)
	sizeB := b.Size()
	waitFor(t, "B's checkpoint of every entry", func() bool { return expB.Exported() == sizeB })

	// A resumes (SIGCONT).
	storeA.mu.Unlock()
	select {
	case err := <-doneA:
		if !errors.Is(err, replica.ErrFenced) {
			t.Fatalf("the stalled writer's exporter: %v, want ErrFenced", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled writer still exports 30 s after it resumed")
	}
	pending.Wait()
	if n := ackedByA.Load(); n != 0 {
		t.Fatalf("the stalled writer acknowledged %d records after it lost the bucket", n)
	}

	// The bucket is B's: its checkpoint, and a restore of every entry B
	// acknowledged, byte for byte.
	raw, err := storeB.Get(ctx, replica.CheckpointPath)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(b.VerifierKey())
	cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
	if err != nil {
		t.Fatal(err)
	}
	rootB, _ := b.RootHash(ctx, sizeB)
	if cp.Size != sizeB || !bytes.Equal(cp.Hash, rootB[:]) {
		t.Fatalf("the bucket's checkpoint is of %d entries, root %x; B's log is %d, root %x", cp.Size, cp.Hash[:4], sizeB, rootB[:4])
	}
	c := openFollower(t, t.TempDir())
	if n, err := replica.Restore(ctx, c, openStore(t, m, "evident"), nil); err != nil || n != sizeB {
		t.Fatalf("restore after the takeover: %d entries, %v; want B's %d", n, err, sizeB)
	}
	for i := range sizeB {
		lb, _ := b.Leaf(ctx, i)
		lc, err := c.Leaf(ctx, i)
		if err != nil || !bytes.Equal(lb, lc) {
			t.Fatalf("entry %d restored differs from B's (%v)", i, err)
		}
	}
}

// The object store decides between writers: a conditional put succeeds
// once for one ETag (so of two writers claiming at once, one fails), and a
// writer whose claim was replaced learns it, with the new writer's name.
func TestClaimIsDecidedByTheObjectStore(t *testing.T) {
	ctx := context.Background()
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")

	if _, err := store.Put(ctx, "k", []byte("one"), replica.Cond{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, "k", []byte("two"), replica.Cond{IfAbsent: true}); !errors.Is(err, replica.ErrPrecondition) {
		t.Fatalf("a second If-None-Match put: %v, want ErrPrecondition", err)
	}
	etag, err := store.Stat(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 { // eight writers replacing the same version at once
		wg.Go(func() {
			if _, err := store.Put(ctx, "k", fmt.Appendf(nil, "writer %d", i), replica.Cond{IfMatch: etag}); err == nil {
				won.Add(1)
			} else if !errors.Is(err, replica.ErrPrecondition) {
				t.Errorf("writer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("%d of 8 conditional puts on one ETag succeeded, want exactly 1", n)
	}
	if _, err := store.Put(ctx, "missing", []byte("x"), replica.Cond{IfMatch: etag}); !errors.Is(err, replica.ErrPrecondition) {
		t.Fatalf("If-Match on a missing object: %v, want ErrPrecondition", err)
	}

	a, err := replica.ClaimBucket(ctx, store, "writer A")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Check(ctx); err != nil {
		t.Fatalf("A's own claim: %v", err)
	}
	if _, err := replica.ClaimBucket(ctx, store, "writer B"); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(ctx); !errors.Is(err, replica.ErrFenced) || !strings.Contains(err.Error(), `"writer B"`) {
		t.Fatalf("A after B claimed: %v, want ErrFenced naming writer B", err)
	}
}
