package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"evident.dev/evident/evidence"
)

// Query selects entries of one index term.
type Query struct {
	Name, Value string
	// From and To bound the term's time (inclusive, exclusive); zero means
	// unbounded. Only time-ordered terms (TermEnvironment) carry times.
	From, To time.Time
	// Limit caps the result; 0 means 100.
	Limit int
}

// Lookup returns the indexes of entries matching q, ordered by the term's time
// and then by index.
func (l *Log) Lookup(ctx context.Context, q Query) ([]uint64, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if !validTerm(Term{Name: q.Name, Value: q.Value}) {
		return nil, fmt.Errorf("lookup %q: name or value too long", q.Name)
	}
	var seek [posLen]byte
	if !q.From.IsZero() {
		binary.BigEndian.PutUint64(seek[:], uint64(q.From.UnixNano()))
	}
	// Only acknowledged entries: a batch's index terms are committed to
	// Badger just before the batch is published, and an index beyond the
	// published size would not be readable yet (Leaf: not found).
	v, err := l.view()
	if err != nil {
		return nil, err
	}
	defer v.discard()
	var out []uint64
	err = v.walk(ctx, termPrefix(q.Name, q.Value), q.Name, seek, false, func(pos []byte) (bool, error) {
		if !q.To.IsZero() && binary.BigEndian.Uint64(pos) >= uint64(q.To.UnixNano()) {
			return false, nil
		}
		out = append(out, binary.BigEndian.Uint64(pos[8:]))
		return len(out) < q.Limit, nil
	})
	return out, err
}

// Entries returns the entries matching q, parsed, in Lookup's order.
func (l *Log) Entries(ctx context.Context, q Query) ([]*evidence.Entry, error) {
	idx, err := l.Lookup(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]*evidence.Entry, 0, len(idx))
	for _, i := range idx {
		e, err := l.Entry(ctx, i)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Entry returns entry i, parsed; a recent entry comes from memory, with its
// statement decoded. It may be shared with other readers: read-only.
func (l *Log) Entry(ctx context.Context, i uint64) (*evidence.Entry, error) {
	if e, ok := l.recent.get(i); ok && i < l.Size() {
		return e, nil
	}
	leaf, err := l.Leaf(ctx, i)
	if err != nil {
		return nil, err
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	return e, nil
}
