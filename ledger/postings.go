package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"evident.dev/evident/evidence"
)

// Untimed postings (every term but the time-ordered ones) are stored in
// chunks: one Badger value per term and run of chunkSize consecutive
// entries, listing which entries of the run have the term. One key per
// entry and term made some twenty keys an entry, and compacting them cost,
// at a million entries, more CPU than the rest of the write path. The
// chunk being filled lives in memory: the committer writes it to Badger
// with the batch that completes it, and at open it is rebuilt from the
// segments (at most chunkSize-1 entries).
//
// A stored chunk begins with a tag: the first 8 bytes of the hash of its
// last entry, which chains to every entry before it. A chunk written for a
// batch whose commit then failed, and whose entries were appended again
// differently, is left with a tag the log does not have, and is read as
// absent.
const (
	chunkBits   = 12
	chunkSize   = 1 << chunkBits
	prefixChunk = 'p' // p | term (as in termPrefix) | chunk start u64 -> tag u64 | offsets (appendOffsets)
	tagLen      = 8
	// prefixFirst keys say which terms have chunks: q | term -> the start
	// of its first chunk. A point read, which Badger's Bloom filters answer
	// without touching most tables, tells a walk that the term has no
	// chunk at all (a new change, a rare value) before it opens an
	// iterator, which costs tens of microseconds at a million entries.
	prefixFirst = 'q'
)

// chunkTag is the tag of a chunk whose last entry has this hash.
func chunkTag(lastEntryHash [32]byte) uint64 { return binary.BigEndian.Uint64(lastEntryHash[:]) }

func chunkOf(index uint64) uint64 { return index &^ (chunkSize - 1) }

// openChunk is the start of the chunk Badger does not hold yet in a log of
// size entries: the chunk of its last entry. A chunk is written when the
// entry after it is appended.
func openChunk(size uint64) uint64 {
	if size == 0 {
		return 0
	}
	return chunkOf(size - 1)
}

// timedTerm reports whether a term's postings are ordered by a time rather
// than by log order. Those keep one key per posting.
func timedTerm(name string) bool {
	switch name {
	case TermEnvironment, TermTime, TermExceptionExpiry:
		return true
	}
	return false
}

// chunkKey is p | the term's prefix without its x | start.
func chunkKey(tp []byte, start uint64) []byte {
	k := make([]byte, 0, len(tp)+8)
	k = append(k, prefixChunk)
	k = append(k, tp[1:]...)
	return binary.BigEndian.AppendUint64(k, start)
}

// untimedPrefixes returns the term prefixes of the untimed terms.
func untimedPrefixes(terms []Term) []string {
	out := make([]string, 0, len(terms))
	for _, t := range terms {
		if !timedTerm(t.Name) {
			out = append(out, string(termPrefix(t.Name, t.Value)))
		}
	}
	return out
}

// chunk holds the untimed postings of the entries [start, start+chunkSize)
// seen so far, as offsets from start in ascending order, by term prefix.
type chunk struct {
	start uint64
	tag   uint64 // set once complete
	terms map[string][]uint16
}

func newChunk(start uint64) *chunk { return &chunk{start: start, terms: map[string][]uint16{}} }

// add records that entry index has the terms with these prefixes; entries
// come in log order.
func (c *chunk) add(index uint64, prefixes []string) {
	off := uint16(index - c.start)
	for _, p := range prefixes {
		c.terms[p] = append(c.terms[p], off)
	}
}

func (c *chunk) clone() *chunk {
	out := &chunk{start: c.start, tag: c.tag, terms: make(map[string][]uint16, len(c.terms))}
	for k, v := range c.terms {
		out.terms[k] = slices.Clone(v)
	}
	return out
}

// write stores the chunk, which must be complete.
func (c *chunk) write(wb *badger.WriteBatch) error {
	for tp, offs := range c.terms {
		v := binary.BigEndian.AppendUint64(make([]byte, 0, tagLen+bitmapLen), c.tag)
		if err := wb.Set(chunkKey([]byte(tp), c.start), appendOffsets(v, offs)); err != nil {
			return fmt.Errorf("write the postings of entries %d-%d: %w", c.start, c.start+chunkSize-1, err)
		}
	}
	return nil
}

// filling is the chunk the sequencer fills, and the chunks it completed
// that are still to be written.
type filling struct {
	c      *chunk
	sealed []*chunk
}

// add adds entry index; prev is the hash of the entry before it, which
// completes the chunk when index starts the next.
func (f *filling) add(index uint64, prefixes []string, prev [32]byte) {
	if index >= f.c.start+chunkSize {
		f.c.tag = chunkTag(prev)
		f.sealed = append(f.sealed, f.c)
		f.c = newChunk(chunkOf(index))
	}
	f.c.add(index, prefixes)
}

func (f *filling) takeSealed() []*chunk {
	s := f.sealed
	f.sealed = nil
	return s
}

// firstKey is q | the term's prefix without its x.
func firstKey(tp []byte) []byte {
	return append([]byte{prefixFirst}, tp[1:]...)
}

// writeChunks stores completed chunks, and the first-chunk keys of terms
// that had none. They are written before the transaction that moves the
// head past them, so a head always has its chunks below it; the first-chunk
// keys before the chunks, so a chunk is never stored without one.
func writeChunks(db *badger.DB, chunks []*chunk) error {
	if len(chunks) == 0 {
		return nil
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	err := db.View(func(txn *badger.Txn) error {
		seen := map[string]bool{}
		for _, c := range chunks {
			for tp := range c.terms {
				if seen[tp] {
					continue
				}
				seen[tp] = true
				k := firstKey([]byte(tp))
				_, err := txn.Get(k)
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
					if err := wb.Set(k, binary.BigEndian.AppendUint64(nil, c.start)); err != nil {
						return err
					}
				case err != nil:
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write the first-chunk keys: %w", err)
	}
	for _, c := range chunks {
		if err := c.write(wb); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// A chunk's offsets are stored as a list of big-endian uint16 when that is
// shorter than a bitmap of the chunk, else as the bitmap: the two are told
// apart by length.
const bitmapLen = chunkSize / 8

func appendOffsets(dst []byte, offs []uint16) []byte {
	if 2*len(offs) < bitmapLen {
		for _, o := range offs {
			dst = binary.BigEndian.AppendUint16(dst, o)
		}
		return dst
	}
	n := len(dst)
	dst = append(dst, make([]byte, bitmapLen)...)
	for _, o := range offs {
		dst[n+int(o/8)] |= 1 << (o % 8)
	}
	return dst
}

// chunkValue splits a stored chunk into its tag and offsets.
func chunkValue(v []byte) (uint64, []byte, error) {
	if len(v) < tagLen {
		return 0, nil, fmt.Errorf("postings chunk of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), v[tagLen:], nil
}

// decodeOffsets appends the offsets of an encoded chunk to dst, ascending.
func decodeOffsets(dst []uint16, v []byte) ([]uint16, error) {
	switch {
	case len(v) == bitmapLen:
		for i, b := range v {
			for b != 0 {
				dst = append(dst, uint16(i)*8+uint16(bits.TrailingZeros8(b)))
				b &= b - 1
			}
		}
	case len(v)%2 == 0 && len(v) < bitmapLen:
		for i := 0; i < len(v); i += 2 {
			dst = append(dst, binary.BigEndian.Uint16(v[i:]))
		}
	default:
		return dst, fmt.Errorf("postings chunk of %d bytes", len(v))
	}
	return dst, nil
}

// hasOffset reports whether an encoded chunk lists off.
func hasOffset(v []byte, off uint16) (bool, error) {
	switch {
	case len(v) == bitmapLen:
		return v[off/8]&(1<<(off%8)) != 0, nil
	case len(v)%2 == 0 && len(v) < bitmapLen:
		lo, hi := 0, len(v)/2
		for lo < hi {
			m := (lo + hi) / 2
			switch x := binary.BigEndian.Uint16(v[2*m:]); {
			case x == off:
				return true, nil
			case x < off:
				lo = m + 1
			default:
				hi = m
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("postings chunk of %d bytes", len(v))
}

// view is a consistent read of the indexes: a Badger transaction, the log
// size it covers, and the postings of the chunk not yet in Badger.
type view struct {
	l    *Log
	txn  *badger.Txn
	size uint64
	open *chunk   // only Badger chunks before open.start are read
	tags []uint64 // of the chunks before open.start
	// cached is the last chunk a point check read, by term prefix.
	cached map[string]cachedChunk
}

type cachedChunk struct {
	start uint64
	value []byte // nil: no entry of the chunk has the term
}

// view opens a view, unless the log is closed; discard it when done.
func (l *Log) view() (*view, error) {
	if err := l.reads.enter(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return &view{l: l, txn: l.db.NewTransaction(false), size: l.published.size, open: l.open, tags: l.tags}, nil
}

func (v *view) discard() {
	v.txn.Discard()
	v.l.reads.leave()
}

// openPostings returns the open chunk's offsets of a term. The committer
// only appends to them, beyond what a view's size lets it read.
func (v *view) openPostings(tp []byte) []uint16 {
	v.l.mu.RLock()
	defer v.l.mu.RUnlock()
	return v.open.terms[string(tp)]
}

// has reports whether entry index has the term with prefix tp (an untimed
// term: its postings carry no time).
func (v *view) has(tp []byte, name string, index uint64) (bool, error) {
	if timedTerm(name) {
		key := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(append([]byte(nil), tp...), 0), index)
		_, err := v.txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	if index >= v.open.start {
		_, found := slices.BinarySearch(v.openPostings(tp), uint16(index-v.open.start))
		return found, nil
	}
	start := chunkOf(index)
	c, ok := v.cached[string(tp)]
	if !ok || c.start != start {
		c = cachedChunk{start: start}
		item, err := v.txn.Get(chunkKey(tp, start))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return false, err
		default:
			if c.value, err = item.ValueCopy(nil); err != nil {
				return false, err
			}
			tag, offs, err := chunkValue(c.value)
			if err != nil {
				return false, fmt.Errorf("postings of entries %d-%d: %w", start, start+chunkSize-1, err)
			}
			c.value = offs
			if tag != v.tags[start/chunkSize] {
				c.value = nil // written for a batch that failed
			}
		}
		if v.cached == nil {
			v.cached = map[string]cachedChunk{}
		}
		v.cached[string(tp)] = c
	}
	if c.value == nil {
		return false, nil
	}
	return hasOffset(c.value, uint16(index-start))
}

// walk calls fn with the position (time, index) of each posting of the
// term with prefix tp, in the term's order (backwards if reverse), starting
// at seek, until fn returns false. Untimed postings have time 0.
func (v *view) walk(ctx context.Context, tp []byte, name string, seek [posLen]byte, reverse bool, fn func(pos []byte) (bool, error)) error {
	if timedTerm(name) {
		return v.walkKeys(ctx, tp, seek, reverse, fn)
	}
	at, from := binary.BigEndian.Uint64(seek[:]), binary.BigEndian.Uint64(seek[8:])
	switch {
	case at > 0 && !reverse:
		return nil // every untimed posting is before seek
	case at > 0:
		from = math.MaxUint64
	}
	var pos [posLen]byte
	emit := func(index uint64) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		binary.BigEndian.PutUint64(pos[8:], index)
		return fn(pos[:])
	}
	open := func() (bool, error) {
		offs := v.openPostings(tp)
		for i := range offs {
			if reverse {
				i = len(offs) - 1 - i
			}
			index := v.open.start + uint64(offs[i])
			if index >= v.size || (!reverse && index < from) || (reverse && index > from) {
				continue
			}
			if more, err := emit(index); !more || err != nil {
				return false, err
			}
		}
		return true, nil
	}
	if reverse {
		if more, err := open(); !more || err != nil {
			return err
		}
	}
	if more, err := v.walkChunks(tp, from, reverse, emit); !more || err != nil {
		return err
	}
	if !reverse {
		_, err := open()
		return err
	}
	return nil
}

// walkChunks emits the postings Badger holds, from index from on (or
// back). It reports false when emit stopped it.
func (v *view) walkChunks(tp []byte, from uint64, reverse bool, emit func(uint64) (bool, error)) (bool, error) {
	if v.open.start == 0 || (!reverse && from >= v.open.start) {
		return true, nil
	}
	item, err := v.txn.Get(firstKey(tp))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return true, nil // no chunk has the term
	case err != nil:
		return false, fmt.Errorf("postings of %q: %w", tp, err)
	}
	var firstChunk uint64
	if err := item.Value(func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("first-chunk key of %d bytes", len(val))
		}
		firstChunk = binary.BigEndian.Uint64(val)
		return nil
	}); err != nil {
		return false, fmt.Errorf("postings of %q: %w", tp, err)
	}
	if reverse && from < firstChunk {
		return true, nil
	}
	if !reverse {
		from = max(from, firstChunk)
	}
	cp := chunkKey(tp, 0)
	cp = cp[:len(cp)-8]
	opts := badger.DefaultIteratorOptions
	opts.Prefix = cp
	opts.Reverse = reverse
	opts.PrefetchValues = false
	it := v.txn.NewIterator(opts)
	defer it.Close()
	first := chunkOf(min(from, v.open.start-1))
	var offs []uint16
	for it.Seek(binary.BigEndian.AppendUint64(slices.Clip(cp), first)); it.ValidForPrefix(cp); it.Next() {
		item := it.Item()
		k := item.Key()
		if len(k) != len(cp)+8 {
			return false, fmt.Errorf("postings key of %q has unexpected length %d", tp, len(k))
		}
		start := binary.BigEndian.Uint64(k[len(cp):])
		if start >= v.open.start {
			if reverse {
				continue
			}
			return true, nil
		}
		offs = offs[:0]
		if err := item.Value(func(val []byte) error {
			tag, val, err := chunkValue(val)
			if err != nil || tag != v.tags[start/chunkSize] {
				return err // a tag the log does not have: written for a batch that failed
			}
			offs, err = decodeOffsets(offs, val)
			return err
		}); err != nil {
			return false, fmt.Errorf("postings of entries %d-%d: %w", start, start+chunkSize-1, err)
		}
		for i := range offs {
			if reverse {
				i = len(offs) - 1 - i
			}
			index := start + uint64(offs[i])
			if (!reverse && index < from) || (reverse && index > from) {
				continue
			}
			if more, err := emit(index); !more || err != nil {
				return more, err
			}
		}
	}
	return true, nil
}

// walkKeys walks a timed term's keys, one per posting.
func (v *view) walkKeys(ctx context.Context, tp []byte, seek [posLen]byte, reverse bool, fn func(pos []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = tp
	opts.Reverse = reverse
	it := v.txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(append(slices.Clip(tp), seek[:]...)); it.ValidForPrefix(tp); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := it.Item().Key()
		if len(k) != len(tp)+posLen {
			return fmt.Errorf("index key of %q has unexpected length %d", tp, len(k))
		}
		pos := k[len(tp):]
		if binary.BigEndian.Uint64(pos[8:]) >= v.size {
			continue // appended after the view opened
		}
		if more, err := fn(pos); !more || err != nil {
			return err
		}
	}
	return nil
}

// Damaged lists the entries found unreadable in the segments when the log
// was opened: answers drawn from the index leave them out, and say so.
func (l *Log) Damaged() []uint64 { return slices.Clone(l.damaged) }

// namedHash is the hash of entry i as the log names it elsewhere: the
// next entry's previous-entry hash, or the head's for the last entry.
func (l *Log) namedHash(txn *badger.Txn, i uint64) ([32]byte, bool) {
	if i+1 == l.published.size {
		return l.published.lastHash, true
	}
	leaf, err := readLeaf(txn, l.segs, i+1)
	if err != nil {
		return [32]byte{}, false
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return [32]byte{}, false
	}
	return e.PrevHash, true
}

// loadPostings rebuilds what of the postings is kept in memory, for the
// published head: the tag of every chunk Badger holds, and the chunk being
// filled, from the segments. An entry that cannot be read is left out, with
// a warning: opening the log does not depend on it, and reading it or
// `evident verify` names the damage.
func (l *Log) loadPostings() error {
	size := l.published.size
	open := openChunk(size)
	txn := l.db.NewTransaction(false)
	defer txn.Discard()
	unreadable := 0
	l.tags = make([]uint64, 0, open/chunkSize)
	for end := uint64(chunkSize); end <= open; end += chunkSize {
		var tag uint64 // matches no chunk: its postings read as absent
		if leaf, err := readLeaf(txn, l.segs, end-1); err == nil {
			tag = chunkTag(evidence.EntryHash(leaf))
		} else if h, ok := l.namedHash(txn, end-1); ok {
			// The chunk's last entry is damaged, but the log still says
			// what its hash was: only that entry is lost to the index.
			tag = chunkTag(h)
			unreadable++
			l.damaged = append(l.damaged, end-1)
		} else {
			unreadable++
			l.damaged = append(l.damaged, end-1)
		}
		l.tags = append(l.tags, tag)
	}
	if size > 0 {
		// What the head says was acknowledged must be in the segments: a
		// log whose last acknowledged entry is gone or altered would sign
		// checkpoints over a leaf nobody can read.
		leaf, err := readLeaf(txn, l.segs, size-1)
		if err == nil && evidence.EntryHash(leaf) != l.published.lastHash {
			err = errors.New("its hash is not the one acknowledged")
		}
		if err != nil {
			return fmt.Errorf("%w: the last acknowledged entry, %d, cannot be read intact from %s: %v; the segments are shorter than, "+
				"or disagree with, the %d entries this log acknowledged. Nothing was changed. Recover the data directory from a backup "+
				"or from object storage (evident restore); evident verify --data names every damaged entry",
				ErrDamaged, size-1, l.segs.path(segmentOf(size-1)), err, size)
		}
	}
	l.filling = &filling{c: newChunk(open)}
	// A damaged frame in the open chunk hides only its own entry: the scan
	// resumes at the next entry's stored location.
	for next := open; next < size; {
		loc, err := locate(txn, next)
		if err != nil {
			return fmt.Errorf("load index postings: %w", err)
		}
		stopped, _, err := l.segs.scan(next, loc.offset, size-next, func(index, _ uint64, leaf []byte) error {
			e, err := evidence.ParseLeaf(leaf)
			var st *evidence.Statement
			if err == nil {
				st, err = e.Statement()
			}
			if err != nil {
				unreadable++
				l.damaged = append(l.damaged, index)
				return nil
			}
			l.filling.add(index, untimedPrefixes(TermsFor(st, e.Meta)), [32]byte{})
			return nil
		})
		if err != nil {
			return fmt.Errorf("load index postings: %w", err)
		}
		if stopped < size {
			unreadable++
			l.damaged = append(l.damaged, stopped)
			l.cfg.Logger.Warn("entry cannot be read from its segment: its index postings are missing (run evident verify)",
				"entry", stopped, "segment", l.segs.path(segmentOf(stopped)))
		}
		next = stopped + 1
	}
	if unreadable > 0 {
		l.cfg.Logger.Warn("entries cannot be read from the segments: their index postings are missing (run evident verify)", "entries", unreadable)
	}
	return nil
}
