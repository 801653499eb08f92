// Package checkpoint signs and opens the log's checkpoints: C2SP
// tlog-checkpoint bodies (origin, size, root hash) in C2SP signed notes,
// signed with the log's ed25519 key under the log's origin. It is the one
// parser of checkpoints: the ledger, the offline audit, anchoring,
// replication and the client all read them here. Pure: no I/O.
//
// An Evident checkpoint has no extension lines: its text is exactly what
// Text returns, so that anyone can rebuild what was signed from the size
// and the root alone (an anchor in Rekor commits to those bytes).
package checkpoint

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// Signer signs checkpoints with an ed25519 key under the log's origin, as
// C2SP signed-note requires: the key name is the origin. It is a
// note.Signer.
type Signer struct {
	name string
	hash uint32
	vkey string
	key  ed25519.PrivateKey
}

// NewSigner wraps the log's ed25519 key. The same key signs the log's own
// DSSE records (bootstrap, trust.updated); the two encodings are domain
// separated (a note's text is never a DSSE PAE, which starts "DSSEv1 ").
func NewSigner(origin string, key ed25519.PrivateKey) (*Signer, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	return &Signer{name: origin, hash: v.KeyHash(), vkey: vkey, key: key}, nil
}

// Name implements note.Signer.
func (s *Signer) Name() string { return s.name }

// KeyHash implements note.Signer.
func (s *Signer) KeyHash() uint32 { return s.hash }

// Sign implements note.Signer.
func (s *Signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// VerifierKey is the note verifier key (name+hash+base64 key) auditors pin.
func (s *Signer) VerifierKey() string { return s.vkey }

// Text is the body of the checkpoint of size entries with root hash root.
func Text(origin string, size uint64, root [32]byte) []byte {
	return log.Checkpoint{Origin: origin, Size: size, Hash: root[:]}.Marshal()
}

// Sign returns the signed note of a checkpoint, signed by every signer (two
// across a log key rotation).
func Sign(signers []note.Signer, origin string, size uint64, root [32]byte) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: string(Text(origin, size, root))}, signers...)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return signed, nil
}

// Checkpoint is an opened checkpoint.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [32]byte
}

// Open verifies a signed checkpoint: it must carry a valid signature by
// every one of verifiers (the key in force, and across a rotation also the
// key it replaces), and its text must be a checkpoint of origin.
func Open(signed []byte, origin string, verifiers ...note.Verifier) (*Checkpoint, error) {
	if len(verifiers) == 0 {
		return nil, errors.New("checkpoint: no verifier key")
	}
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	for _, v := range verifiers {
		if !slices.ContainsFunc(n.Sigs, func(s note.Signature) bool { return s.Name == v.Name() && s.Hash == v.KeyHash() }) {
			return nil, fmt.Errorf("checkpoint: not signed by the log key %s+%08x", v.Name(), v.KeyHash())
		}
	}
	return parse(n.Text, origin)
}

// Parse reads a signed checkpoint's size and root without checking any
// signature: for a note whose signatures are checked elsewhere, or that
// comes from the log's own store. Its form (a signed note, a checkpoint
// of origin) is checked.
func Parse(signed []byte, origin string) (*Checkpoint, error) {
	_, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		return nil, fmt.Errorf("checkpoint: not a signed note: %v", err)
	}
	return parse(unverified.Note.Text, origin)
}

func parse(text, origin string) (*Checkpoint, error) {
	var lc log.Checkpoint
	rest, err := lc.Unmarshal([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if lc.Origin != origin {
		return nil, fmt.Errorf("checkpoint: origin %q, want %q", lc.Origin, origin)
	}
	if len(lc.Hash) != 32 {
		return nil, fmt.Errorf("checkpoint: the root hash has %d bytes, want 32", len(lc.Hash))
	}
	cp := &Checkpoint{Origin: lc.Origin, Size: lc.Size, Root: [32]byte(lc.Hash)}
	if len(rest) > 0 || !bytes.Equal([]byte(text), Text(origin, cp.Size, cp.Root)) {
		return nil, fmt.Errorf("checkpoint: text %q is not origin, size and root alone", text)
	}
	return cp, nil
}

// Rotations are the entries at which a log rotated its key, ascending:
// entry Rotations[i-1] announced the key at index i of the log's chain of
// keys, index 0 being the genesis key. The rule of which key signs which
// checkpoint is decided here, once, for the ledger that signs, the offline
// audit, replicas, anchoring and the client.
type Rotations []uint64

// InForce is the index of the key in force for a checkpoint of size: the
// newest key whose rotation entry the checkpoint covers.
func (r Rotations) InForce(size uint64) int {
	k := 0
	for k < len(r) && r[k] < size {
		k++
	}
	return k
}

// Signing returns the indexes of the keys that must sign the checkpoint of
// size whose predecessor had prev entries (0 for the first): the key in
// force and, when the predecessor does not yet cover that key's rotation
// entry, first the key it replaces, so that whoever trusts the old key can
// follow the rotation. Two rotations with no checkpoint between them are
// refused: no checkpoint could carry both hand-overs.
func (r Rotations) Signing(prev, size uint64) ([]int, error) {
	k := r.InForce(size)
	if k == 0 || r[k-1] < prev {
		return []int{k}, nil
	}
	if k >= 2 && r[k-2] >= prev {
		return nil, fmt.Errorf("checkpoint: entries %d and %d both rotate the log key with no checkpoint between them", r[k-2], r[k-1])
	}
	return []int{k - 1, k}, nil
}

// Chain is a log's chain of keys: Keys[0] is the genesis key and Keys[i]
// the key the log rotated to at entry Rotations[i-1].
type Chain struct {
	Keys      []note.Verifier
	Rotations Rotations
}

// Open opens a checkpoint signed by the key in force for its size
// (Rotations.InForce). A checkpoint signed only by a key before its
// rotation entry, or by a key a rotation it covers retired, is refused.
func (c Chain) Open(signed []byte, origin string) (*Checkpoint, error) {
	if len(c.Keys) != len(c.Rotations)+1 {
		return nil, fmt.Errorf("checkpoint: a chain of %d keys with %d rotations", len(c.Keys), len(c.Rotations))
	}
	cp, err := Parse(signed, origin)
	if err != nil {
		return nil, err
	}
	k := c.Rotations.InForce(cp.Size)
	if _, err := Open(signed, origin, c.Keys[k]); err != nil {
		return nil, fmt.Errorf("checkpoint: the checkpoint of %d entries is not signed by the log key in force for that size: %w", cp.Size, err)
	}
	return cp, nil
}
