package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

// Mirror is the follower log the tiles are copied into (*ledger.Log opened
// with a VerifierKey).
type Mirror interface {
	Size() uint64
	CheckpointSize() uint64
	RootHash(ctx context.Context, size uint64) ([32]byte, error)
	Leaf(ctx context.Context, index uint64) ([]byte, error)
	AppendLeaves(ctx context.Context, leaves [][]byte, checkpoint []byte) (ledger.Receipt, error)
	Origin() string
	VerifierKey() string
}

// FollowerConfig configures a Follower. Log and Store are required.
type FollowerConfig struct {
	Log    Mirror
	Store  Store
	Logger *slog.Logger
	// Poll is how often the bucket's checkpoint is read. Default 250ms.
	Poll time.Duration
}

// Follower copies the log in a bucket into a follower ledger: a read replica
// that serves the same reads as the writer.
//
// Nothing unauthenticated reaches the ledger: each round reads the signed
// checkpoint, authenticates hash tiles against its root (tlog.TileHashReader),
// checks that the tree the follower already holds is a prefix of it, and
// appends a bundle's leaves only when they hash to the authenticated leaf
// hashes. The ledger then checks the chain and recomputes the root itself
// before it stores the checkpoint.
type Follower struct {
	cfg      FollowerConfig
	tiles    *tileCache
	lastSync atomic.Int64 // unix nanoseconds of the last round that succeeded
}

// LastSync is when the follower last read the bucket and stored everything
// its checkpoint signs (zero before the first time): how current it is.
func (f *Follower) LastSync() time.Time {
	if n := f.lastSync.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// ErrBadCheckpoint: the bucket's checkpoint does not verify, or is
// inconsistent with what the follower holds. The follower keeps what it has
// and keeps serving it.
var ErrBadCheckpoint = errors.New("the bucket's checkpoint is not trusted")

// NewFollower returns a follower; Run starts it.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if cfg.Log == nil || cfg.Store == nil {
		return nil, errors.New("replica: follower needs a Log and a Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if _, err := note.NewVerifier(cfg.Log.VerifierKey()); err != nil {
		return nil, fmt.Errorf("replica: log key: %w", err)
	}
	return &Follower{cfg: cfg, tiles: &tileCache{store: cfg.Store, full: map[tlog.Tile][]byte{}}}, nil
}

// Run follows the bucket until ctx ends. Unreachable storage and untrusted
// checkpoints are logged and retried: the replica keeps serving what it
// verified. It stops only when ctx ends or the follower log fails.
func (f *Follower) Run(ctx context.Context) error {
	for {
		_, err := f.Sync(ctx)
		if err == nil {
			f.lastSync.Store(time.Now().UnixNano())
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ledger.ErrClosed):
			return err
		case errors.Is(err, ErrBadCheckpoint) || errors.Is(err, ledger.ErrMirror):
			f.cfg.Logger.Error("refusing the bucket's log", "err", err)
		case err != nil:
			f.cfg.Logger.Warn("following the bucket failed, retrying", "err", err)
		}
		if !sleep(ctx, f.cfg.Poll) {
			return ctx.Err()
		}
	}
}

// Sync brings the follower up to the bucket's checkpoint and returns that
// checkpoint's size (0 when the bucket has none yet).
func (f *Follower) Sync(ctx context.Context) (uint64, error) {
	raw, err := f.cfg.Store.Get(ctx, CheckpointPath)
	if errors.Is(err, ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// The pinned key is the genesis key; later keys follow from it through
	// the rotations the bucket holds, each verified.
	pinned := f.cfg.Log.VerifierKey()
	if rl, ok := f.cfg.Log.(interface{ LogKeys() []ledger.LogKey }); ok {
		if keys := rl.LogKeys(); len(keys) > 0 {
			pinned = keys[0].VerifierKey
		}
	}
	chain, err := followChain(ctx, f.cfg.Store, pinned)
	if err != nil {
		return 0, err
	}
	cp, err := chain.open(raw, f.cfg.Log.Origin())
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	have, haveCP := f.cfg.Log.Size(), f.cfg.Log.CheckpointSize()
	if cp.Size < haveCP {
		return cp.Size, fmt.Errorf("%w: it signs %d entries, the follower holds a checkpoint of %d", ErrBadCheckpoint, cp.Size, haveCP)
	}
	if cp.Size == haveCP {
		return cp.Size, nil
	}
	tree := tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Root)}
	f.tiles.ctx = ctx // tlog's TileReader has no context of its own
	hr := tlog.TileHashReader(tree, f.tiles)
	if haveCP > 0 {
		// The tree the follower holds must be a prefix of the new one.
		mine, err := f.cfg.Log.RootHash(ctx, haveCP)
		if err != nil {
			return cp.Size, err
		}
		theirs, err := tlog.TreeHash(int64(haveCP), hr)
		if err != nil {
			return cp.Size, tileErr(fmt.Sprintf("hash tiles for %d entries", haveCP), err)
		}
		if theirs != mine {
			return cp.Size, fmt.Errorf("%w: its tree of %d entries is not an extension of the follower's (root %x, follower %x)",
				ErrBadCheckpoint, cp.Size, theirs[:], mine[:])
		}
	}
	if have > cp.Size {
		return cp.Size, fmt.Errorf("%w: it signs %d entries, the follower holds %d", ErrBadCheckpoint, cp.Size, have)
	}
	if have == cp.Size {
		// Entries restored after the last checkpoint, now signed.
		_, err := f.cfg.Log.AppendLeaves(ctx, nil, raw)
		return cp.Size, err
	}
	// The checkpoints to store on the way: the cross-signed checkpoint of
	// every rotation in between (the follower log requires it, as the
	// first checkpoint after a rotation), then the bucket's.
	type target struct {
		size uint64
		note []byte
	}
	var targets []target
	for i, s := range chain.sizes {
		if s > haveCP && s < cp.Size {
			targets = append(targets, target{s, []byte(chain.steps[i].Checkpoint)})
		}
	}
	targets = append(targets, target{cp.Size, raw})
	for start := have; start < cp.Size; {
		for targets[0].size <= start {
			targets = targets[1:] // restored entries already beyond it
		}
		n := start / width
		w := int(min(width, cp.Size-n*width))
		leaves, err := f.bundle(ctx, hr, n, w)
		if err != nil {
			return cp.Size, err
		}
		end := min(n*width+uint64(w), targets[0].size)
		var sig []byte
		if end == targets[0].size {
			sig = targets[0].note // the ledger checks the root it computes against it
			targets = targets[1:]
		}
		if _, err := f.cfg.Log.AppendLeaves(ctx, leaves[start-n*width:end-n*width], sig); err != nil {
			return cp.Size, err
		}
		start = end
	}
	return cp.Size, nil
}

// bundle fetches entry bundle n at width w and checks its leaves against the
// authenticated leaf hashes.
func (f *Follower) bundle(ctx context.Context, hr tlog.HashReader, n uint64, w int) ([][]byte, error) {
	b, err := f.cfg.Store.Get(ctx, EntriesPath(n, w))
	if errors.Is(err, ErrNotExist) && w < width {
		// A checkpoint moved on and its partial bundle may be gone: the
		// full bundle holds the same leaves first.
		b, err = f.cfg.Store.Get(ctx, EntriesPath(n, width))
		if errors.Is(err, ErrNotExist) {
			return nil, fmt.Errorf("the checkpoint needs entry bundle %s (or the full %s), and the bucket holds neither: %w",
				EntriesPath(n, w), EntriesPath(n, width), err)
		}
	}
	if err != nil {
		return nil, err
	}
	leaves, err := DecodeBundle(b)
	if err != nil {
		return nil, fmt.Errorf("entry bundle %d: %w", n, err)
	}
	if len(leaves) < w {
		return nil, fmt.Errorf("%w: entry bundle %d holds %d entries, want %d", ErrBadCheckpoint, n, len(leaves), w)
	}
	leaves = leaves[:w]
	idx := make([]int64, w)
	for i := range idx {
		idx[i] = tlog.StoredHashIndex(0, int64(n*width)+int64(i))
	}
	want, err := hr.ReadHashes(idx)
	if err != nil {
		return nil, tileErr(fmt.Sprintf("hash tiles for entry bundle %d", n), err)
	}
	for i, leaf := range leaves {
		if tlog.RecordHash(leaf) != want[i] {
			return nil, fmt.Errorf("%w: entry %d in bundle %d does not match the signed tree", ErrBadCheckpoint, n*width+uint64(i), n)
		}
	}
	return leaves, nil
}

// storeError is a failure to read the bucket, as opposed to tiles that
// tlog found inconsistent with the signed tree.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

func tileErr(what string, err error) error {
	if errors.As(err, new(storeError)) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, what, err)
}

// tileCache reads hash tiles for tlog.TileHashReader and keeps the full
// ones it authenticated (they never change).
type tileCache struct {
	store Store
	ctx   context.Context // of the Sync using it; Syncs do not overlap
	mu    sync.Mutex
	full  map[tlog.Tile][]byte
}

func (c *tileCache) Height() int { return Height }

func (c *tileCache) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		c.mu.Lock()
		b, ok := c.full[t]
		c.mu.Unlock()
		if ok {
			out[i] = b
			continue
		}
		b, err := c.store.Get(c.ctx, TilePath(t.L, uint64(t.N), t.W))
		if errors.Is(err, ErrNotExist) && t.W < width {
			// Superseded partial tile: the full tile begins with the same hashes.
			if b, err = c.store.Get(c.ctx, TilePath(t.L, uint64(t.N), width)); err == nil && len(b) >= t.W*tlog.HashSize {
				b = b[:t.W*tlog.HashSize]
			}
		}
		if err != nil {
			return nil, storeError{err}
		}
		out[i] = b
	}
	return out, nil
}

func (c *tileCache) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.full) > 4096 {
		clear(c.full)
	}
	for i, t := range tiles {
		if t.W == width {
			c.full[t] = data[i]
		}
	}
}

// Restore copies the log in a bucket into a follower ledger, for disaster
// recovery: everything its latest checkpoint signs, authenticated as Sync
// does, and then the entries a writer in object-store durability mode stored
// after that checkpoint. Those have no signed checkpoint yet: the ledger only
// checks that they extend the chain, and the writer that continues the log
// signs one at once. It returns the number of entries the follower holds.
func Restore(ctx context.Context, log Mirror, store Store, logger *slog.Logger) (uint64, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f, err := NewFollower(FollowerConfig{Log: log, Store: store, Logger: logger})
	if err != nil {
		return 0, err
	}
	if _, err := f.Sync(ctx); err != nil {
		return log.Size(), err
	}
	for {
		size := log.Size()
		var last []byte
		if size > 0 {
			if last, err = log.Leaf(ctx, size-1); err != nil {
				return size, err
			}
		}
		key, leaves, err := extendingBundle(ctx, store, size, last, logger)
		if err != nil || key == "" {
			return size, err
		}
		if _, err := log.AppendLeaves(ctx, leaves, nil); err != nil {
			return size, fmt.Errorf("entries after the last checkpoint, from %s: %w", key, err)
		}
	}
}

// extendingBundle finds a stored entry bundle holding entries after the
// first size entries of a log whose last entry's leaf is last (nil when
// size is 0): entries a writer in durability object-store mode stored, and
// maybe acknowledged, beyond that log. It returns the bundle's key and its
// entries from size on, or "" when there is none. A bundle whose entry at
// size does not follow last was left by a writer fenced off before it could
// acknowledge it; it is skipped, and its successor overwrites it.
func extendingBundle(ctx context.Context, store Store, size uint64, last []byte, logger *slog.Logger) (string, [][]byte, error) {
	n := size / width
	keys, err := bundlesAt(ctx, store, n)
	if err != nil {
		return "", nil, err
	}
	off := size - n*width
	for _, key := range keys {
		b, err := store.Get(ctx, key)
		if errors.Is(err, ErrNotExist) {
			continue // a superseded partial bundle, deleted since listed
		}
		if err != nil {
			return "", nil, err
		}
		leaves, err := DecodeBundle(b)
		if err != nil {
			logger.Warn("skipping an unreadable entry bundle", "key", key, "err", err)
			continue
		}
		if uint64(len(leaves)) <= off {
			return "", nil, nil // keys are widest first: none holds more
		}
		if !follows(leaves[off], size, last) {
			logger.Warn("skipping an entry bundle that does not extend the log (left by a fenced-off writer)", "key", key, "entry", size)
			continue
		}
		return key, leaves[off:], nil
	}
	return "", nil, nil
}

// follows reports whether leaf is entry index of the log whose previous
// entry's leaf is prev (nil for the first entry).
func follows(leaf []byte, index uint64, prev []byte) bool {
	e, err := evidence.ParseLeafPrefix(leaf)
	if err != nil || e.Index != index {
		return false
	}
	if prev == nil {
		return index == 0
	}
	return e.PrevHash == evidence.EntryHash(prev)
}

// bundlesAt returns the keys of the entry bundles stored at n, widest
// first: the full one, then the partial ones.
func bundlesAt(ctx context.Context, store Store, n uint64) ([]string, error) {
	var keys []string
	if _, err := store.Stat(ctx, EntriesPath(n, width)); err == nil {
		keys = append(keys, EntriesPath(n, width))
	} else if !errors.Is(err, ErrNotExist) {
		return nil, err
	}
	prefix := EntriesPath(n, 0) + ".p/"
	listed, err := store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var ws []int
	for _, k := range listed {
		if w := parseBundlePartial(k, prefix); w > 0 {
			ws = append(ws, w)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ws)))
	for _, w := range ws {
		keys = append(keys, EntriesPath(n, w))
	}
	return keys, nil
}
