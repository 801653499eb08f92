// Package ledger is Evident's append-only log: entries chained by hash, the
// leaves of an RFC 6962 Merkle tree (https://www.rfc-editor.org/rfc/rfc6962),
// committed to by signed C2SP tlog-checkpoint notes
// (https://c2sp.org/tlog-checkpoint), stored in Badger with derived secondary
// indexes.
//
// Leaves are kept in append-only segment files (segments.go), the source of
// truth; Badger holds what is derived from them and is rebuilt from them after
// a crash. One sequencer goroutine owns the tree. Appends are grouped: each
// batch is one segment write, one fdatasync and one Badger transaction, and
// no caller is answered before its batch is durable.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/progress"
	"fmt"
	"log/slog"
	"math/bits"
	"path/filepath"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Sentinel errors callers branch on.
var (
	// ErrOverloaded: the append queue is full; try again later.
	ErrOverloaded = errors.New("ledger overloaded")
	// ErrClosed: the log is closed or its sequencer stopped.
	ErrClosed = errors.New("ledger closed")
	// ErrNotFound: no such entry or checkpoint.
	ErrNotFound = errors.New("not found")
	// ErrEmpty: the log has no entries yet, so there is no genesis.
	ErrEmpty = errors.New("log is empty")
	// ErrStorage: the record was not stored because storage failed; the
	// log itself is intact and a retry may succeed.
	ErrStorage = errors.New("storage failure")
	// ErrFollower: a follower log (no Signer) mirrors another log's leaves
	// and takes no records of its own.
	ErrFollower = errors.New("follower log takes no records of its own")
	// ErrNotFollower: only a follower log mirrors leaves (AppendLeaves).
	ErrNotFollower = errors.New("log has a signer: it is not a follower")
	// ErrMirror: leaves or a checkpoint handed to AppendLeaves do not extend
	// the log (wrong index, origin, chain link, or a root the checkpoint does
	// not sign). Nothing of the call was stored.
	ErrMirror = errors.New("leaves do not extend the log")
)

// Config configures a log. Dir, Origin and either Signer or VerifierKey are
// required.
type Config struct {
	Dir    string             // Badger directory
	Origin string             // checkpoint origin line, e.g. "evident.example.com/prod"
	Signer *checkpoint.Signer // signs checkpoints
	// PreviousSigner, with Signer, is the log key Signer replaces: it signs
	// the checkpoints before the log records the rotation (the
	// trust.updated entry naming Signer's key) and, with Signer, the first
	// checkpoint after it. See LogKey for the rule.
	PreviousSigner *checkpoint.Signer
	// VerifierKey, given instead of Signer, opens a follower: a copy of the
	// log named by Origin (a read replica, or a restore in progress) that
	// only grows by AppendLeaves, with the checkpoints the log's owner
	// signed, checked against this note verifier key.
	VerifierKey string
	Logger      *slog.Logger // nil: discard
	// Clock stamps receivedAt; nil means time.Now.
	Clock func() time.Time
	// MaxBatch bounds the records in one transaction. Default 1024.
	MaxBatch int
	// QueueSize bounds records waiting for the sequencer; beyond it Append
	// fails fast with ErrOverloaded. Default 8192.
	QueueSize int
	// CheckpointInterval is the most often a new checkpoint is signed; a
	// quiet log checkpoints every batch. Default 500ms.
	CheckpointInterval time.Duration
	// CacheMB sizes Badger's block and index caches together. Default 24:
	// the tables are memory-mapped and Snappy blocks decode cheaply, so a
	// larger block cache mostly adds garbage-collector work (at 64 the
	// server spent more CPU per record, and held 20 MiB more).
	CacheMB int
	// OnCommit, if set, is told each durable batch's record count and how
	// long making it durable took (segment write, fdatasync, index
	// transaction); the metrics use it. It runs on the commit path: keep it
	// fast and non-blocking.
	OnCommit func(records int, took time.Duration)
	// MinFreeBytes is the free space kept on the filesystem holding Dir:
	// while less is free, batches fail with ErrStorage ("disk nearly
	// full") before anything is written. Badger maps sparse memtable and
	// value-log files, and a page of those that cannot be allocated is a
	// fatal SIGBUS, not an error: the reserve keeps a filling disk on the
	// error path. Default 64 MiB; negative: no reserve.
	MinFreeBytes int64
	// RecentEntries is how many of the last appended entries are kept
	// decoded in memory for Decoded and Entry. Default 4096; negative: none.
	RecentEntries int
}

func (c *Config) withDefaults() error {
	if c.Dir == "" || c.Origin == "" || (c.Signer == nil) == (c.VerifierKey == "") {
		return errors.New("ledger: Dir, Origin and one of Signer or VerifierKey are required")
	}
	if c.Signer != nil && c.Signer.Name() != c.Origin {
		return fmt.Errorf("ledger: the log key is named %q but the origin is %q", c.Signer.Name(), c.Origin)
	}
	if c.PreviousSigner != nil && (c.Signer == nil || c.PreviousSigner.Name() != c.Origin) {
		return errors.New("ledger: a PreviousSigner needs a Signer, and both are named after the origin")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1024
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 8192
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 500 * time.Millisecond
	}
	if c.CacheMB <= 0 {
		c.CacheMB = 24
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = 64 << 20
	}
	if c.RecentEntries == 0 {
		c.RecentEntries = 4096
	}
	return nil
}

// head is the state the sequencer extends.
type head struct {
	size           uint64
	lastHash       [sha256.Size]byte
	checkpointSize uint64
	offset         uint64 // where entry size starts in its segment
}

const headLen = 8 + sha256.Size + 8 + 8

// encode writes the head and, after it, the tree's frontier hashes below
// minStoredLevel (one per low bit set in size): they are not stored
// anywhere else, and opening the log must not depend on reading its last
// leaves (loadFrontier).
func (h head) encode(tree frontier) []byte {
	b := make([]byte, 0, headLen+minStoredLevel*tlog.HashSize)
	b = binary.BigEndian.AppendUint64(b, h.size)
	b = append(b, h.lastHash[:]...)
	b = binary.BigEndian.AppendUint64(b, h.checkpointSize)
	b = binary.BigEndian.AppendUint64(b, h.offset)
	low := b
	for level := range minStoredLevel {
		if h.size&(1<<level) == 0 {
			continue
		}
		fh, ok := tree[tlog.StoredHashIndex(level, int64(h.size>>level)-1)]
		if !ok {
			return low // no frontier to carry: loadFrontier reads the leaves
		}
		b = append(b, fh[:]...)
	}
	return b
}

// headFrontier returns the low frontier hashes an encoded head carries, by
// stored hash index; ok is false for a head written before they were.
func headFrontier(b []byte, size uint64) (low map[int64]tlog.Hash, ok bool) {
	if len(b) != headLen+bits.OnesCount64(size&(1<<minStoredLevel-1))*tlog.HashSize {
		return nil, false
	}
	low = map[int64]tlog.Hash{}
	rest := b[headLen:]
	for level := range minStoredLevel {
		if size&(1<<level) != 0 {
			low[tlog.StoredHashIndex(level, int64(size>>level)-1)] = tlog.Hash(rest[:tlog.HashSize])
			rest = rest[tlog.HashSize:]
		}
	}
	return low, true
}

func decodeHead(b []byte) (head, error) {
	var h head
	if len(b) < headLen || len(b) > headLen+minStoredLevel*tlog.HashSize {
		return h, fmt.Errorf("head record has %d bytes, want %d to %d", len(b), headLen, headLen+minStoredLevel*tlog.HashSize)
	}
	h.size = binary.BigEndian.Uint64(b)
	copy(h.lastHash[:], b[8:])
	h.checkpointSize = binary.BigEndian.Uint64(b[8+sha256.Size:])
	h.offset = binary.BigEndian.Uint64(b[16+sha256.Size:])
	return h, nil
}

// location is where an entry's frame is in its segment.
type location struct {
	offset uint64
	length uint32 // of the leaf
}

func (l location) encode() []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(make([]byte, 0, 12), l.offset), l.length)
}

func decodeLocation(b []byte) (location, error) {
	if len(b) != 12 {
		return location{}, fmt.Errorf("entry location has %d bytes, want 12", len(b))
	}
	return location{offset: binary.BigEndian.Uint64(b), length: binary.BigEndian.Uint32(b[8:])}, nil
}

// Log is an open log. Its methods are safe for concurrent use.
type Log struct {
	cfg      Config
	verifier note.Verifier // of checkpoints; set for a follower
	db       *badger.DB
	segs     *segments
	queue    chan *pending

	// commits hands a prepared batch to the committer. Unbuffered: the
	// sequencer prepares one batch while another commits, no more, so what
	// arrives meanwhile waits for the next batch instead of being spread
	// over several small ones, each paying its own fsync.
	commits      chan *prepared // sequencer -> committer
	commitFailed chan struct{}  // committer -> sequencer: restart from the durable head

	// mu guards published: what readers may see. Only the sequencer writes it,
	// after the batch that produced it is durable.
	mu        sync.RWMutex
	published head
	latestCP  []byte
	upper     *upperHashes // tree hashes at cachedLevel and above, for proofs
	recent    *recent      // the last entries made durable, decoded
	frames    sync.Pool    // of *[]byte: segment run buffers (recycle)
	keys      []LogKey     // the chain of log keys as far as published
	// open holds the untimed postings of the entries published since the
	// last chunk Badger holds (postings.go); tags has the tag of each chunk
	// before it, by start/chunkSize.
	open *chunk
	tags []uint64
	// damaged are the entries found unreadable at open (loadPostings).
	damaged []uint64

	// seqKeys is the chain of log keys as far as the sequencer has
	// prepared; only the sequencer goroutine uses it.
	seqKeys []LogKey
	// filling is the chunk of postings as far as the sequencer has
	// prepared; only the sequencer goroutine (and load, before it) uses it.
	filling *filling
	// digests holds every record digest prepared, for a writer's dedupe
	// (nil on a follower); only the sequencer goroutine uses it.
	digests *digestFilter

	// size mirrors published.size for Wait, whose callers need a wake-up
	// that published, read under mu, does not give. Advanced after each
	// publish, stopped by Close.
	size progress.Mark
	// checkpointed mirrors published.checkpointSize for WaitCheckpoint: a
	// checkpoint may be signed without the log growing.
	checkpointed progress.Mark

	stop    chan struct{} // closed by Close
	stopped chan struct{} // closed when the committer has exited, after the sequencer
	reads   readGate      // Close waits for the reads in flight
	fatal   error         // set by the sequencer before it exits
}

// Open opens or creates the log in cfg.Dir and starts its sequencer.
func Open(cfg Config) (*Log, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	var verifier note.Verifier
	if cfg.Signer == nil {
		v, err := note.NewVerifier(cfg.VerifierKey)
		if err != nil {
			return nil, fmt.Errorf("ledger: follower verifier key: %w", err)
		}
		if v.Name() != cfg.Origin {
			return nil, fmt.Errorf("ledger: the verifier key is named %q but the origin is %q", v.Name(), cfg.Origin)
		}
		verifier = v
	}
	segs, err := openSegments(filepath.Join(cfg.Dir, "entries"))
	if err != nil {
		return nil, err
	}
	db, err := openIndex(badgerOptions(cfg), cfg.Dir) // every start checks the tables (replicas and restores too)
	if err != nil {
		return nil, errors.Join(err, segs.close())
	}
	l := &Log{
		cfg:          cfg,
		verifier:     verifier,
		db:           db,
		segs:         segs,
		queue:        make(chan *pending, cfg.QueueSize),
		commits:      make(chan *prepared),
		commitFailed: make(chan struct{}, 1),
		stop:         make(chan struct{}),
		stopped:      make(chan struct{}),
		recent:       newRecent(max(cfg.RecentEntries, 0)),
	}
	if err := l.load(); err != nil {
		return nil, errors.Join(err, db.Close(), segs.close())
	}
	l.size.Advance(l.published.size)
	l.checkpointed.Advance(l.published.checkpointSize)
	if cfg.Signer != nil {
		if l.digests, err = loadDigestFilter(db); err != nil {
			return nil, errors.Join(err, db.Close(), segs.close())
		}
	}
	keys, err := l.loadKeys(context.Background())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("ledger: read the chain of log keys: %w", err), db.Close(), segs.close())
	}
	if cfg.Signer == nil && len(keys) > 0 && keys[0].VerifierKey != cfg.VerifierKey {
		return nil, errors.Join(fmt.Errorf("ledger: the genesis names the log key %q, not %q", keys[0].VerifierKey, cfg.VerifierKey), db.Close(), segs.close())
	}
	l.keys, l.seqKeys = keys, keys
	go l.sequence()
	go l.commit()
	return l, nil
}

// badgerOptions sizes Badger for derived state on a small machine: only small
// keys and values (the leaves are in segment files), no syncs of its own (what
// a crash loses is rebuilt from the segments), and bounded caches and
// memtables so a log of millions of entries stays within a few hundred MiB.
func badgerOptions(cfg Config) badger.Options {
	cache := int64(cfg.CacheMB) << 20
	o := badger.DefaultOptions(filepath.Join(cfg.Dir, "index")).
		WithLogger(badgerLogger{cfg.Logger}).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithValueThreshold(1 << 10).
		WithMemTableSize(8 << 20).
		WithNumMemtables(3).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		// Two thirds for table indexes and Bloom filters: every point read
		// of a key that is not there (a new record's digest, a new change)
		// is answered by a filter, at about 10 MiB per million entries.
		WithBlockCacheSize(cache / 3).
		WithIndexCacheSize(cache * 2 / 3).
		WithValueLogFileSize(64 << 20).
		// Snappy: index keys share long prefixes, so blocks still shrink by
		// about a third, at a fraction of ZSTD's CPU. ZSTD cost 8% of the
		// server's CPU at full ingest, mostly in compactions, for tables
		// only a fifth smaller. Badger records each table's compression, so
		// tables written with ZSTD before stay readable.
		WithCompression(options.Snappy).
		WithNumCompactors(2).
		// Small tables at every level: a compaction builds up to eight
		// tables at once, each in a buffer of twice the table size, all on
		// the Go heap. With the default sizes (2 MiB, doubling per level)
		// those buffers grew with the log until the heap sat at the
		// memory limit and the collector ran without pause. A million
		// entries make about 400 tables of 512 KiB.
		WithBaseTableSize(512 << 10)
	o.TableSizeMultiplier = 1
	return o
}

// load reads the head, replays entries the segments hold beyond it (Badger
// state lost in a crash), cuts off a torn segment tail, and rebuilds the
// secondary indexes if they follow an older definition.
func (l *Log) load() error {
	if err := l.readHead(); err != nil {
		return err
	}
	if err := l.loadPostings(); err != nil {
		return err
	}
	if err := l.recover(); err != nil {
		return err
	}
	if err := l.reindex(); err != nil {
		return err
	}
	l.open = l.filling.c.clone()
	return l.read(func(txn *badger.Txn) (err error) {
		l.upper, err = loadUpperHashes(txn, l.segs, l.published.size)
		return err
	})
}

func (l *Log) readHead() error {
	return l.read(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyHead))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read log head: %w", err)
		}
		b, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read log head: %w", err)
		}
		h, err := decodeHead(b)
		if err != nil {
			return fmt.Errorf("corrupt log head: %w", err)
		}
		if h.checkpointSize > 0 {
			item, err := txn.Get(u64Key(prefixCheckpoint, h.checkpointSize))
			if err != nil {
				return fmt.Errorf("read checkpoint %d: %w", h.checkpointSize, err)
			}
			if l.latestCP, err = item.ValueCopy(nil); err != nil {
				return fmt.Errorf("read checkpoint %d: %w", h.checkpointSize, err)
			}
		}
		l.published = h
		l.cfg.Logger.Info("ledger opened", "dir", l.cfg.Dir, "size", h.size, "checkpoint", h.checkpointSize)
		return nil
	})
}

// Close stops the sequencer after it has committed what it holds, signs a
// final checkpoint, and closes storage.
func (l *Log) Close() error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.size.Stop(ErrClosed)
	l.checkpointed.Stop(ErrClosed)
	<-l.stopped
	l.reads.close()
	return errors.Join(l.segs.close(), l.db.Close())
}

// read runs f in a read transaction of the index, unless the log is closed.
func (l *Log) read(f func(txn *badger.Txn) error) error {
	if err := l.reads.enter(); err != nil {
		return err
	}
	defer l.reads.leave()
	return l.db.View(f)
}

// Size is the number of durable entries.
func (l *Log) Size() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.published.size
}

// Wait blocks until the log holds more than size entries, ctx ends, or the
// log closes, and returns the log's size. Projections (completeness,
// metrics, query indexes) tail the log with it: read entries [done, Wait(done)).
func (l *Log) Wait(ctx context.Context, size uint64) (uint64, error) {
	return l.size.Wait(ctx, size+1)
}

// WaitCheckpoint waits until the latest signed checkpoint covers more than
// size entries, ctx ends or the log closes, and returns its size.
func (l *Log) WaitCheckpoint(ctx context.Context, size uint64) (uint64, error) {
	return l.checkpointed.Wait(ctx, size+1)
}

// CheckpointSize is the tree size of the latest signed checkpoint.
func (l *Log) CheckpointSize() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.published.checkpointSize
}

// Origin is the log's checkpoint origin.
func (l *Log) Origin() string { return l.cfg.Origin }

// VerifierKey is the note verifier key of the log's latest checkpoints: the
// last of LogKeys, or, before the genesis, the configured key (Signer's, or
// a follower's VerifierKey). Auditors pin the first of LogKeys, the
// genesis key, and follow the chain from it.
func (l *Log) VerifierKey() string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if n := len(l.keys); n > 0 {
		return l.keys[n-1].VerifierKey
	}
	if l.cfg.Signer == nil {
		return l.cfg.VerifierKey
	}
	return l.cfg.Signer.VerifierKey()
}

// Checkpoint returns the latest signed checkpoint, or ErrEmpty.
func (l *Log) Checkpoint() ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.latestCP == nil {
		return nil, ErrEmpty
	}
	return l.latestCP, nil
}

// Leaf returns the leaf at index.
func (l *Log) Leaf(ctx context.Context, index uint64) ([]byte, error) {
	if index >= l.Size() {
		return nil, fmt.Errorf("entry %d: %w", index, ErrNotFound)
	}
	var leaf []byte
	err := l.read(func(txn *badger.Txn) error {
		var err error
		leaf, err = readLeaf(txn, l.segs, index)
		return err
	})
	return leaf, err
}

// readLeaf reads an entry's leaf through its stored location.
func readLeaf(txn *badger.Txn, segs *segments, index uint64) ([]byte, error) {
	loc, err := locate(txn, index)
	if err != nil {
		return nil, err
	}
	return segs.read(index, loc.offset, loc.length)
}

// locate returns where entry index is in its segment.
func locate(txn *badger.Txn, index uint64) (location, error) {
	var loc location
	item, err := txn.Get(u64Key(prefixEntry, index))
	if err != nil {
		return loc, fmt.Errorf("locate entry %d: %w", index, err)
	}
	if err := item.Value(func(v []byte) error {
		loc, err = decodeLocation(v)
		return err
	}); err != nil {
		return loc, fmt.Errorf("locate entry %d: %w", index, err)
	}
	return loc, nil
}

// hashReader reads stored tree hashes inside one read transaction, the upper
// levels from the in-memory cache when there is one, and the levels below
// minStoredLevel from the leaves they cover.
type hashReader struct {
	txn   *badger.Txn
	segs  *segments
	upper *upperHashes
}

func (r hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var low lowLeaves
	for i, idx := range indexes {
		if r.upper != nil {
			if h, ok := r.upper.get(idx); ok {
				out[i] = h
				continue
			}
		}
		if level, n := tlog.SplitStoredHashIndex(idx); level < minStoredLevel {
			h, err := low.node(r, level, n)
			if err != nil {
				return nil, fmt.Errorf("tree hash (level %d, node %d): %w", level, n, err)
			}
			out[i] = h
			continue
		}
		item, err := r.txn.Get(u64Key(prefixHash, uint64(idx)))
		if err != nil {
			return nil, fmt.Errorf("read tree hash %d: %w", idx, err)
		}
		if err := item.Value(func(v []byte) error {
			if len(v) != tlog.HashSize {
				return fmt.Errorf("tree hash %d has %d bytes", idx, len(v))
			}
			copy(out[i][:], v)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lowLeaves holds the leaves of one aligned group of 1<<minStoredLevel
// entries. A proof asks for the two hashes below minStoredLevel on its path
// together, and both lie in the group of the proved entry: one read of the
// group answers both (and the proved entry's own leaf is never hashed).
type lowLeaves struct {
	first  int64 // index of leaves[0]
	leaves [][]byte
	hashes []*tlog.Hash // computed when first needed
}

// node returns the tree hash (level, n), level < minStoredLevel, from the
// leaves it covers.
func (c *lowLeaves) node(r hashReader, level int, n int64) (tlog.Hash, error) {
	first, width := n<<level, int64(1)<<level
	if first < c.first || first+width > c.first+int64(len(c.leaves)) {
		group := first >> minStoredLevel << minStoredLevel
		if err := c.read(r, group, 1<<minStoredLevel); errors.Is(err, badger.ErrKeyNotFound) {
			err = c.read(r, first, width) // the group runs past the end of the log
			if err != nil {
				return tlog.Hash{}, err
			}
		} else if err != nil {
			return tlog.Hash{}, err
		}
	}
	var hs [1 << minStoredLevel]tlog.Hash
	for k := range width {
		i := first - c.first + k
		if c.hashes[i] == nil {
			h := tlog.RecordHash(c.leaves[i])
			c.hashes[i] = &h
		}
		hs[k] = *c.hashes[i]
	}
	for ; width > 1; width /= 2 {
		for k := range width / 2 {
			hs[k] = tlog.NodeHash(hs[2*k], hs[2*k+1])
		}
	}
	return hs[0], nil
}

func (c *lowLeaves) read(r hashReader, first, n int64) error {
	from, err := locate(r.txn, uint64(first))
	if err != nil {
		return err
	}
	to, err := locate(r.txn, uint64(first+n-1))
	if err != nil {
		return err
	}
	leaves, err := r.segs.readRun(uint64(first), int(n), from, to)
	if err != nil {
		return err
	}
	c.first, c.leaves, c.hashes = first, leaves, make([]*tlog.Hash, n)
	return nil
}

// InclusionProof proves the entry at index is in the tree of the given size,
// as an RFC 6962 audit path.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][32]byte, error) {
	if size > l.Size() || index >= size {
		return nil, fmt.Errorf("inclusion of %d in tree of size %d (log size %d): %w", index, size, l.Size(), ErrNotFound)
	}
	var proof tlog.RecordProof
	err := l.read(func(txn *badger.Txn) error {
		var err error
		proof, err = tlog.ProveRecord(int64(size), int64(index), hashReader{txn, l.segs, l.upper})
		return err
	})
	return hashes(proof), err
}

// ConsistencyProof proves the tree of size to extends the tree of size from.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([][32]byte, error) {
	if to > l.Size() || from > to || from == 0 {
		return nil, fmt.Errorf("consistency of %d with %d (log size %d): %w", from, to, l.Size(), ErrNotFound)
	}
	var proof tlog.TreeProof
	err := l.read(func(txn *badger.Txn) error {
		var err error
		proof, err = tlog.ProveTree(int64(to), int64(from), hashReader{txn, l.segs, l.upper})
		return err
	})
	return hashes(proof), err
}

// RootHash is the Merkle tree hash of the first size entries.
func (l *Log) RootHash(ctx context.Context, size uint64) ([32]byte, error) {
	if size > l.Size() {
		return [32]byte{}, fmt.Errorf("tree of size %d (log size %d): %w", size, l.Size(), ErrNotFound)
	}
	var root tlog.Hash
	err := l.read(func(txn *badger.Txn) error {
		var err error
		root, err = tlog.TreeHash(int64(size), hashReader{txn, l.segs, l.upper})
		return err
	})
	return root, err
}

// ReadHashes implements tlog.HashReader over the durable log's stored tree
// hashes (RFC 6962 hashes in tlog's stored-hash layout), for writing hash
// tiles. A hash of a subtree not complete in the durable log is ErrNotFound.
func (l *Log) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	size := l.Size()
	for _, idx := range indexes {
		if idx < 0 {
			return nil, fmt.Errorf("tree hash %d: %w", idx, ErrNotFound)
		}
		level, n := tlog.SplitStoredHashIndex(idx)
		if uint64(n+1)<<level > size {
			return nil, fmt.Errorf("tree hash (level %d, node %d) beyond log size %d: %w", level, n, size, ErrNotFound)
		}
	}
	var out []tlog.Hash
	err := l.read(func(txn *badger.Txn) error {
		var err error
		out, err = hashReader{txn, l.segs, l.upper}.ReadHashes(indexes)
		return err
	})
	return out, err
}

func hashes(p []tlog.Hash) [][32]byte {
	out := make([][32]byte, len(p))
	for i, h := range p {
		out[i] = h
	}
	return out
}

// badgerLogger sends Badger's chatter to slog at debug level, warnings and
// errors at their own.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "badger")
}
