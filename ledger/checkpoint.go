package ledger

import (
	"crypto/ed25519"
	"fmt"
	"slices"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// NoteSigner signs checkpoints with an ed25519 key under the log's origin, as
// C2SP signed-note requires: the key name is the origin.
type NoteSigner struct {
	name string
	hash uint32
	vkey string
	key  ed25519.PrivateKey
}

// NewNoteSigner wraps the log's ed25519 key. The same key signs the log's
// own DSSE records (bootstrap, trust.updated); the two encodings are domain
// separated (a note's text is never a DSSE PAE, which starts "DSSEv1 ").
func NewNoteSigner(origin string, key ed25519.PrivateKey) (*NoteSigner, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	return &NoteSigner{name: origin, hash: v.KeyHash(), vkey: vkey, key: key}, nil
}

// Name implements note.Signer.
func (s *NoteSigner) Name() string { return s.name }

// KeyHash implements note.Signer.
func (s *NoteSigner) KeyHash() uint32 { return s.hash }

// Sign implements note.Signer.
func (s *NoteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// VerifierKey is the note verifier key (name+hash+base64 key) auditors pin.
func (s *NoteSigner) VerifierKey() string { return s.vkey }

// signCheckpoint returns a C2SP tlog-checkpoint signed note, signed by
// every signer (two across a log key rotation).
func signCheckpoint(s []note.Signer, origin string, size uint64, root [32]byte) ([]byte, error) {
	body := log.Checkpoint{Origin: origin, Size: size, Hash: root[:]}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(body)}, s...)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return signed, nil
}

// OpenCheckpoint verifies a signed checkpoint note against the log's verifier
// key and origin and returns its contents.
func OpenCheckpoint(signed []byte, origin string, v note.Verifier) (*log.Checkpoint, error) {
	cp, _, _, err := log.ParseCheckpoint(signed, origin, v)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return cp, nil
}

// openCheckpointBy is OpenCheckpoint requiring a signature by every one of
// verifiers (the key in force, and across a rotation the key it replaces).
func openCheckpointBy(signed []byte, origin string, verifiers []note.Verifier) (*log.Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	for _, v := range verifiers {
		if !slices.ContainsFunc(n.Sigs, func(s note.Signature) bool { return s.Name == v.Name() && s.Hash == v.KeyHash() }) {
			return nil, fmt.Errorf("checkpoint: not signed by the log key %s+%08x", v.Name(), v.KeyHash())
		}
	}
	return OpenCheckpoint(signed, origin, verifiers[len(verifiers)-1])
}
