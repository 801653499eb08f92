package ledger

import (
	"encoding/hex"
	"errors"
	"fmt"

	"evident.dev/evident/evidence"
)

// recover brings Badger up to the segments. Badger does not sync, so after a
// crash it may lack the last entries the segments hold (every acknowledged
// entry is in a synced segment). Those entries are replayed: their derived
// state is written again exactly as the sequencer writes it. A torn frame
// after the last intact one (a write that never synced, so was never
// acknowledged) is cut off.
func (l *Log) recover() error {
	state := l.published
	tree, err := l.frontierAt(state.size)
	if err != nil {
		return err
	}
	txn := l.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	replayed := 0
	flush := func() error {
		sealed := l.filling.takeSealed()
		if err := writeChunks(l.db, sealed); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		for _, c := range sealed {
			l.tags = append(l.tags, c.tag)
		}
		if err := txn.Set([]byte(keyHead), state.encode(tree)); err != nil {
			return err
		}
		if err := txn.Commit(); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		txn = l.db.NewTransaction(true)
		return nil
	}
	next, offset, err := l.segs.scan(state.size, state.offset, 0, func(index, _ uint64, leaf []byte) error {
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			return fmt.Errorf("entry %d: %w", index, err)
		}
		if e.Index != index || e.PrevHash != state.lastHash {
			return fmt.Errorf("entry %d in the segments does not extend the log (run evident verify)", index)
		}
		st, err := e.Statement()
		if err != nil {
			return err
		}
		var digest [32]byte
		if n, err := hex.Decode(digest[:], []byte(e.Meta.RecordDigest)); err != nil || n != len(digest) {
			return fmt.Errorf("entry %d: bad record digest", index)
		}
		terms := TermsFor(st, e.Meta)
		l.filling.add(index, untimedPrefixes(terms), state.lastHash)
		if _, _, err := writeDerived(txn, &state, tree, leaf, digest, terms); err != nil {
			return err
		}
		replayed++
		if replayed%1000 == 0 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover from segments: %w", err)
	}
	if replayed > 0 {
		if err := flush(); err != nil {
			return err
		}
		l.cfg.Logger.Warn("replayed entries that storage had not yet recorded (crash recovery)", "entries", replayed, "size", state.size)
	}
	if next != state.size || offset != state.offset {
		return errors.New("recover: segment scan and replay disagree")
	}
	if err := l.segs.cutTornTail(next, offset); err != nil {
		return err
	}
	l.published = state
	return nil
}
