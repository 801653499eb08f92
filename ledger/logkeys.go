package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
)

// LogKey is one link of the log's chain of keys: the note verifier key that
// signs the log's checkpoints from entry At on. The first link is the key
// the genesis (bootstrap) entry names, At 0; each later one is announced by
// the trust.updated entry At, which the previous key signed
// (predicate.trust.logKey).
//
// The checkpoint signing rule follows from the chain alone, so a restart or
// a crash between the announcement and the next checkpoint changes nothing:
// a checkpoint is signed by the key announced last among the entries it
// covers, and the first checkpoint covering an announcement is signed by the
// key it replaces as well (the cross-signed checkpoint). A key only counts
// once the log holds its announcement.
type LogKey struct {
	At          uint64
	VerifierKey string
}

// LogKeys returns the log's chain of keys, in log order, as far as the log
// is durable. It is empty for an empty log, and for a log whose genesis is
// not a bootstrap record (only in tests of this package).
func (l *Log) LogKeys() []LogKey {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return slices.Clone(l.keys)
}

// announcedKey returns the log key a leaf introduces: the genesis
// bootstrap's, or a rotating trust.updated entry's; "" for any other leaf.
// Only leaves whose index terms name one of those kinds are parsed.
func announcedKey(index uint64, leaf []byte, terms []Term) (string, error) {
	kind := ""
	for _, t := range terms {
		if t.Name == TermKind {
			kind = t.Value
			break
		}
	}
	if kind != string(evidence.KindTrustUpdated) && (index != 0 || kind != string(evidence.KindBootstrap)) {
		return "", nil
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return "", fmt.Errorf("entry %d: %w", index, err)
	}
	st, err := e.Statement()
	if err != nil {
		return "", fmt.Errorf("entry %d: %w", index, err)
	}
	switch p := st.Predicate; {
	case p.Bootstrap != nil:
		return p.Bootstrap.LogKey, nil
	case p.Trust != nil:
		return p.Trust.LogKey, nil
	}
	return "", nil
}

// loadKeys reads the chain of keys from the durable log: the genesis entry
// and every trust.updated entry (few: one per trust change).
func (l *Log) loadKeys(ctx context.Context) ([]LogKey, error) {
	if l.Size() == 0 {
		return nil, nil
	}
	idx, err := l.Lookup(ctx, Query{Name: TermKind, Value: string(evidence.KindTrustUpdated), Limit: 1 << 30})
	if err != nil {
		return nil, fmt.Errorf("find trust records: %w", err)
	}
	var keys []LogKey
	for _, i := range append([]uint64{0}, idx...) {
		kind := string(evidence.KindTrustUpdated)
		if i == 0 {
			kind = string(evidence.KindBootstrap)
		}
		leaf, err := l.Leaf(ctx, i)
		var vkey string
		if err == nil {
			vkey, err = announcedKey(i, leaf, []Term{{Name: TermKind, Value: kind}})
		}
		if err != nil && i == 0 {
			// No chain (tests of this package append raw records) or a
			// damaged genesis, which verify reports: the log still opens.
			l.cfg.Logger.Warn("the genesis entry names no log key", "err", err)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if i == 0 && vkey == "" {
			return nil, nil // not a bootstrap genesis: no chain (tests of this package)
		}
		if vkey != "" {
			keys = append(keys, LogKey{At: i, VerifierKey: vkey})
		}
	}
	return keys, nil
}

// checkpointKeys returns the verifier keys that must sign a checkpoint of
// size, the previous one being of size prev, by the chain-of-keys rule
// (checkpoint.Rotations.Signing). Nil means no chain is known (Signer
// signs).
func checkpointKeys(keys []LogKey, prev, size uint64) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	rotations := make(checkpoint.Rotations, 0, len(keys)-1)
	for _, k := range keys[1:] {
		rotations = append(rotations, k.At)
	}
	idx, err := rotations.Signing(prev, size)
	if err != nil {
		return nil, err
	}
	vkeys := make([]string, len(idx))
	for i, k := range idx {
		vkeys[i] = keys[k].VerifierKey
	}
	return vkeys, nil
}

// checkpointSigners maps checkpointKeys to the configured signers.
func (l *Log) checkpointSigners(keys []LogKey, prev, size uint64) ([]note.Signer, error) {
	vkeys, err := checkpointKeys(keys, prev, size)
	if err != nil {
		return nil, err
	}
	if vkeys == nil {
		return []note.Signer{l.cfg.Signer}, nil
	}
	signers := make([]note.Signer, 0, len(vkeys))
	for _, vk := range vkeys {
		switch {
		case vk == l.cfg.Signer.VerifierKey():
			signers = append(signers, l.cfg.Signer)
		case l.cfg.PreviousSigner != nil && vk == l.cfg.PreviousSigner.VerifierKey():
			signers = append(signers, l.cfg.PreviousSigner)
		default:
			return nil, fmt.Errorf("%w: the checkpoint of %d entries must be signed by the log key %s, which is neither the log key nor the previous log key configured", ErrKey, size, vk)
		}
	}
	return signers, nil
}

// checkpointVerifiers is checkpointKeys as note verifiers, for a follower.
func checkpointVerifiers(keys []LogKey, prev, size uint64) ([]note.Verifier, error) {
	vkeys, err := checkpointKeys(keys, prev, size)
	if err != nil {
		return nil, err
	}
	vs := make([]note.Verifier, 0, len(vkeys))
	for _, vk := range vkeys {
		v, err := note.NewVerifier(vk)
		if err != nil {
			return nil, fmt.Errorf("log key %q: %w", vk, err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// ErrKey: the log cannot sign a checkpoint because the key the chain of log
// keys requires is not configured.
var ErrKey = errors.New("log key missing")

// Rotation is what proves one change of log key to someone who trusts the
// key before it: the trust.updated entry that names the new key (its leaf),
// the first checkpoint covering it, which both keys sign, and the entry's
// inclusion proof in that checkpoint's tree.
type Rotation struct {
	Index      uint64
	Leaf       []byte
	Checkpoint []byte
	Proof      [][32]byte
}

// Rotations returns the proof of every rotation whose cross-signed
// checkpoint the log holds, in log order.
func (l *Log) Rotations(ctx context.Context) ([]Rotation, error) {
	keys := l.LogKeys()
	var out []Rotation
	for _, k := range keys {
		if k.At == 0 {
			continue
		}
		size, cp, err := l.checkpointAfter(k.At)
		if errors.Is(err, ErrNotFound) {
			break // not yet cross-signed
		}
		if err != nil {
			return nil, err
		}
		leaf, err := l.Leaf(ctx, k.At)
		if err != nil {
			return nil, err
		}
		proof, err := l.InclusionProof(ctx, k.At, size)
		if err != nil {
			return nil, err
		}
		out = append(out, Rotation{Index: k.At, Leaf: leaf, Checkpoint: cp, Proof: proof})
	}
	return out, nil
}

// checkpointAfter returns the first stored checkpoint covering entry index.
func (l *Log) checkpointAfter(index uint64) (uint64, []byte, error) {
	var size uint64
	var cp []byte
	err := l.read(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{prefixCheckpoint}
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Seek(u64Key(prefixCheckpoint, index+1))
		if !it.ValidForPrefix(opts.Prefix) {
			return ErrNotFound
		}
		k := it.Item().Key()
		if len(k) != 9 {
			return fmt.Errorf("checkpoint key of %d bytes", len(k))
		}
		size = binary.BigEndian.Uint64(k[1:])
		var err error
		cp, err = it.Item().ValueCopy(nil)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	if size > l.CheckpointSize() {
		return 0, nil, ErrNotFound // committed but not yet published
	}
	return size, cp, nil
}
