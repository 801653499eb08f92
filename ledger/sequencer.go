package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
)

// Record is a verified record ready to append.
type Record struct {
	Envelope []byte            // the DSSE envelope, compact JSON
	Digest   [sha256.Size]byte // the record's identity (verifier.Verified.Digest)
	Signer   evidence.Signer
	Findings []evidence.Finding
	Decision *evidence.Policy // the policy decision, when policies judged the record
	Terms    []Term           // secondary-index postings (TermsFor)
	// Statement, if set, is the statement the envelope carries: the entry
	// keeps it for readers of recent entries (Entry). Read-only from Append on.
	Statement *evidence.Statement
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
	rec Record
	// mirror, set instead of rec, is a follower's AppendLeaves call.
	mirror *mirror
	done   chan result // buffered: the sequencer never blocks on a caller
}

// mirror is a run of another log's leaves, and optionally that log's signed
// checkpoint for the tree they end.
type mirror struct {
	leaves     [][]byte
	checkpoint []byte
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
	if l.cfg.Signer == nil {
		return Receipt{}, ErrFollower
	}
	for _, t := range rec.Terms {
		if !validTerm(t) {
			return Receipt{}, fmt.Errorf("index term %q: name or value too long", t.Name)
		}
	}
	// Refused here, the record fails alone; in the sequencer it would fail
	// its whole batch.
	if len(rec.Envelope) == 0 || bytes.IndexByte(rec.Envelope, '\n') >= 0 || len(rec.Envelope) > maxEnvelope {
		return Receipt{}, fmt.Errorf("envelope must be compact JSON of at most %d bytes", maxEnvelope)
	}
	return l.enqueue(ctx, &pending{rec: rec, done: make(chan result, 1)})
}

// AppendLeaves extends a follower log with the next leaves of the log it
// mirrors, exactly as that log holds them, and returns once they are durable.
// Each leaf must parse, name the log's origin, and carry the next index and
// the hash of the entry before it. A non-nil checkpoint must be the mirrored
// log's signed checkpoint for the tree the leaves end; it is checked against
// the tree the follower computes itself, so a stored checkpoint always signs
// the follower's own tree. The call is all or nothing: on ErrMirror nothing
// of it is stored. The returned receipt is the last leaf's.
func (l *Log) AppendLeaves(ctx context.Context, leaves [][]byte, checkpoint []byte) (Receipt, error) {
	if l.cfg.Signer != nil {
		return Receipt{}, ErrNotFollower
	}
	if len(leaves) == 0 && checkpoint == nil {
		return Receipt{}, fmt.Errorf("%w: nothing to append", ErrMirror)
	}
	if len(leaves) > l.cfg.MaxBatch {
		return Receipt{}, fmt.Errorf("%d leaves in one call: at most MaxBatch (%d)", len(leaves), l.cfg.MaxBatch)
	}
	return l.enqueue(ctx, &pending{mirror: &mirror{leaves: leaves, checkpoint: checkpoint}, done: make(chan result, 1)})
}

func (l *Log) enqueue(ctx context.Context, p *pending) (Receipt, error) {
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
			if l.fatal == nil {
				return Receipt{}, ErrClosed
			}
			return Receipt{}, fmt.Errorf("%w: %v", ErrClosed, l.fatal)
		}
	}
}

// The write path is a two-stage pipeline. The sequencer goroutine owns the
// tree: it takes what is queued (up to MaxBatch), dedupes it, builds the
// entries, tree hashes and index postings into one Badger transaction, and
// hands it to the committer. The committer commits transactions one at a
// time, in order (each commit is one fsync), then publishes the new head and
// answers the batch. While one batch is being made durable the next is
// being prepared.
//
// A batch is built on the state its predecessor leaves. If a commit fails,
// every batch built on it is failed too, and the sequencer restarts from the
// durable head: a later batch can never become durable without its
// predecessors.

// prepared is a batch ready to commit.
type prepared struct {
	txn        *badger.Txn
	batch      []*pending
	receipts   []Receipt
	base, next head
	checkpoint []byte              // signed checkpoint for next.size, if any
	keys       []LogKey            // the chain of log keys after the batch
	runs       []segmentWrite      // the batch's framed leaves
	upper      map[int64]tlog.Hash // its tree hashes at cachedLevel and above
	decoded    []*evidence.Entry   // its new entries, for the recent cache
	postings   []entryPostings     // its new entries' untimed postings
	sealed     []*chunk            // the chunks of postings it completes
}

type entryPostings struct {
	index    uint64
	prefixes []string
}

func (l *Log) sequence() {
	defer close(l.commits)
	state := l.published
	tree, err := l.frontierAt(state.size)
	if err != nil {
		l.stopWith(err)
		return
	}
	inflight := newInflight()
	lastCP := time.Time{}
	var cpTimer <-chan time.Time
	if state.checkpointSize < state.size {
		cpTimer = time.After(0) // entries recovered after a crash need a checkpoint
	}
	for {
		select {
		case <-l.commitFailed:
			// Restart from what is durable; batches built on the failed one
			// are failed by the committer.
			state, l.filling = l.durableFilling()
			l.seqKeys = l.LogKeys()
			if tree, err = l.frontierAt(state.size); err != nil {
				l.stopWith(err)
				return
			}
			inflight = newInflight()
		default:
		}
		inflight.prune(l.durable().size)

		// A fresh slice each time: the committer still holds the last one.
		var batch []*pending
		checkpoint := false
		select {
		case p := <-l.queue:
			batch = l.takeQueued(append(batch, p))
			checkpoint = l.cfg.Clock().Sub(lastCP) >= l.cfg.CheckpointInterval
		case <-cpTimer:
			cpTimer, checkpoint = nil, true
		case <-l.stop:
			l.drainOnStop(state, tree, inflight)
			return
		}
		p, err := l.prepare(state, tree, inflight, batch, checkpoint)
		if err != nil {
			l.cfg.Logger.Error("preparing a batch failed", "records", len(batch), "err", err)
			answer(batch, nil, err)
			// The frontier and the dedupe map may hold part of the batch:
			// rebuild them from storage, once the batches prepared before
			// this one are durable (or have failed). Rebuilding from a head
			// they have not reached yet would build every later batch on a
			// stale base, which the committer refuses forever.
			l.waitDurable(state.size)
			state, l.filling = l.durableFilling()
			l.seqKeys = l.LogKeys()
			if tree, err = l.frontierAt(state.size); err != nil {
				l.stopWith(err)
				return
			}
			inflight = newInflight()
			continue
		}
		state, l.seqKeys = p.next, p.keys
		if checkpoint {
			lastCP = l.cfg.Clock()
		} else if state.checkpointSize < state.size && cpTimer == nil {
			cpTimer = time.After(l.cfg.CheckpointInterval - l.cfg.Clock().Sub(lastCP))
		}
		if p.txn != nil {
			l.commits <- p
		}
	}
}

// commit makes prepared batches durable, in order.
func (l *Log) commit() {
	defer close(l.stopped)
	var diskFull diskFullLog
	for p := range l.commits {
		if p.base != l.durable() {
			p.txn.Discard()
			answer(p.batch, nil, fmt.Errorf("%w: an earlier batch failed to commit", ErrStorage))
			continue
		}
		start := time.Now()
		err := l.checkSpace()
		if err == nil {
			err = l.segs.append(p.runs)
		}
		if err == nil {
			err = writeChunks(l.db, p.sealed)
		}
		if err == nil {
			l.recycle(p.runs) // discard below needs only the runs' offsets
			err = p.txn.Commit()
		} else {
			p.txn.Discard()
		}
		if err == nil && l.cfg.OnCommit != nil {
			l.cfg.OnCommit(len(p.batch), time.Since(start))
		}
		if err != nil {
			// Leave no part of the batch in the segments: the next batch is
			// written at the same offsets and may be shorter.
			if derr := l.segs.discard(p.runs); derr != nil {
				l.cfg.Logger.Error("removing a failed batch from the segments failed", "err", derr)
			}
			if errors.Is(err, ErrDiskFull) {
				diskFull.refuse(l.cfg.Logger, len(p.batch), err)
			} else {
				l.cfg.Logger.Error("batch commit failed", "records", len(p.batch), "err", err)
			}
			answer(p.batch, nil, fmt.Errorf("%w: %w", ErrStorage, err))
			select {
			case l.commitFailed <- struct{}{}:
			default:
			}
			continue
		}
		diskFull.ok(l.cfg.Logger)
		l.upper.add(p.upper) // before publishing: proofs up to the new size may need them
		l.recent.put(p.decoded)
		l.mu.Lock()
		l.publishPostings(p)
		l.published = p.next
		l.keys = p.keys
		if p.checkpoint != nil {
			l.latestCP = p.checkpoint
		}
		l.mu.Unlock()
		l.size.Advance(p.next.size)
		l.checkpointed.Advance(p.next.checkpointSize)
		answer(p.batch, p.receipts, nil)
	}
}

func answer(batch []*pending, receipts []Receipt, err error) {
	for i, p := range batch {
		if err != nil {
			p.done <- result{err: err}
		} else {
			p.done <- result{receipt: receipts[i]}
		}
	}
}

// publishPostings adds a committed batch's postings to the open chunk.
// Called with mu held.
func (l *Log) publishPostings(p *prepared) {
	sealed := p.sealed
	for _, e := range p.postings {
		if e.index >= l.open.start+chunkSize {
			l.tags = append(l.tags, sealed[0].tag)
			sealed = sealed[1:]
			l.open = newChunk(chunkOf(e.index))
		}
		l.open.add(e.index, e.prefixes)
	}
}

// durableFilling returns the head of what has been committed and a filling
// chunk with its postings, for the sequencer to restart from.
func (l *Log) durableFilling() (head, *filling) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.published, &filling{c: l.open.clone()}
}

// durable is the head of what has been committed.
func (l *Log) durable() head {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.published
}

func (l *Log) frontierAt(size uint64) (frontier, error) {
	txn := l.db.NewTransaction(false)
	defer txn.Discard()
	return loadFrontier(txn, l.segs, size)
}

// stopWith records a fatal error: the sequencer cannot go on.
func (l *Log) stopWith(err error) {
	l.cfg.Logger.Error("ledger sequencer stopped", "err", err)
	l.fatal = err
}

// takeQueued adds to batch what is already queued, up to MaxBatch, without
// waiting.
func (l *Log) takeQueued(batch []*pending) []*pending {
	for len(batch) < l.cfg.MaxBatch {
		select {
		case p := <-l.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// drainOnStop prepares what is already queued and a final checkpoint, so
// nothing accepted into the queue is dropped silently.
func (l *Log) drainOnStop(state head, tree frontier, inflight *inflight) {
	for {
		batch := l.takeQueued(nil)
		p, err := l.prepare(state, tree, inflight, batch, true)
		if err != nil {
			answer(batch, nil, err)
			return
		}
		state, l.seqKeys = p.next, p.keys
		if p.txn != nil {
			l.commits <- p
		}
		if len(batch) == 0 {
			return
		}
	}
}

// inflight remembers the digests of records prepared but not yet durable,
// which a storage lookup cannot see yet.
type inflight struct {
	receipts map[[sha256.Size]byte]Receipt
	batches  []inflightBatch
}

type inflightBatch struct {
	end     uint64 // log size once the batch is durable
	digests [][sha256.Size]byte
}

func newInflight() *inflight {
	return &inflight{receipts: map[[sha256.Size]byte]Receipt{}}
}

func (f *inflight) prune(durable uint64) {
	for len(f.batches) > 0 && f.batches[0].end <= durable {
		for _, d := range f.batches[0].digests {
			delete(f.receipts, d)
		}
		f.batches = f.batches[1:]
	}
}

// prepare builds a batch's transaction on state. It returns a prepared batch
// with a nil txn when there is nothing to write.
func (l *Log) prepare(state head, tree frontier, fl *inflight, batch []*pending, signCheckpoint bool) (*prepared, error) {
	// Clipped: a batch that rotates the key appends to its own copy.
	p := &prepared{batch: batch, receipts: make([]Receipt, len(batch)), base: state, keys: slices.Clip(l.seqKeys)}
	txn := l.db.NewTransaction(true)
	ok := false
	defer func() {
		if !ok {
			txn.Discard()
		}
	}()
	var digests [][sha256.Size]byte
	now := l.cfg.Clock().UTC()
	for i, pd := range batch {
		if pd.mirror != nil {
			r, err := l.appendMirror(txn, p, &state, tree, pd.mirror)
			if err != nil {
				return nil, err
			}
			p.receipts[i] = r
			continue
		}
		if r, dup := fl.receipts[pd.rec.Digest]; dup {
			r.Duplicate = true
			p.receipts[i] = r
			continue
		}
		if l.digests.mayContain(pd.rec.Digest) {
			dup, err := l.existing(txn, pd.rec.Digest)
			if err != nil {
				return nil, err
			}
			if dup != nil {
				p.receipts[i] = *dup
				continue
			}
		}
		r, err := l.appendEntry(txn, p, &state, tree, pd.rec, now)
		if err != nil {
			return nil, err
		}
		// Added before the batch is durable: if its commit fails, the
		// digest is a false positive, which only costs a lookup.
		l.digests.add(pd.rec.Digest)
		r.ReceivedAt = now
		p.receipts[i] = r
		fl.receipts[pd.rec.Digest] = r
		digests = append(digests, pd.rec.Digest)
	}
	if signCheckpoint && l.cfg.Signer != nil && state.size > state.checkpointSize {
		root, err := tlog.TreeHash(int64(state.size), tree)
		if err != nil {
			return nil, fmt.Errorf("tree hash at %d: %w", state.size, err)
		}
		signers, err := l.checkpointSigners(p.keys, state.checkpointSize, state.size)
		if err != nil {
			return nil, err
		}
		if p.checkpoint, err = checkpoint.Sign(signers, l.cfg.Origin, state.size, root); err != nil {
			return nil, err
		}
		if err := txn.Set(u64Key(prefixCheckpoint, state.size), p.checkpoint); err != nil {
			return nil, err
		}
		state.checkpointSize = state.size
	}
	p.next = state
	if state == p.base {
		// Only duplicates (or nothing): answer without a commit. Their
		// entries may still be in flight, so wait for those first.
		if !l.waitDurable(state.size) {
			return nil, fmt.Errorf("%w: an earlier batch failed to commit", ErrStorage)
		}
		answer(batch, p.receipts, nil)
		return p, nil
	}
	if err := txn.Set([]byte(keyHead), state.encode(tree)); err != nil {
		return nil, err
	}
	fl.batches = append(fl.batches, inflightBatch{end: state.size, digests: digests})
	p.sealed = l.filling.takeSealed()
	p.txn, ok = txn, true
	return p, nil
}

// waitDurable waits until the log holds size entries durably. It reports
// false if a commit failed first (the entries in flight may then never become
// durable; the failure stays signalled for the sequencer) or the committer
// has stopped.
func (l *Log) waitDurable(size uint64) bool {
	for l.durable().size < size {
		if len(l.commitFailed) > 0 {
			return false
		}
		select {
		case <-l.stopped:
			return false
		case <-time.After(200 * time.Microsecond):
		}
	}
	return true
}

// appendEntry encodes one new entry at state.size, frames it into the
// batch's segment runs, writes what derives from it, and advances state.
func (l *Log) appendEntry(txn *badger.Txn, p *prepared, state *head, tree frontier, rec Record, now time.Time) (Receipt, error) {
	e := evidence.Entry{
		Origin:     l.cfg.Origin,
		Index:      state.size,
		PrevHash:   state.lastHash,
		ReceivedAt: now,
		Meta: evidence.EntryMeta{
			Signer:       rec.Signer,
			RecordDigest: hex.EncodeToString(rec.Digest[:]),
			Findings:     rec.Findings,
			Decision:     rec.Decision,
		},
		Envelope: rec.Envelope,
	}
	// The leaf is encoded straight into the batch's segment run.
	run := l.run(p, state)
	start := len(run.data)
	buf, err := e.AppendLeaf(append(run.data, 0, 0, 0, 0))
	if err != nil {
		return Receipt{}, fmt.Errorf("encode entry %d: %w", state.size, err)
	}
	leaf := buf[start+4:]
	if len(leaf) > maxLeaf {
		// The segment scan would take it for a torn frame.
		return Receipt{}, fmt.Errorf("entry %d: leaf of %d bytes exceeds %d", state.size, len(leaf), maxLeaf)
	}
	run.data = sealFrame(buf, start)
	if rec.Statement != nil {
		e.SetStatement(rec.Statement)
		p.decoded = append(p.decoded, &e)
	}
	return l.addLeaf(txn, p, state, tree, leaf, rec.Digest, rec.Terms)
}

// run returns the batch's segment run that the entry at state.size goes to.
func (l *Log) run(p *prepared, state *head) *segmentWrite {
	seg := segmentOf(state.size)
	if n := len(p.runs); n == 0 || p.runs[n-1].seg != seg {
		var data []byte
		if b, ok := l.frames.Get().(*[]byte); ok {
			data = (*b)[:0]
		}
		p.runs = append(p.runs, segmentWrite{seg: seg, offset: state.offset, data: data})
	}
	return &p.runs[len(p.runs)-1]
}

// recycle returns a written batch's run buffers for later batches: at
// thousands of records a second, fresh ones would be most of what the log
// allocates.
func (l *Log) recycle(runs []segmentWrite) {
	for i := range runs {
		if cap(runs[i].data) <= maxRecycled {
			b := runs[i].data
			l.frames.Put(&b)
		}
		runs[i].data = nil
	}
}

// maxRecycled bounds a run buffer kept for reuse.
const maxRecycled = 8 << 20

// addLeaf writes what derives from a leaf already framed into the batch's
// segment run, and advances state.
func (l *Log) addLeaf(txn *badger.Txn, p *prepared, state *head, tree frontier, leaf []byte, digest [sha256.Size]byte, terms []Term) (Receipt, error) {
	index := state.size
	vkey, err := announcedKey(index, leaf, terms)
	if err != nil {
		return Receipt{}, err
	}
	if vkey != "" {
		if index == 0 && l.cfg.Signer == nil && vkey != l.cfg.VerifierKey {
			return Receipt{}, fmt.Errorf("%w: the genesis names the log key %q, not %q", ErrMirror, vkey, l.cfg.VerifierKey)
		}
		p.keys = append(p.keys, LogKey{At: index, VerifierKey: vkey})
	}
	prefixes := untimedPrefixes(terms)
	l.filling.add(index, prefixes, state.lastHash)
	p.postings = append(p.postings, entryPostings{index: index, prefixes: prefixes})
	r, stored, err := writeDerived(txn, state, tree, leaf, digest, terms)
	if err != nil {
		return r, err
	}
	// stored[k] is the level-k node this leaf completes.
	for level := cachedLevel; level < len(stored); level++ {
		if p.upper == nil {
			p.upper = map[int64]tlog.Hash{}
		}
		p.upper[tlog.StoredHashIndex(level, int64(index>>level))] = stored[level]
	}
	return r, nil
}

// appendMirror adds a follower's mirrored leaves, checked to extend the log,
// and stores the checkpoint that comes with them once it signs the tree they
// end. Any failure fails the whole batch, and the sequencer rebuilds its
// state from storage: nothing of the call is stored.
func (l *Log) appendMirror(txn *badger.Txn, p *prepared, state *head, tree frontier, m *mirror) (Receipt, error) {
	var r Receipt
	for _, leaf := range m.leaves {
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			return r, fmt.Errorf("%w: entry %d: %v", ErrMirror, state.size, err)
		}
		if e.Origin != l.cfg.Origin || e.Index != state.size || e.PrevHash != state.lastHash {
			return r, fmt.Errorf("%w: leaf for entry %d (origin %q, index %d) does not follow entry %d of %q",
				ErrMirror, state.size, e.Origin, e.Index, int64(state.size)-1, l.cfg.Origin)
		}
		st, err := e.Statement()
		if err != nil {
			return r, fmt.Errorf("%w: %v", ErrMirror, err)
		}
		if len(leaf) > maxLeaf {
			return r, fmt.Errorf("%w: entry %d: leaf of %d bytes exceeds %d", ErrMirror, state.size, len(leaf), maxLeaf)
		}
		run := l.run(p, state)
		run.data = frame(run.data, leaf)
		var digest [sha256.Size]byte
		if n, err := hex.Decode(digest[:], []byte(e.Meta.RecordDigest)); err != nil || n != len(digest) {
			return r, fmt.Errorf("%w: entry %d: bad record digest", ErrMirror, state.size)
		}
		if r, err = l.addLeaf(txn, p, state, tree, leaf, digest, TermsFor(st, e.Meta)); err != nil {
			return r, err
		}
		e.SetStatement(st)
		p.decoded = append(p.decoded, e)
	}
	if m.checkpoint == nil {
		return r, nil
	}
	verifiers := []note.Verifier{l.verifier}
	if len(p.keys) > 0 {
		var err error
		if verifiers, err = checkpointVerifiers(p.keys, state.checkpointSize, state.size); err != nil {
			return r, fmt.Errorf("%w: %v", ErrMirror, err)
		}
	}
	cp, err := checkpoint.Open(m.checkpoint, l.cfg.Origin, verifiers...)
	if err != nil {
		return r, fmt.Errorf("%w: %v", ErrMirror, err)
	}
	root, err := tlog.TreeHash(int64(state.size), tree)
	if err != nil {
		return r, fmt.Errorf("tree hash at %d: %w", state.size, err)
	}
	if cp.Size != state.size || tlog.Hash(cp.Root) != root {
		return r, fmt.Errorf("%w: the checkpoint signs a tree of %d entries with root %x, but the follower's tree of %d entries has root %x",
			ErrMirror, cp.Size, cp.Root, state.size, root[:])
	}
	if cp.Size > state.checkpointSize {
		if err := txn.Set(u64Key(prefixCheckpoint, state.size), m.checkpoint); err != nil {
			return r, err
		}
		p.checkpoint = m.checkpoint
		state.checkpointSize = state.size
	}
	return r, nil
}

// writeDerived writes what derives from the leaf at state.size (its location,
// tree hashes, digest and time-ordered index postings; the untimed ones go
// to the chunk the caller fills) and advances state. Appending and
// crash recovery share it, so both derive exactly the same state.
func writeDerived(txn *badger.Txn, state *head, tree frontier, leaf []byte, digest [sha256.Size]byte, terms []Term) (Receipt, []tlog.Hash, error) {
	index := state.size
	leafHash := tlog.RecordHash(leaf)
	stored, err := tlog.StoredHashesForRecordHash(int64(index), leafHash, tree)
	if err != nil {
		return Receipt{}, nil, fmt.Errorf("tree hashes for entry %d: %w", index, err)
	}
	base := tlog.StoredHashIndex(0, int64(index))
	for k := minStoredLevel; k < len(stored); k++ { // stored[k] is at level k
		if err := txn.Set(u64Key(prefixHash, uint64(base+int64(k))), stored[k][:]); err != nil {
			return Receipt{}, nil, err
		}
	}
	tree.add(int64(index), stored)
	loc := location{offset: state.offset, length: uint32(len(leaf))}
	if err := txn.Set(u64Key(prefixEntry, index), loc.encode()); err != nil {
		return Receipt{}, nil, err
	}
	if err := txn.Set(append([]byte{prefixDigest}, digest[:]...), binary.BigEndian.AppendUint64(nil, index)); err != nil {
		return Receipt{}, nil, err
	}
	for _, t := range terms {
		if !timedTerm(t.Name) {
			continue // in the chunk the caller fills
		}
		if err := txn.Set(termKey(t, index), nil); err != nil {
			return Receipt{}, nil, err
		}
	}
	entryHash := evidence.EntryHash(leaf)
	state.size++
	state.lastHash = entryHash
	state.offset += uint64(len(leaf)) + frameOverhead
	if segmentOf(state.size) != segmentOf(index) {
		state.offset = 0
	}
	return Receipt{Index: index, EntryHash: entryHash, LeafHash: leafHash}, stored, nil
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
	leaf, err := readLeaf(txn, l.segs, index)
	if err != nil {
		return nil, err
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
