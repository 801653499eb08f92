package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"evident.dev/evident/evidence"
)

// TermsVersion names the definition of TermsFor. A log whose secondary
// indexes were built by another definition has them rebuilt from its
// entries when it opens, so that a new filter also finds older entries and
// `evident verify` finds the indexes the entries define.
//
//	1: change, env(+time), kind, actor, stack
//	2: also every target field, time, risk, emergency, approver and groups,
//	   plan resources and synced objects, findings, policy results and rules,
//	   artifact branch protection, exception expiry
//	3: the same terms; the untimed ones stored in chunks (postings.go)
//	4: and first-chunk keys
//	5: and facts derived from plan resources and synced objects (evidence.Facts)
const TermsVersion = 5

const keyTermsVersion = "v" // v -> TermsVersion u64 of the stored secondary indexes

// reindex rebuilds the secondary indexes when they were built by another
// TermsFor. It runs before the sequencer starts. A crash during it leaves the
// old version recorded, so the next open starts over.
func (l *Log) reindex() error {
	var have uint64
	err := l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyTermsVersion))
		if errors.Is(err, badger.ErrKeyNotFound) {
			have = 1 // logs from before the version was recorded
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("index version has %d bytes", len(v))
			}
			have = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read index version: %w", err)
	}
	if have == TermsVersion {
		return nil
	}
	size := l.published.size
	if size > 0 {
		l.cfg.Logger.Warn("rebuilding the secondary indexes for a new index definition", "entries", size, "from", have, "to", TermsVersion)
		if err := l.db.DropPrefix([]byte{prefixTerm}, []byte{prefixChunk}, []byte{prefixFirst}); err != nil {
			return fmt.Errorf("drop old indexes: %w", err)
		}
		wb := l.db.NewWriteBatch()
		defer wb.Cancel()
		f := &filling{c: newChunk(0)}
		var tags []uint64
		var prev [32]byte
		_, _, err := l.segs.scan(0, 0, size, func(index, _ uint64, leaf []byte) error {
			e, err := evidence.ParseLeaf(leaf)
			if err != nil {
				return fmt.Errorf("entry %d: %w", index, err)
			}
			st, err := e.Statement()
			if err != nil {
				return fmt.Errorf("entry %d: %w", index, err)
			}
			terms := TermsFor(st, e.Meta)
			for _, t := range terms {
				if !timedTerm(t.Name) {
					continue
				}
				if err := wb.Set(termKey(t, index), nil); err != nil {
					return err
				}
			}
			f.add(index, untimedPrefixes(terms), prev)
			for _, c := range f.takeSealed() {
				if err := writeChunks(l.db, []*chunk{c}); err != nil {
					return err
				}
				tags = append(tags, c.tag)
			}
			prev = evidence.EntryHash(leaf)
			return nil
		})
		if err != nil {
			return fmt.Errorf("rebuild indexes (run evident verify): %w", err)
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("rebuild indexes: %w", err)
		}
		l.tags, l.filling = tags, f
		l.cfg.Logger.Info("secondary indexes rebuilt", "entries", size)
	}
	return l.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyTermsVersion), binary.BigEndian.AppendUint64(nil, TermsVersion))
	})
}
