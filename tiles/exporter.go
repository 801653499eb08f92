package tiles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sync/errgroup"

	"evident.dev/evident/ledger"
)

// Source is the writer's log as the exporter reads it (*ledger.Log).
type Source interface {
	Size() uint64
	Wait(ctx context.Context, size uint64) (uint64, error)
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
}

// Exporter keeps a bucket up to date with a log: entry bundles as soon as
// entries are durable, then the hash tiles and the checkpoint once a
// checkpoint covers them. A reader of the bucket therefore never sees a
// checkpoint whose tiles or bundles are missing.
type Exporter struct {
	cfg       ExporterConfig
	verifiers []note.Verifier // of the log's own chain of keys, newest first
	rotations int             // rotations stored in the bucket (LogKeysPath)

	// mu guards uploaded, exported and changed, written by Run.
	mu       sync.Mutex
	uploaded uint64        // entries whose bundles are stored
	exported uint64        // size of the checkpoint stored
	changed  chan struct{} // closed and replaced when uploaded grows
	failed   error         // set when Run has stopped

	// Owned by the bundle loop: the leaves of the bundle still partial at
	// uploaded.
	partial [][]byte
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
		return nil, errors.New("tiles: exporter needs a Log and a Store")
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
	vs, err := ownVerifiers(cfg.Log)
	if err != nil {
		return nil, err
	}
	return &Exporter{cfg: cfg, verifiers: vs, changed: make(chan struct{})}, nil
}

// Uploaded is the number of entries whose bundles are in the bucket.
func (e *Exporter) Uploaded() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.uploaded
}

// Exported is the size of the checkpoint in the bucket.
func (e *Exporter) Exported() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exported
}

// WaitUploaded returns once the first size entries are in the bucket, or
// with an error when ctx ends or the exporter has stopped.
func (e *Exporter) WaitUploaded(ctx context.Context, size uint64) error {
	for {
		e.mu.Lock()
		up, ch, failed := e.uploaded, e.changed, e.failed
		e.mu.Unlock()
		if up >= size {
			return nil
		}
		if failed != nil {
			return fmt.Errorf("object storage export stopped: %w", failed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for entry %d to reach object storage: %w", size-1, ctx.Err())
		}
	}
}

// Run exports until ctx ends. Storage errors are logged and retried with
// backoff; it returns early only when the bucket holds a log it must not
// overwrite (ErrBucketAhead, ErrFork) or a leaf cannot be bundled.
func (e *Exporter) Run(ctx context.Context) (err error) {
	defer func() {
		e.mu.Lock()
		e.failed = cmpErr(err, errors.New("exporter stopped"))
		close(e.changed)
		e.changed = make(chan struct{})
		e.mu.Unlock()
	}()
	backoff := e.cfg.Poll
	for {
		err := e.resume(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, ErrBucketAhead) || errors.Is(err, ErrFork) || ctx.Err() != nil {
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
			_, _ = e.cfg.Log.Wait(wctx, e.Uploaded()) // woken by growth or the poll
		})
	})
	g.Go(func() error {
		return e.loop(gctx, e.stepCheckpoint, func(wctx context.Context) {
			e.mu.Lock()
			ch := e.changed
			e.mu.Unlock()
			select { // woken by new bundles or the poll
			case <-ch:
			case <-wctx.Done():
			}
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
		case errors.Is(err, ErrLeafTooLarge):
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
// checking that it is a checkpoint of this log.
func (e *Exporter) resume(ctx context.Context) error {
	raw, err := e.cfg.Store.Get(ctx, CheckpointPath)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	cp, err := openOwn(raw, e.cfg.Log.Origin(), e.verifiers)
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
	if tlog.Hash(cp.Hash) != root {
		return fmt.Errorf("%w: its checkpoint of %d entries has root %x, this log %x", ErrFork, cp.Size, cp.Hash, root[:])
	}
	e.mu.Lock()
	e.uploaded, e.exported = cp.Size, cp.Size
	e.mu.Unlock()
	e.cfg.Logger.Info("object storage export resumes", "size", cp.Size)
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
	e.mu.Lock()
	e.uploaded = size
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	return true, nil
}

// stepCheckpoint uploads the tiles and the checkpoint of a new checkpoint
// whose bundles are stored. It reports whether it stored anything.
func (e *Exporter) stepCheckpoint(ctx context.Context) (bool, error) {
	raw, err := e.cfg.Log.Checkpoint()
	if errors.Is(err, ledger.ErrEmpty) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if e.verifiers, err = ownVerifiers(e.cfg.Log); err != nil { // the chain may have grown
		return false, err
	}
	cp, err := openOwn(raw, e.cfg.Log.Origin(), e.verifiers)
	if err != nil {
		return false, err
	}
	old := e.Exported()
	if cp.Size <= old || cp.Size > e.Uploaded() {
		return false, nil
	}
	if err := e.uploadTiles(ctx, old, cp.Size); err != nil {
		return false, err
	}
	if err := e.uploadRotations(ctx); err != nil {
		return false, err
	}
	if err := e.cfg.Store.Put(ctx, CheckpointPath, raw); err != nil {
		return false, err
	}
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
		g.Go(func() error { return e.cfg.Store.Put(gctx, EntriesPath(n, len(leaves)), b) })
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
		g.Go(func() error { return e.cfg.Store.Put(gctx, TilePath(t.L, uint64(t.N), t.W), data) })
	}
	return g.Wait()
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
	if err := e.cfg.Store.Put(ctx, LogKeysPath, b); err != nil {
		return err
	}
	e.rotations = len(steps)
	return nil
}
