package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/progress"
	"evident.dev/evident/ledger"
)

// Source is the writer's log as the exporter reads it (*ledger.Log).
type Source interface {
	Size() uint64
	Wait(ctx context.Context, size uint64) (uint64, error)
	WaitCheckpoint(ctx context.Context, size uint64) (uint64, error)
	Leaf(ctx context.Context, index uint64) ([]byte, error)
	Checkpoint() ([]byte, error)
	RootHash(ctx context.Context, size uint64) ([32]byte, error)
	// ReadHashes reads stored tree hashes (tlog.HashReader).
	ReadHashes(indexes []int64) ([]tlog.Hash, error)
	Origin() string
	VerifierKey() string
}

// ExporterConfig configures an Exporter. Log and Store are required.
type ExporterConfig struct {
	Log    Source
	Store  Store
	Logger *slog.Logger
	// Poll is how often a log that did not grow is checked for a new
	// checkpoint. Default 100ms.
	Poll time.Duration
	// Parallel bounds concurrent PUTs. Default 8.
	Parallel int
	// Writer names this writer in the bucket's writer claim (WriterPath).
	Writer string
	// Claim, if set, is this writer's claim on the bucket, taken before it
	// restored from it; otherwise Start claims the bucket itself.
	Claim *Claim
}

// Exporter keeps a bucket up to date with a log: entry bundles as soon as
// entries are durable, then the hash tiles, the entry bundle at the
// checkpoint's width and the checkpoint once a checkpoint covers them. A
// reader of the bucket therefore never sees a checkpoint whose tiles or
// bundles are missing.
//
// Only one writer exports to a bucket: Start claims it (ClaimBucket), every
// acknowledgement and every overwrite is preceded by a check of that claim,
// and the checkpoint is replaced only if it is still the one this writer
// last stored. A writer that finds its claim taken stops with ErrFenced.
type Exporter struct {
	cfg       ExporterConfig
	keys      checkpoint.Chain // the log's own chain of keys
	rotations int              // rotations stored in the bucket (LogKeysPath)
	claim     *Claim           // set by Start
	cpETag    string           // of the checkpoint in the bucket; "" for none

	// uploaded counts the entries whose bundles are stored; Run stops it
	// when it returns.
	uploaded progress.Mark
	// mu guards exported, the size of the checkpoint stored.
	mu       sync.Mutex
	exported uint64

	// Owned by the bundle loop: the leaves of the bundle still partial at
	// uploaded.
	partial [][]byte
	// Owned by the checkpoint loop: uploaded when it last looked, so that
	// it waits only for bundles stored since, and misses none.
	cpUploaded uint64
	cpSeen     uint64 // the size of the log's checkpoint it last read
}

// Sentinel errors of the exporter's start: the bucket holds a log this
// writer must not overwrite.
var (
	// ErrBucketAhead: the bucket holds more of the log than the writer;
	// restore from it first (evident restore).
	ErrBucketAhead = errors.New("the bucket holds a longer log than this writer")
	// ErrFork: the bucket's checkpoint is not consistent with the log.
	ErrFork = errors.New("the bucket holds a different log")
)

// NewExporter returns an exporter; Run starts it.
func NewExporter(cfg ExporterConfig) (*Exporter, error) {
	if cfg.Log == nil || cfg.Store == nil {
		return nil, errors.New("replica: exporter needs a Log and a Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	chain, err := ownChain(cfg.Log)
	if err != nil {
		return nil, err
	}
	return &Exporter{cfg: cfg, keys: chain}, nil
}

// Uploaded is the number of entries whose bundles are in the bucket.
func (e *Exporter) Uploaded() uint64 { return e.uploaded.Load() }

// Exported is the size of the checkpoint in the bucket.
func (e *Exporter) Exported() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exported
}

// WaitUploaded returns once the first size entries are in the bucket, or
// with an error when ctx ends or the exporter has stopped.
func (e *Exporter) WaitUploaded(ctx context.Context, size uint64) error {
	_, err := e.uploaded.Wait(ctx, size)
	switch {
	case err == nil:
		return nil
	case err == ctx.Err():
		return fmt.Errorf("waiting for entry %d to reach object storage: %w", size-1, err)
	default:
		return fmt.Errorf("object storage export stopped: %w", err)
	}
}

// Start checks that the bucket holds nothing of the log this writer lacks,
// claims it, and checks again now that no other writer can acknowledge
// records: a server calls it before it listens, so that it refuses a bucket
// before accepting any record. It returns ErrBucketAhead or ErrFork for a
// bucket this writer must not write, ErrFenced when another writer claimed
// it at the same moment, or the object store's error.
func (e *Exporter) Start(ctx context.Context) error {
	if e.claim != nil {
		return nil
	}
	if e.cfg.Claim == nil {
		if err := e.resume(ctx); err != nil {
			return err
		}
		claim, err := ClaimBucket(ctx, e.cfg.Store, e.cfg.Writer)
		if err != nil {
			return err
		}
		e.cfg.Claim = claim
	}
	if err := e.resume(ctx); err != nil {
		return err
	}
	e.claim = e.cfg.Claim
	e.cfg.Logger.Info("object storage export resumes", "size", e.Exported(), "writer", e.claim.Writer)
	return nil
}

// Run exports until ctx ends, calling Start first if the caller has not.
// Storage errors are logged and retried with backoff; it returns early only
// when the bucket holds a log it must not overwrite (ErrBucketAhead,
// ErrFork), another writer has claimed the bucket (ErrFenced), or a leaf
// cannot be bundled.
func (e *Exporter) Run(ctx context.Context) (err error) {
	defer func() { e.uploaded.Stop(cmpErr(err, errors.New("exporter stopped"))) }()
	backoff := e.cfg.Poll
	for {
		err := e.Start(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, ErrBucketAhead) || errors.Is(err, ErrFork) || errors.Is(err, ErrFenced) || ctx.Err() != nil {
			return err
		}
		e.cfg.Logger.Warn("object storage export: cannot read the bucket, retrying", "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	// Bundles and checkpoints go out in two loops, so that publishing a
	// checkpoint's tiles never delays the bundles acknowledgements wait for.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return e.loop(gctx, e.stepBundles, func(wctx context.Context) {
			if _, err := e.cfg.Log.Wait(wctx, e.Uploaded()); err != nil {
				<-wctx.Done() // a closed log answers at once: wait out the poll, not spin
			}
		})
	})
	g.Go(func() error {
		return e.loop(gctx, e.stepCheckpoint, func(wctx context.Context) {
			// A checkpoint goes out once it is signed and its bundles are
			// stored: wake on either; the poll bounds the wait.
			wctx, cancel := context.WithCancel(wctx)
			defer cancel()
			uploaded, seen := e.cpUploaded, e.cpSeen // the loop's own: read them here, not in the goroutines
			woken := make(chan struct{}, 2)
			go func() { _, _ = e.uploaded.Wait(wctx, uploaded+1); woken <- struct{}{} }()
			go func() {
				// A closed log answers at once: then only bundles or the
				// poll wake the loop, which must not spin.
				if _, err := e.cfg.Log.WaitCheckpoint(wctx, seen); err == nil {
					woken <- struct{}{}
				}
			}()
			<-woken
		})
	})
	return g.Wait()
}

// loop runs step until ctx ends, waiting with wait when it made no
// progress, and retrying failures with backoff.
func (e *Exporter) loop(ctx context.Context, step func(context.Context) (bool, error), wait func(context.Context)) error {
	backoff := e.cfg.Poll
	for {
		progressed, err := step(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrLeafTooLarge), errors.Is(err, ErrFenced):
			e.cfg.Logger.Error("object storage export stopped", "err", err)
			return err
		case err != nil:
			e.cfg.Logger.Warn("object storage export failed, retrying", "err", err, "in", backoff)
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = e.cfg.Poll
		if !progressed {
			wctx, cancel := context.WithTimeout(ctx, e.cfg.Poll)
			wait(wctx)
			cancel()
		}
	}
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resume reads the bucket's checkpoint: the export continues from it, after
// checking that it is a checkpoint of this log and that the bucket holds no
// entries beyond this log's end.
func (e *Exporter) resume(ctx context.Context) error {
	etag, err := e.cfg.Store.Stat(ctx, CheckpointPath)
	if errors.Is(err, ErrNotExist) {
		e.cpETag = ""
		return e.checkTail(ctx, 0)
	}
	if err != nil {
		return err
	}
	raw, err := e.cfg.Store.Get(ctx, CheckpointPath)
	if err != nil {
		return err
	}
	cp, err := e.keys.Open(raw, e.cfg.Log.Origin())
	if err != nil {
		return fmt.Errorf("%w: its checkpoint: %v", ErrFork, err)
	}
	if size := e.cfg.Log.Size(); cp.Size > size {
		return fmt.Errorf("%w: %d entries, this writer has %d: restore from the bucket first", ErrBucketAhead, cp.Size, size)
	}
	root, err := e.cfg.Log.RootHash(ctx, cp.Size)
	if err != nil {
		return err
	}
	if tlog.Hash(cp.Root) != root {
		return fmt.Errorf("%w: its checkpoint of %d entries has root %x, this log %x", ErrFork, cp.Size, cp.Root, root[:])
	}
	if err := e.checkTail(ctx, cp.Size); err != nil {
		return err
	}
	// Read after the stat: if the checkpoint changed in between, the next
	// conditional put fails and the writer stops rather than overwrite.
	e.cpETag = etag
	e.uploaded.Advance(cp.Size)
	e.mu.Lock()
	e.exported = cp.Size
	e.mu.Unlock()
	return nil
}

// checkTail refuses a bucket holding entries beyond this log's end that
// extend this log: a writer in durability object-store mode acknowledged
// them once their bundle was stored, and continuing without them would
// lose them. Bundles that do not extend this log were left by a writer
// fenced off before it acknowledged them; they are overwritten as the log
// grows. from is the bucket's checkpoint size: nothing before it is read.
func (e *Exporter) checkTail(ctx context.Context, from uint64) error {
	size := e.cfg.Log.Size()
	if size < from {
		return nil // refused by the caller
	}
	var last []byte
	if size > 0 {
		var err error
		if last, err = e.cfg.Log.Leaf(ctx, size-1); err != nil {
			return err
		}
	}
	key, _, err := extendingBundle(ctx, e.cfg.Store, size, last, e.cfg.Logger)
	if err != nil {
		return err
	}
	if key != "" {
		return fmt.Errorf("%w: %s holds entries after this writer's %d that extend its log: restore from the bucket first", ErrBucketAhead, key, size)
	}
	return nil
}

// stepBundles uploads the bundles of new entries. It reports whether it
// stored anything.
func (e *Exporter) stepBundles(ctx context.Context) (bool, error) {
	from, size := e.Uploaded(), e.cfg.Log.Size()
	if size <= from {
		return false, nil
	}
	if err := e.uploadBundles(ctx, from, size); err != nil {
		return false, err
	}
	// Acknowledgements wait for uploaded: release them only while this
	// writer still holds the bucket. A writer that claims it later restores
	// these bundles first; one that claimed it earlier fences this one off.
	if err := e.claim.Check(ctx); err != nil {
		return false, err
	}
	e.uploaded.Advance(size)
	return true, nil
}

// stepCheckpoint uploads the tiles and the checkpoint of a new checkpoint
// whose bundles are stored. It reports whether it stored anything.
func (e *Exporter) stepCheckpoint(ctx context.Context) (bool, error) {
	e.cpUploaded = e.Uploaded()
	raw, err := e.cfg.Log.Checkpoint()
	if errors.Is(err, ledger.ErrEmpty) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if e.keys, err = ownChain(e.cfg.Log); err != nil { // the chain may have grown
		return false, err
	}
	cp, err := e.keys.Open(raw, e.cfg.Log.Origin())
	if err != nil {
		return false, err
	}
	e.cpSeen = cp.Size
	old := e.Exported()
	if cp.Size <= old || cp.Size > e.cpUploaded {
		return false, nil
	}
	if err := e.uploadTiles(ctx, old, cp.Size); err != nil {
		return false, err
	}
	// The bundle loop stores partial bundles at the widths the log had when
	// it woke; a reader of this checkpoint needs the one at its width.
	if err := e.uploadCheckpointBundle(ctx, cp.Size); err != nil {
		return false, err
	}
	if err := e.uploadRotations(ctx); err != nil {
		return false, err
	}
	if err := e.claim.Check(ctx); err != nil {
		return false, err
	}
	cond := Cond{IfAbsent: true}
	if e.cpETag != "" {
		cond = Cond{IfMatch: e.cpETag}
	}
	etag, err := e.cfg.Store.Put(ctx, CheckpointPath, raw, cond)
	if errors.Is(err, ErrPrecondition) {
		return false, fmt.Errorf("%w: the bucket's checkpoint is no longer the one this writer stored", ErrFenced)
	}
	if err != nil {
		return false, err
	}
	e.cpETag = etag
	e.collect(ctx, old, cp.Size)
	e.mu.Lock()
	e.exported = cp.Size
	e.mu.Unlock()
	return true, nil
}

// collect deletes the partial bundles and tiles made obsolete by full ones
// the new checkpoint covers: a quiet log rewrites its last bundle at every
// width, which would otherwise pile up. The spec lets partial tiles go once
// the full tile exists; readers holding an older checkpoint fall back to the
// full one. Failures only leave garbage behind, so they are logged.
func (e *Exporter) collect(ctx context.Context, old, size uint64) {
	var prefixes []string
	for n := old / width; n < size/width; n++ {
		prefixes = append(prefixes, EntriesPath(n, 0)+".p/")
	}
	for level, span := 0, uint64(width); span <= size; level, span = level+1, span*width {
		for n := old / span; n < size/span; n++ {
			prefixes = append(prefixes, TilePath(level, n, 0)+".p/")
		}
	}
	for _, p := range prefixes {
		keys, err := e.cfg.Store.List(ctx, p)
		for _, k := range keys {
			if err == nil {
				err = e.cfg.Store.Delete(ctx, k)
			}
		}
		if err != nil {
			e.cfg.Logger.Warn("removing superseded partial tiles failed", "prefix", p, "err", err)
			return
		}
	}
}

// uploadBundles stores the bundles holding entries [from, to): full bundles
// once, and the last, partial one at its new width.
func (e *Exporter) uploadBundles(ctx context.Context, from, to uint64) error {
	first := from / width * width
	if uint64(len(e.partial)) != from-first {
		// First call, or after a failed upload: reread the bundle's start.
		e.partial = e.partial[:0]
		for i := first; i < from; i++ {
			leaf, err := e.cfg.Log.Leaf(ctx, i)
			if err != nil {
				return err
			}
			e.partial = append(e.partial, leaf)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.Parallel)
	put := func(n uint64, leaves [][]byte) error {
		b, err := EncodeBundle(leaves)
		if err != nil {
			return fmt.Errorf("entry bundle %d: %w", n, err)
		}
		g.Go(func() error { return e.putOnce(gctx, EntriesPath(n, len(leaves)), b) })
		return nil
	}
	for i := from; i < to; i++ {
		leaf, err := e.cfg.Log.Leaf(ctx, i)
		if err != nil {
			e.partial = e.partial[:0]
			return errors.Join(err, g.Wait())
		}
		e.partial = append(e.partial, leaf)
		if len(e.partial) == width {
			if err := put(i/width, e.partial); err != nil {
				return errors.Join(err, g.Wait())
			}
			e.partial = nil // the goroutine holds the old slice
		}
	}
	if len(e.partial) > 0 {
		if err := put(to/width, e.partial); err != nil {
			return errors.Join(err, g.Wait())
		}
		e.partial = append([][]byte(nil), e.partial...)
	}
	if err := g.Wait(); err != nil {
		e.partial = e.partial[:0]
		return err
	}
	return nil
}

// uploadTiles stores the hash tiles that change when the tree grows from
// old to size entries.
func (e *Exporter) uploadTiles(ctx context.Context, old, size uint64) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.cfg.Parallel)
	for _, t := range tlog.NewTiles(Height, int64(old), int64(size)) {
		data, err := tlog.ReadTileData(t, e.cfg.Log)
		if err != nil {
			return errors.Join(fmt.Errorf("hash tile %s: %w", t.Path(), err), g.Wait())
		}
		g.Go(func() error { return e.putOnce(gctx, TilePath(t.L, uint64(t.N), t.W), data) })
	}
	return g.Wait()
}

// uploadCheckpointBundle stores the entry bundle at the width of a
// checkpoint of size entries, if that width is partial.
func (e *Exporter) uploadCheckpointBundle(ctx context.Context, size uint64) error {
	n, w := size/width, int(size%width)
	if w == 0 {
		return nil // the full bundle, stored by the bundle loop
	}
	leaves := make([][]byte, 0, w)
	for i := n * width; i < size; i++ {
		leaf, err := e.cfg.Log.Leaf(ctx, i)
		if err != nil {
			return err
		}
		leaves = append(leaves, leaf)
	}
	b, err := EncodeBundle(leaves)
	if err != nil {
		return fmt.Errorf("entry bundle %d: %w", n, err)
	}
	return e.putOnce(ctx, EntriesPath(n, w), b)
}

func (e *Exporter) putOnce(ctx context.Context, key string, data []byte) error {
	replaced, err := putOnce(ctx, e.cfg.Store, e.claim, key, data)
	if replaced {
		e.cfg.Logger.Warn("replaced an object a fenced-off writer left in the bucket", "key", key)
	}
	return err
}

// uploadRotations stores the log's key rotations (LogKeysPath) when there
// are more than the bucket holds, before the checkpoint a new key signs.
func (e *Exporter) uploadRotations(ctx context.Context) error {
	rl, ok := e.cfg.Log.(rotatingLog)
	if !ok || len(rl.LogKeys()) < 2 {
		return nil
	}
	steps, err := rotationSteps(ctx, rl)
	if err != nil {
		return err
	}
	if len(steps) == e.rotations {
		return nil
	}
	b, err := json.Marshal(steps)
	if err != nil {
		return err
	}
	// The list only grows, and every writer of this log derives it from
	// the same chain: overwrite it while this writer holds the bucket.
	if err := e.claim.Check(ctx); err != nil {
		return err
	}
	if _, err := e.cfg.Store.Put(ctx, LogKeysPath, b, Cond{}); err != nil {
		return err
	}
	e.rotations = len(steps)
	return nil
}
