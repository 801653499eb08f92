package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/evidence"
)

// Snapshot is a consistent read-only view of the log: its entries,
// checkpoints and indexes as of one moment. Close it when done.
type Snapshot struct {
	txn     *badger.Txn
	segs    *segments
	size    uint64
	release func() // after Close; nil for a Store's
}

// Snapshot opens a consistent view of the durable log, unless the log is
// closed. The log's Close waits for it to be closed.
func (l *Log) Snapshot() (*Snapshot, error) {
	if err := l.reads.enter(); err != nil {
		return nil, err
	}
	s, err := newSnapshot(l.db, l.segs)
	if err != nil {
		l.reads.leave()
		return nil, err
	}
	s.release = l.reads.leave
	return s, nil
}

// Store is a log's storage opened without a sequencer, for the offline tools
// (verify, export) on a stopped server's data directory. Opening replays
// Badger's write-ahead log, as after a crash.
type Store struct {
	db   *badger.DB
	segs *segments
}

// OpenStore opens a data directory for reading. It fails if a server has it
// open.
func OpenStore(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(filepath.Join(dir, "entries")); err != nil {
		return nil, fmt.Errorf("%s is not an Evident ledger directory: %w", dir, err)
	}
	// Every table's checksum is verified as it opens: the offline tools
	// and a server's start (checkIdentity) find a damaged index before
	// anything reads it.
	db, err := openIndex(badgerOptions(Config{Dir: dir, Logger: logger, CacheMB: 256}), dir)
	if err != nil {
		return nil, err
	}
	segs, err := openSegments(filepath.Join(dir, "entries"))
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return &Store{db: db, segs: segs}, nil
}

// Snapshot opens a consistent view of the stored log.
func (s *Store) Snapshot() (*Snapshot, error) { return newSnapshot(s.db, s.segs) }

// Close closes the storage.
func (s *Store) Close() error { return errors.Join(s.segs.close(), s.db.Close()) }

func newSnapshot(db *badger.DB, segs *segments) (*Snapshot, error) {
	txn := db.NewTransaction(false)
	s := &Snapshot{txn: txn, segs: segs}
	item, err := txn.Get([]byte(keyHead))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return s, nil
	case err != nil:
		txn.Discard()
		return nil, fmt.Errorf("read log head: %w", err)
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		txn.Discard()
		return nil, fmt.Errorf("read log head: %w", err)
	}
	h, err := decodeHead(b)
	if err != nil {
		txn.Discard()
		return nil, fmt.Errorf("corrupt log head: %w", err)
	}
	s.size = h.size
	return s, nil
}

// Close releases the snapshot.
func (s *Snapshot) Close() {
	s.txn.Discard()
	if s.release != nil {
		s.release()
		s.release = nil
	}
}

// Size is the number of entries in the snapshot.
func (s *Snapshot) Size() uint64 { return s.size }

// Checkpoints returns every stored signed checkpoint, by increasing size.
func (s *Snapshot) Checkpoints(ctx context.Context) ([][]byte, error) {
	var out [][]byte
	err := s.scan(ctx, prefixCheckpoint, true, func(k, v []byte) error {
		out = append(out, append([]byte(nil), v...))
		return nil
	})
	return out, err
}

// Leaves calls fn with every leaf in index order, read sequentially from the
// segment files. The leaf is only valid during the call. It fails naming the
// first entry that is missing or damaged, or whose stored location is wrong.
func (s *Snapshot) Leaves(ctx context.Context, fn func(index uint64, leaf []byte) error) error {
	if s.size == 0 {
		return nil // and scan's limit 0 would mean no limit
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte{prefixEntry}
	opts.PrefetchSize = 1024
	locs := s.txn.NewIterator(opts)
	defer locs.Close()
	locs.Rewind()
	next, _, err := s.segs.scan(0, 0, s.size, func(index, offset uint64, leaf []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !locs.Valid() || binary.BigEndian.Uint64(locs.Item().Key()[1:]) != index {
			return fmt.Errorf("entry %d: its location is missing from the index", index)
		}
		var loc location
		err := locs.Item().Value(func(v []byte) (err error) {
			loc, err = decodeLocation(v)
			return err
		})
		if err != nil || loc.offset != offset || loc.length != uint32(len(leaf)) {
			return fmt.Errorf("entry %d: its stored location is wrong", index)
		}
		locs.Next()
		return fn(index, leaf)
	})
	if err != nil {
		return err
	}
	if next != s.size {
		return fmt.Errorf("entry %d: missing or damaged in the segment files (the log holds %d entries)", next, s.size)
	}
	return nil
}

func (s *Snapshot) scan(ctx context.Context, prefix byte, values bool, fn func(k, v []byte) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte{prefix}
	opts.PrefetchValues = values
	opts.PrefetchSize = 256
	it := s.txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		var err error
		if values {
			err = item.Value(func(v []byte) error { return fn(item.Key(), v) })
		} else {
			err = fn(item.Key(), nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckTree compares the stored tree hashes with those recomputed from the
// leaf hashes (RFC 6962 leaf hashes, in index order), so a served proof can
// never come from a damaged tree.
func (s *Snapshot) CheckTree(ctx context.Context, leafHashes [][32]byte) error {
	if uint64(len(leafHashes)) != s.size {
		return fmt.Errorf("tree: %d leaf hashes for a log of %d entries", len(leafHashes), s.size)
	}
	want := make([]tlog.Hash, 0, 2*len(leafHashes))
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = want[x]
		}
		return out, nil
	})
	for n, lh := range leafHashes {
		hs, err := tlog.StoredHashesForRecordHash(int64(n), lh, reader)
		if err != nil {
			return fmt.Errorf("tree: %w", err)
		}
		want = append(want, hs...)
	}
	// Hashes below minStoredLevel are not stored (a log written before may
	// still hold them: then they must be right); every other one must be.
	next := 0
	skipOptional := func(upTo int) error {
		for ; next < upTo; next++ {
			if level, _ := tlog.SplitStoredHashIndex(int64(next)); level >= minStoredLevel {
				return fmt.Errorf("tree: stored hash %d missing", next)
			}
		}
		return nil
	}
	err := s.scan(ctx, prefixHash, true, func(k, v []byte) error {
		idx := binary.BigEndian.Uint64(k[1:])
		if idx >= uint64(len(want)) {
			return fmt.Errorf("tree: stored hash %d is beyond the tree of %d entries", idx, s.size)
		}
		if idx < uint64(next) {
			return fmt.Errorf("tree: stored hash %d out of order", idx)
		}
		if err := skipOptional(int(idx)); err != nil {
			return err
		}
		if len(v) != tlog.HashSize || tlog.Hash(v) != want[next] {
			level, n := tlog.SplitStoredHashIndex(int64(next))
			return fmt.Errorf("tree: stored hash %d (level %d, node %d, covering entries from %d) is damaged", next, level, n, n<<level)
		}
		next++
		return nil
	})
	if err != nil {
		return err
	}
	return skipOptional(len(want))
}

// IndexDigest is an order-independent digest of a set of index keys: their
// count and the sum of their SHA-256 hashes modulo 2^256. Two sets of unique
// keys with equal digests are, for any accidental damage, the same set.
type IndexDigest struct {
	Count uint64
	sum   [4]uint64
}

// AddTerms adds the keys of one entry's terms.
func (d *IndexDigest) AddTerms(index uint64, terms []Term) {
	for _, t := range terms {
		d.add(termKey(t, index))
	}
}

func (d *IndexDigest) add(key []byte) {
	h := sha256.Sum256(key)
	var carry uint64
	for i := range 4 {
		d.sum[i], carry = bits.Add64(d.sum[i], binary.BigEndian.Uint64(h[8*i:]), carry)
	}
	d.Count++
}

// Merge adds another digest's keys.
func (d *IndexDigest) Merge(o IndexDigest) {
	var carry uint64
	for i := range 4 {
		d.sum[i], carry = bits.Add64(d.sum[i], o.sum[i], carry)
	}
	d.Count += o.Count
}

// Indexes digests the index postings actually stored, each as the key
// AddTerms digests for it: the keys of time-ordered postings, and the
// postings of every chunk of the log (a chunk whose tag is not the log's
// was written for a batch that failed and is not read).
func (s *Snapshot) Indexes(ctx context.Context) (IndexDigest, error) {
	var d IndexDigest
	err := s.scan(ctx, prefixTerm, false, func(k, _ []byte) error {
		d.add(k)
		return nil
	})
	if err != nil {
		return d, err
	}
	open := openChunk(s.size)
	tags := map[uint64]uint64{}
	first := map[string]uint64{} // term (as in its keys) → its first chunk
	var offs []uint16
	var key []byte
	err = s.scan(ctx, prefixChunk, true, func(k, v []byte) error {
		if len(k) < 1+8 {
			return fmt.Errorf("postings key of %d bytes", len(k))
		}
		start := binary.BigEndian.Uint64(k[len(k)-8:])
		if start >= open || start%chunkSize != 0 {
			return nil // not a chunk this log has written yet
		}
		want, ok := tags[start]
		if !ok {
			leaf, err := s.Leaf(start + chunkSize - 1)
			if err != nil {
				return err
			}
			want = chunkTag(evidence.EntryHash(leaf))
			tags[start] = want
		}
		tag, val, err := chunkValue(v)
		if err != nil {
			return fmt.Errorf("postings of entries %d-%d: %w", start, start+chunkSize-1, err)
		}
		if tag != want {
			return nil
		}
		if _, ok := first[string(k[1:len(k)-8])]; !ok {
			first[string(k[1:len(k)-8])] = start
		}
		if offs, err = decodeOffsets(offs[:0], val); err != nil {
			return fmt.Errorf("postings of entries %d-%d: %w", start, start+chunkSize-1, err)
		}
		key = append(append(key[:0], prefixTerm), k[1:len(k)-8]...)
		key = binary.BigEndian.AppendUint64(key, 0)
		for _, o := range offs {
			d.add(binary.BigEndian.AppendUint64(key, start+uint64(o)))
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	// A walk reads a term's chunks only if its first-chunk key says it has
	// some: one missing or too late would hide postings from every query.
	err = s.scan(ctx, prefixFirst, true, func(k, v []byte) error {
		at, ok := first[string(k[1:])]
		if !ok {
			return nil // chunks of a batch that failed, or none yet
		}
		delete(first, string(k[1:]))
		if len(v) != 8 || binary.BigEndian.Uint64(v) > at {
			return fmt.Errorf("indexes: the first-chunk key of %q does not reach its chunk of entries %d-%d", k[1:], at, at+chunkSize-1)
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	for term, at := range first {
		return d, fmt.Errorf("indexes: %q has postings from entry %d but no first-chunk key", term, at)
	}
	return d, nil
}

// Indexed returns those of an entry's terms whose postings the snapshot's
// storage holds: all of them, but for the entries of the last chunk, whose
// untimed postings a server keeps in memory until the chunk is complete.
func (s *Snapshot) Indexed(index uint64, terms []Term) []Term {
	if index < openChunk(s.size) {
		return terms
	}
	out := make([]Term, 0, len(terms))
	for _, t := range terms {
		if timedTerm(t.Name) {
			out = append(out, t)
		}
	}
	return out
}

// Leaf returns one leaf of the snapshot.
func (s *Snapshot) Leaf(index uint64) ([]byte, error) {
	if index >= s.size {
		return nil, fmt.Errorf("entry %d: %w", index, ErrNotFound)
	}
	return readLeaf(s.txn, s.segs, index)
}
