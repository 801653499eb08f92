package replica_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/replica"
)

func startExporter(t testing.TB, l *ledger.Log, store replica.Store) (*replica.Exporter, func() error) {
	t.Helper()
	e, err := replica.NewExporter(replica.ExporterConfig{Log: l, Store: store, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return e, run(t, e.Run)
}

func startFollower(t testing.TB, l *ledger.Log, store replica.Store) func() error {
	t.Helper()
	f, err := replica.NewFollower(replica.FollowerConfig{Log: l, Store: store, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return run(t, f.Run)
}

// A writer exports its log to a real MinIO; two followers tail the bucket and
// answer exactly as the writer does: leaves, checkpoint, roots, inclusion and
// consistency proofs, index lookups.
func TestExportAndFollow(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")
	w := openWriter(t, t.TempDir())
	exp, _ := startExporter(t, w, store)
	f1, f2 := openFollower(t, t.TempDir()), openFollower(t, t.TempDir())
	startFollower(t, f1, openStore(t, m, "evident"))
	startFollower(t, f2, openStore(t, m, "evident"))

	recs := newRecordMaker(t)
	appendN(t, w, recs, 0, 300)
	appendN(t, w, recs, 300, 450) // the log grows past a full bundle meanwhile
	const n = 750
	waitFor(t, "the writer's checkpoint of every entry", func() bool { return w.CheckpointSize() == n })
	for _, f := range []*ledger.Log{f1, f2} {
		waitFor(t, "the followers' checkpoint of every entry", func() bool { return f.CheckpointSize() == n })
	}
	if exp.Exported() != n || exp.Uploaded() != n {
		t.Fatalf("exporter: checkpoint %d, bundles %d, want %d", exp.Exported(), exp.Uploaded(), n)
	}
	want, _ := w.Checkpoint()
	for fi, f := range []*ledger.Log{f1, f2} {
		got, err := f.Checkpoint()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("follower %d checkpoint:\n%s\nwriter's:\n%s", fi, got, want)
		}
		sameLog(t, w, f)
	}
}

// sameLog compares two logs through every read method the query handlers use.
func sameLog(t testing.TB, a, b *ledger.Log) {
	t.Helper()
	ctx := context.Background()
	if a.Size() != b.Size() || a.CheckpointSize() != b.CheckpointSize() {
		t.Fatalf("sizes %d/%d and %d/%d", a.Size(), a.CheckpointSize(), b.Size(), b.CheckpointSize())
	}
	n := a.Size()
	for i := range n {
		la, err := a.Leaf(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.Leaf(ctx, i)
		if err != nil || !bytes.Equal(la, lb) {
			t.Fatalf("leaf %d differs (%v)", i, err)
		}
	}
	for _, i := range []uint64{0, 1, 255, 256, 511, n - 1} {
		if i >= n {
			continue
		}
		pa, _ := a.InclusionProof(ctx, i, n)
		pb, err := b.InclusionProof(ctx, i, n)
		if err != nil || !equalHashes(pa, pb) {
			t.Fatalf("inclusion proof of %d differs (%v)", i, err)
		}
		if i == 0 {
			continue
		}
		ca, _ := a.ConsistencyProof(ctx, i, n)
		cb, err := b.ConsistencyProof(ctx, i, n)
		if err != nil || !equalHashes(ca, cb) {
			t.Fatalf("consistency proof %d..%d differs (%v)", i, n, err)
		}
	}
	for _, q := range []ledger.Query{
		{Name: ledger.TermChange, Value: "CHG-3"},
		{Name: ledger.TermEnvironment, Value: "prod", From: time.Date(2026, 11, 1, 0, 1, 0, 0, time.UTC), Limit: 1000},
		{Name: ledger.TermActor, Value: "ci-2@example.com", Limit: 1000},
		{Name: ledger.TermStack, Value: "stack-4", Limit: 1000},
	} {
		ia, _ := a.Lookup(ctx, q)
		ib, err := b.Lookup(ctx, q)
		if err != nil || len(ia) == 0 || len(ia) != len(ib) {
			t.Fatalf("lookup %s=%s: %d and %d entries (%v)", q.Name, q.Value, len(ia), len(ib), err)
		}
		for i := range ia {
			if ia[i] != ib[i] {
				t.Fatalf("lookup %s=%s differs at %d", q.Name, q.Value, i)
			}
		}
	}
}

func equalHashes(a, b [][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sumdbTiles is golang.org/x/mod/sumdb/tlog's TileReader over the bucket.
// It maps tlog's own tile paths (tile/8/L/N, tile/8/data/N) to the C2SP
// ones (tile/L/N, tile/entries/N) by string surgery alone, so the layout is
// checked against tlog's path encoding, not against this package's.
type sumdbTiles struct {
	get func(path string) ([]byte, error)
}

// fromStore reads tiles from a bucket.
func fromStore(store replica.Store) sumdbTiles {
	return sumdbTiles{func(p string) ([]byte, error) { return store.Get(context.Background(), p) }}
}

func c2spPath(t tlog.Tile) string {
	p := t.Path()
	if strings.HasPrefix(p, "tile/8/data/") {
		return "tile/entries/" + strings.TrimPrefix(p, "tile/8/data/")
	}
	return "tile/" + strings.TrimPrefix(p, "tile/8/")
}

func (s sumdbTiles) Height() int { return 8 }
func (s sumdbTiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		b, err := s.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
func (s sumdbTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// Standard tlog tooling reads the bucket alone: transparency-dev/formats
// opens the checkpoint, and x/mod/sumdb/tlog's tile reader authenticates the
// hash tiles, proves entries (read from the entry bundles) included and the
// tree consistent with an older one.
func TestStandardToolingReadsTiles(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")
	w := openWriter(t, t.TempDir())
	exp, _ := startExporter(t, w, store)
	recs := newRecordMaker(t)
	appendN(t, w, recs, 0, 100)
	waitFor(t, "export of 100 entries", func() bool { return exp.Exported() == 100 })
	oldRaw, _ := store.Get(context.Background(), replica.CheckpointPath)
	appendN(t, w, recs, 100, 600)
	waitFor(t, "export of 700 entries", func() bool { return exp.Exported() == 700 })

	v, err := note.NewVerifier(w.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := store.Get(context.Background(), replica.CheckpointPath)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	old, _, _, err := log.ParseCheckpoint(oldRaw, origin, v)
	if err != nil || old.Size != 100 || cp.Size != 700 {
		t.Fatalf("checkpoints of %d and %d (%v)", old.Size, cp.Size, err)
	}
	tree := tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Hash)}
	tr := fromStore(store)
	hr := tlog.TileHashReader(tree, tr)
	for _, i := range []int64{0, 99, 255, 256, 600, 699} {
		data := tlog.TileForIndex(8, tlog.StoredHashIndex(0, i))
		data.L = -1 // the entry bundle holding entry i, as wide as the tree makes it
		data.W = int(min(256, tree.N-data.N*256))
		bs, err := tr.ReadTiles([]tlog.Tile{data})
		if err != nil {
			t.Fatalf("bundle of entry %d (%s): %v", i, c2spPath(data), err)
		}
		leaves, err := replica.DecodeBundle(bs[0])
		if err != nil {
			t.Fatal(err)
		}
		leaf := leaves[i%256]
		want, _ := w.Leaf(context.Background(), uint64(i))
		if !bytes.Equal(leaf, want) {
			t.Fatalf("entry %d in its bundle differs from the log's leaf", i)
		}
		proof, err := tlog.ProveRecord(tree.N, i, hr)
		if err != nil {
			t.Fatalf("prove %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, tree.N, tree.Hash, i, tlog.RecordHash(leaf)); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	proof, err := tlog.ProveTree(tree.N, int64(old.Size), hr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(proof, tree.N, tree.Hash, int64(old.Size), tlog.Hash(old.Hash)); err != nil {
		t.Fatalf("consistency 100..700: %v", err)
	}
	// Partial bundles and tiles superseded by full ones are gone; the
	// right edge keeps its partial ones.
	for _, p := range []string{"tile/entries/000.p/", "tile/entries/001.p/", "tile/0/000.p/", "tile/0/001.p/"} {
		if keys, err := store.List(context.Background(), p); err != nil || len(keys) != 0 {
			t.Errorf("%s: %v left (%v)", p, keys, err)
		}
	}
	if keys, err := store.List(context.Background(), "tile/entries/002.p/"); err != nil || len(keys) == 0 {
		t.Errorf("no partial bundle at the right edge (%v)", err)
	}

	// A damaged hash tile is caught by the reader.
	bad := fromStore(damaging{store, "tile/0/001"})
	if _, err := tlog.ProveRecord(tree.N, 300, tlog.TileHashReader(tree, bad)); err == nil {
		t.Fatal("a damaged hash tile went unnoticed")
	}
}

// damaging flips a bit of the objects whose key starts with prefix.
type damaging struct {
	replica.Store
	prefix string
}

func (d damaging) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := d.Store.Get(ctx, key)
	if err == nil && strings.HasPrefix(key, d.prefix) && len(b) > 40 {
		b = bytes.Clone(b)
		b[len(b)-40] ^= 1
	}
	return b, err
}

// replacing serves data for one key.
type replacing struct {
	replica.Store
	key  string
	data []byte
}

func (r replacing) Get(ctx context.Context, key string) ([]byte, error) {
	if key == r.key {
		return r.data, nil
	}
	return r.Store.Get(ctx, key)
}

// A follower refuses a bucket whose bundles, tiles or checkpoint do not match
// the signed tree, and stores nothing from it.
func TestFollowerRefusesTampering(t *testing.T) {
	ctx := context.Background()
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")
	w := openWriter(t, t.TempDir())
	exp, stop := startExporter(t, w, store)
	appendN(t, w, newRecordMaker(t), 0, 300)
	waitFor(t, "export", func() bool { return exp.Exported() == 300 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	for name, s := range map[string]replica.Store{
		"bundle":     damaging{store, "tile/entries/000"},
		"hash tile":  damaging{store, "tile/0/001"},
		"checkpoint": damaging{store, replica.CheckpointPath},
	} {
		f := openFollower(t, t.TempDir())
		fl, err := replica.NewFollower(replica.FollowerConfig{Log: f, Store: s})
		if err != nil {
			t.Fatal(err)
		}
		_, err = fl.Sync(ctx)
		if !errors.Is(err, replica.ErrBadCheckpoint) {
			t.Fatalf("%s damaged: %v, want ErrBadCheckpoint", name, err)
		}
		if f.Size() != 0 {
			t.Fatalf("%s damaged: the follower stored %d entries", name, f.Size())
		}
	}
	// A checkpoint of the same tree signed by another key is refused.
	raw, err := store.Get(ctx, replica.CheckpointPath)
	if err != nil {
		t.Fatal(err)
	}
	other, err := checkpoint.NewSigner(origin, ed25519.NewKeyFromSeed(seed("another key")))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: string(raw[:bytes.Index(raw, []byte("\n\n"))+1])}, other)
	if err != nil {
		t.Fatal(err)
	}
	f0 := openFollower(t, t.TempDir())
	fl0, _ := replica.NewFollower(replica.FollowerConfig{Log: f0, Store: replacing{store, replica.CheckpointPath, forged}})
	if _, err := fl0.Sync(ctx); !errors.Is(err, replica.ErrBadCheckpoint) || f0.Size() != 0 {
		t.Fatalf("checkpoint by another key: %v (size %d), want ErrBadCheckpoint", err, f0.Size())
	}
	f := openFollower(t, t.TempDir())
	fl, _ := replica.NewFollower(replica.FollowerConfig{Log: f, Store: store})
	if _, err := fl.Sync(ctx); err != nil || f.Size() != 300 {
		t.Fatalf("undamaged bucket: %v (size %d)", err, f.Size())
	}
}

// Disaster recovery: a new writer restored from the bucket into an empty data
// directory continues the same log, and its checkpoints are consistent with
// the lost writer's; a follower tails both writers without a break.
func TestRestoreContinuesTheLog(t *testing.T) {
	ctx := context.Background()
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")
	recs := newRecordMaker(t)

	a := openWriter(t, t.TempDir())
	expA, stopA := startExporter(t, a, store)
	f := openFollower(t, t.TempDir())
	startFollower(t, f, store)
	appendN(t, a, recs, 0, 400)
	waitFor(t, "export", func() bool { return expA.Exported() == 400 })
	lost, _ := a.Checkpoint()
	stopA()
	a.Close() // its disk is gone

	dir := t.TempDir()
	r := openFollower(t, dir)
	n, err := replica.Restore(ctx, r, store, nil)
	if err != nil || n != 400 {
		t.Fatalf("restore: %d entries, %v", n, err)
	}
	if cp, _ := r.Checkpoint(); !bytes.Equal(cp, lost) {
		t.Fatal("the restored log's checkpoint is not the lost writer's")
	}
	r.Close()

	b := openWriter(t, dir)
	expB, _ := startExporter(t, b, store)
	appendN(t, b, recs, 400, 100)
	waitFor(t, "export by the new writer", func() bool { return expB.Exported() == 500 })
	waitFor(t, "the follower", func() bool { return f.CheckpointSize() == 500 })
	sameLog(t, b, f)

	v, _ := note.NewVerifier(b.VerifierKey())
	old, _, _, _ := log.ParseCheckpoint(lost, origin, v)
	raw, _ := store.Get(ctx, replica.CheckpointPath)
	cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
	if err != nil || cp.Size != 500 {
		t.Fatalf("new checkpoint: %v", err)
	}
	tree := tlog.Tree{N: 500, Hash: tlog.Hash(cp.Hash)}
	proof, err := tlog.ProveTree(500, 400, tlog.TileHashReader(tree, fromStore(store)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(proof, 500, tree.Hash, 400, tlog.Hash(old.Hash)); err != nil {
		t.Fatalf("the new writer's tree does not extend the lost one: %v", err)
	}

	// A writer with a shorter log than the bucket must not export over it.
	c := openWriter(t, t.TempDir())
	appendN(t, c, recs, 1000, 3)
	e, _ := replica.NewExporter(replica.ExporterConfig{Log: c, Store: store})
	if err := e.Run(ctx); !errors.Is(err, replica.ErrBucketAhead) {
		t.Fatalf("exporter of a shorter log: %v, want ErrBucketAhead", err)
	}
}

// With durability object-store, a record is acknowledged once its entry
// bundle is stored: losing the writer's disk right after loses nothing
// acknowledged, even before a checkpoint covers it.
func TestObjectStoreDurability(t *testing.T) {
	ctx := context.Background()
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")
	l, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: origin, Signer: noteSigner(t), CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exp, _ := startExporter(t, l, store)
	durable := replica.DurableAppender{Log: l, Exporter: exp}
	recs := newRecordMaker(t)
	appendN(t, durable, recs, 0, 1) // checkpointed at once: the first batch
	waitFor(t, "first checkpoint", func() bool { return exp.Exported() == 1 })
	appendN(t, durable, recs, 1, 299)
	if l.CheckpointSize() != 1 {
		t.Fatalf("checkpoint of %d entries: the test needs entries no checkpoint covers", l.CheckpointSize())
	}

	dir := t.TempDir()
	r := openFollower(t, dir)
	n, err := replica.Restore(ctx, r, store, nil)
	if err != nil || n != 300 {
		t.Fatalf("restore: %d entries, %v; want every acknowledged entry (300)", n, err)
	}
	r.Close()
	b := openWriter(t, dir)
	waitFor(t, "a checkpoint of the restored entries", func() bool { return b.CheckpointSize() == 300 })
	ra, _ := l.RootHash(ctx, 300)
	rb, _ := b.RootHash(ctx, 300)
	if ra != rb {
		t.Fatal("the restored log has another tree")
	}
}

// Tile paths follow the spec's index encoding.
func TestPaths(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{replica.TilePath(0, 1234067, 0), "tile/0/x001/x234/067"},
		{replica.TilePath(1, 5, 256), "tile/1/005"},
		{replica.TilePath(2, 1000, 8), "tile/2/x001/000.p/8"},
		{replica.EntriesPath(0, 3), "tile/entries/000.p/3"},
		{replica.EntriesPath(999999, 0), "tile/entries/x999/999"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	for range 1000 {
		n := rand.Int64N(1 << 40)
		tl := tlog.Tile{H: 8, L: int(n % 5), N: n, W: 1 + int(n%256)}
		if got, want := replica.TilePath(tl.L, uint64(tl.N), tl.W), c2spPath(tl); got != want {
			t.Fatalf("tile %+v: %s, tlog says %s", tl, got, want)
		}
	}
}

func FuzzDecodeBundle(f *testing.F) {
	b, _ := replica.EncodeBundle([][]byte{[]byte("a"), {}, bytes.Repeat([]byte{'x'}, 300)})
	f.Add(b)
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		leaves, err := replica.DecodeBundle(b)
		if err != nil {
			return
		}
		again, err := replica.EncodeBundle(leaves)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("bundle does not round-trip: %v", err)
		}
	})
}

// flaky fails every Put while down is set, as an unreachable object store.
type flaky struct {
	replica.Store
	down *atomic.Bool
}

func (f flaky) Put(ctx context.Context, key string, data []byte, cond replica.Cond) (string, error) {
	if f.down.Load() {
		return "", errors.New("connection refused")
	}
	return f.Store.Put(ctx, key, data, cond)
}

func (f flaky) Stat(ctx context.Context, key string) (string, error) {
	if f.down.Load() {
		return "", errors.New("connection refused")
	}
	return f.Store.Stat(ctx, key)
}

// With durability object-store and the object store unreachable, a record is
// not acknowledged (the caller's deadline ends the wait with a clear error),
// yet it is in the log; once storage is back the exporter catches up on its
// own and posting the record again returns the same entry.
func TestObjectStoreOutage(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	var down atomic.Bool
	store := flaky{openStore(t, m, "evident"), &down}
	l := openWriter(t, t.TempDir())
	exp, _ := startExporter(t, l, store)
	durable := replica.DurableAppender{Log: l, Exporter: exp}
	recs := newRecordMaker(t)
	appendN(t, durable, recs, 0, 10)

	down.Store(true)
	rec := recs.record(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := durable.Append(ctx, rec)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "object storage") {
		t.Fatalf("append during the outage: %v, want a deadline error naming object storage", err)
	}
	if l.Size() != 11 || exp.Uploaded() != 10 {
		t.Fatalf("log %d entries, %d uploaded; want the record in the log but not uploaded", l.Size(), exp.Uploaded())
	}

	down.Store(false)
	r, err := durable.Append(context.Background(), rec)
	if err != nil || !r.Duplicate || r.Index != 10 {
		t.Fatalf("posting again after the outage: %+v %v, want entry 10 as a duplicate", r, err)
	}
	if exp.Uploaded() < 11 {
		t.Fatalf("acknowledged before its bundle was stored (%d uploaded)", exp.Uploaded())
	}
}

// waitCounter counts the exporter's waits for its log to grow.
type waitCounter struct {
	*ledger.Log
	waits atomic.Int64
}

func (w *waitCounter) Wait(ctx context.Context, size uint64) (uint64, error) {
	w.waits.Add(1)
	return w.Log.Wait(ctx, size)
}

func (w *waitCounter) WaitCheckpoint(ctx context.Context, size uint64) (uint64, error) {
	w.waits.Add(1)
	return w.Log.WaitCheckpoint(ctx, size)
}

// The exporter's loops wake on what they wait for, not on their poll: a
// checkpoint is exported as soon as its bundles are stored. A log closed
// under it answers a wait at once, and the exporter then looks again once
// a poll, not in a loop. Once it stops, a wait for an upload says so at
// once.
func TestExporterWaitsWithoutPolling(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	l := openWriter(t, t.TempDir())
	counted := &waitCounter{Log: l}
	exp, err := replica.NewExporter(replica.ExporterConfig{Log: counted, Store: openStore(t, m, "evident"), Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, exp.Run)
	recs := newRecordMaker(t)
	appendN(t, l, recs, 0, 1) // the first batch is checkpointed at once
	waitFor(t, "the first checkpoint in the bucket", func() bool { return exp.Exported() == 1 })
	appendN(t, l, recs, 1, 9)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exp.WaitUploaded(ctx, 10); err != nil {
		t.Fatal(err)
	}
	// The log signs the checkpoint of 10 entries on its timer, after their
	// bundles are stored: the signing itself wakes the exporter.
	waitFor(t, "the checkpoint of 10 entries in the bucket", func() bool { return exp.Exported() == 10 })

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before := counted.waits.Load()
	time.Sleep(500 * time.Millisecond)
	if n := counted.waits.Load() - before; n > 1 {
		t.Fatalf("%d waits for growth or a checkpoint in 500ms over a closed log, with a poll of an hour", n)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	start := time.Now()
	if err := exp.WaitUploaded(ctx, 11); err == nil || !strings.Contains(err.Error(), "export stopped") {
		t.Fatalf("WaitUploaded after Run returned: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("WaitUploaded took %s to report the stopped exporter", took)
	}
}
