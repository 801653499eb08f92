package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/evidence"
)

// Record is a verified record ready to append.
type Record struct {
	Envelope []byte            // the DSSE envelope, compact JSON
	Digest   [sha256.Size]byte // the record's identity (verifier.Verified.Digest)
	Signer   evidence.Signer
	Findings []evidence.Finding
	Terms    []Term // secondary-index postings (TermsFor)
}

// Receipt acknowledges a durable entry.
type Receipt struct {
	Index      uint64
	EntryHash  [sha256.Size]byte
	LeafHash   [sha256.Size]byte // RFC 6962 leaf hash: SHA-256(0x00 || leaf)
	ReceivedAt time.Time
	// Duplicate is true when the record was already in the log; the receipt
	// is then the original entry's.
	Duplicate bool
}

type pending struct {
	rec  Record
	done chan result // buffered: the sequencer never blocks on a caller
}

type result struct {
	receipt Receipt
	err     error
}

// Append adds a record and returns once it is durable. A record whose Digest
// is already in the log is not added again: the original entry's receipt is
// returned with Duplicate set. If ctx ends first the record may still be
// appended; appending it again returns that entry.
func (l *Log) Append(ctx context.Context, rec Record) (Receipt, error) {
	for _, t := range rec.Terms {
		if !validTerm(t) {
			return Receipt{}, fmt.Errorf("index term %q: name or value too long", t.Name)
		}
	}
	p := &pending{rec: rec, done: make(chan result, 1)}
	select {
	case <-l.stop:
		return Receipt{}, ErrClosed
	default:
	}
	select {
	case l.queue <- p:
	default:
		return Receipt{}, ErrOverloaded
	}
	select {
	case r := <-p.done:
		return r.receipt, r.err
	case <-ctx.Done():
		return Receipt{}, ctx.Err()
	case <-l.stopped:
		// The sequencer may have answered just before it stopped.
		select {
		case r := <-p.done:
			return r.receipt, r.err
		default:
			return Receipt{}, fmt.Errorf("%w: %v", ErrClosed, l.fatal)
		}
	}
}

// sequence is the only writer. It takes what is queued (up to MaxBatch),
// commits it as one transaction with one fsync, and answers the batch.
func (l *Log) sequence() {
	defer close(l.stopped)
	state := l.published
	lastCP := time.Time{}
	var cpTimer <-chan time.Time
	batch := make([]*pending, 0, l.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case p := <-l.queue:
			batch = append(batch, p)
		case <-cpTimer:
			cpTimer = nil
			next, err := l.commit(state, nil, true)
			if err != nil {
				l.cfg.Logger.Error("checkpoint failed", "err", err)
				cpTimer = time.After(l.cfg.CheckpointInterval)
				continue
			}
			state, lastCP = next, l.cfg.Clock()
			continue
		case <-l.stop:
			l.drainOnStop(state)
			return
		}
	fill:
		for len(batch) < l.cfg.MaxBatch {
			select {
			case p := <-l.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		due := l.cfg.Clock().Sub(lastCP) >= l.cfg.CheckpointInterval
		next, err := l.commit(state, batch, due)
		if err != nil {
			l.cfg.Logger.Error("batch commit failed", "records", len(batch), "err", err)
			continue // the batch's callers got the error; the durable state is unchanged
		}
		state = next
		switch {
		case due:
			lastCP = l.cfg.Clock()
		case state.checkpointSize < state.size && cpTimer == nil:
			cpTimer = time.After(l.cfg.CheckpointInterval - l.cfg.Clock().Sub(lastCP))
		}
	}
}

// drainOnStop commits what is already queued, signs a final checkpoint, and
// refuses nothing silently: anything left gets ErrClosed.
func (l *Log) drainOnStop(state head) {
	var batch []*pending
	for {
		select {
		case p := <-l.queue:
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	for len(batch) > 0 {
		n := min(len(batch), l.cfg.MaxBatch)
		next, err := l.commit(state, batch[:n], true)
		if err == nil {
			state = next
		}
		batch = batch[n:]
	}
	if state.checkpointSize < state.size {
		if _, err := l.commit(state, nil, true); err != nil {
			l.cfg.Logger.Error("final checkpoint failed", "err", err)
		}
	}
}

// batchHashes overlays the tree hashes written by the current batch on the
// stored ones, for tlog.StoredHashes.
type batchHashes struct {
	fresh map[int64]tlog.Hash
	txn   *badger.Txn
}

func (b batchHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int
	for i, idx := range indexes {
		if h, ok := b.fresh[idx]; ok {
			out[i] = h
		} else {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	idxs := make([]int64, len(missing))
	for j, i := range missing {
		idxs[j] = indexes[i]
	}
	stored, err := hashReader{b.txn}.ReadHashes(idxs)
	if err != nil {
		return nil, err
	}
	for j, i := range missing {
		out[i] = stored[j]
	}
	return out, nil
}

// commit writes a batch (possibly empty) and, if checkpoint is set, a new
// signed checkpoint, in one transaction. It answers every waiter in the batch
// and, on success, publishes the new head.
func (l *Log) commit(state head, batch []*pending, checkpoint bool) (head, error) {
	receipts, next, cp, err := l.write(state, batch, checkpoint)
	if err != nil {
		for _, p := range batch {
			p.done <- result{err: err}
		}
		return state, err
	}
	l.mu.Lock()
	l.published = next
	if cp != nil {
		l.latestCP = cp
	}
	l.mu.Unlock()
	for i, p := range batch {
		p.done <- result{receipt: receipts[i]}
	}
	return next, nil
}

func (l *Log) write(state head, batch []*pending, checkpoint bool) ([]Receipt, head, []byte, error) {
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	receipts := make([]Receipt, len(batch))
	inBatch := make(map[[sha256.Size]byte]int, len(batch))
	overlay := batchHashes{fresh: map[int64]tlog.Hash{}, txn: txn}
	now := l.cfg.Clock().UTC()
	for i, p := range batch {
		if j, ok := inBatch[p.rec.Digest]; ok {
			receipts[i] = receipts[j]
			receipts[i].Duplicate = true
			continue
		}
		dup, err := l.existing(txn, p.rec.Digest)
		if err != nil {
			return nil, state, nil, err
		}
		if dup != nil {
			receipts[i] = *dup
			inBatch[p.rec.Digest] = i
			continue
		}
		e := evidence.Entry{
			Origin:     l.cfg.Origin,
			Index:      state.size,
			PrevHash:   state.lastHash,
			ReceivedAt: now,
			Meta: evidence.EntryMeta{
				Signer:       p.rec.Signer,
				RecordDigest: fmt.Sprintf("%x", p.rec.Digest),
				Findings:     p.rec.Findings,
			},
			Envelope: p.rec.Envelope,
		}
		leaf, err := e.Leaf()
		if err != nil {
			return nil, state, nil, fmt.Errorf("encode entry %d: %w", state.size, err)
		}
		leafHash := tlog.RecordHash(leaf)
		stored, err := tlog.StoredHashesForRecordHash(int64(state.size), leafHash, overlay)
		if err != nil {
			return nil, state, nil, fmt.Errorf("tree hashes for entry %d: %w", state.size, err)
		}
		base := tlog.StoredHashIndex(0, int64(state.size))
		for k, h := range stored {
			overlay.fresh[base+int64(k)] = h
			if err := txn.Set(u64Key(prefixHash, uint64(base+int64(k))), h[:]); err != nil {
				return nil, state, nil, err
			}
		}
		if err := txn.Set(u64Key(prefixEntry, state.size), leaf); err != nil {
			return nil, state, nil, err
		}
		if err := txn.Set(append([]byte{prefixDigest}, p.rec.Digest[:]...), binary.BigEndian.AppendUint64(nil, state.size)); err != nil {
			return nil, state, nil, err
		}
		for _, t := range p.rec.Terms {
			if err := txn.Set(termKey(t, state.size), nil); err != nil {
				return nil, state, nil, err
			}
		}
		entryHash := evidence.EntryHash(leaf)
		receipts[i] = Receipt{Index: state.size, EntryHash: entryHash, LeafHash: leafHash, ReceivedAt: now}
		inBatch[p.rec.Digest] = i
		state.size++
		state.lastHash = entryHash
	}
	var cp []byte
	if checkpoint && state.size > state.checkpointSize {
		root, err := tlog.TreeHash(int64(state.size), overlay)
		if err != nil {
			return nil, state, nil, fmt.Errorf("tree hash at %d: %w", state.size, err)
		}
		if cp, err = signCheckpoint(l.cfg.Signer, l.cfg.Origin, state.size, root); err != nil {
			return nil, state, nil, err
		}
		if err := txn.Set(u64Key(prefixCheckpoint, state.size), cp); err != nil {
			return nil, state, nil, err
		}
		state.checkpointSize = state.size
	}
	if err := txn.Set([]byte(keyHead), state.encode()); err != nil {
		return nil, state, nil, err
	}
	if err := txn.Commit(); err != nil {
		return nil, state, nil, fmt.Errorf("commit batch: %w", err)
	}
	return receipts, state, cp, nil
}

// existing returns the receipt of an entry already holding digest, or nil.
func (l *Log) existing(txn *badger.Txn, digest [sha256.Size]byte) (*Receipt, error) {
	item, err := txn.Get(append([]byte{prefixDigest}, digest[:]...))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency lookup: %w", err)
	}
	var index uint64
	if err := item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("idempotency record has %d bytes", len(v))
		}
		index = binary.BigEndian.Uint64(v)
		return nil
	}); err != nil {
		return nil, err
	}
	item, err = txn.Get(u64Key(prefixEntry, index))
	if err != nil {
		return nil, fmt.Errorf("read entry %d: %w", index, err)
	}
	leaf, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("read entry %d: %w", index, err)
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	return &Receipt{
		Index:      index,
		EntryHash:  evidence.EntryHash(leaf),
		LeafHash:   tlog.RecordHash(leaf),
		ReceivedAt: e.ReceivedAt,
		Duplicate:  true,
	}, nil
}
