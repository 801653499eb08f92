package audit

import (
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/api"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// FollowLogKeys starts from the pinned log key (the genesis key) and
// follows steps, in log order, to the key in force after the last of them.
// It returns that key and the index of the last rotation entry (0 when
// steps is empty: the pinned key is in force). A step is accepted only if
// its entry is signed by the key in force and names the next key, and its
// checkpoint includes the entry and carries both keys' signatures. Pure: no
// I/O, so an auditor can check steps fetched from an untrusted server.
func FollowLogKeys(pinned string, steps []api.LogKeyStep) (string, uint64, error) {
	cur, curNote, err := LogPublicKey(pinned)
	if err != nil {
		return "", 0, err
	}
	key, at := pinned, uint64(0)
	origin := curNote.Name()
	for i, s := range steps {
		if i > 0 && s.Index <= at {
			return "", 0, errors.New("log key rotations are not in log order")
		}
		fail := func(err error) (string, uint64, error) {
			return "", 0, fmt.Errorf("log key rotation at entry %d: %w", s.Index, err)
		}
		cp, err := openNote([]byte(s.Checkpoint), origin)
		if err != nil {
			return fail(fmt.Errorf("checkpoint: %w", err))
		}
		if s.Index >= cp.size {
			return fail(fmt.Errorf("the checkpoint of %d entries does not cover it", cp.size))
		}
		proof := make(tlog.RecordProof, len(s.Proof))
		for j, h := range s.Proof {
			if len(h) != tlog.HashSize {
				return fail(fmt.Errorf("proof hash %d has %d bytes", j, len(h)))
			}
			copy(proof[j][:], h)
		}
		if err := tlog.CheckRecord(proof, int64(cp.size), cp.root, int64(s.Index), tlog.RecordHash(s.Leaf)); err != nil {
			return fail(fmt.Errorf("the entry is not in the checkpoint's tree: %w", err))
		}
		e, err := evidence.ParseLeaf(s.Leaf)
		if err != nil {
			return fail(err)
		}
		if e.Index != s.Index || e.Origin != origin {
			return fail(fmt.Errorf("the leaf says index %d of %q", e.Index, e.Origin))
		}
		logOnly, err := verifier.New(verifier.TrustConfig{}, cur)
		if err != nil {
			return fail(err)
		}
		v, err := logOnly.Verify(e.Envelope)
		if err != nil {
			return fail(fmt.Errorf("not signed by the log key in force (%s): %w", key, err))
		}
		p := v.Statement.Predicate
		if p.Kind != evidence.KindTrustUpdated || p.Trust == nil || p.Trust.LogKey == "" {
			return fail(fmt.Errorf("a %s record that names no new log key", p.Kind))
		}
		nextPub, nextNote, err := LogPublicKey(p.Trust.LogKey)
		if err != nil {
			return fail(err)
		}
		if nextNote.Name() != origin {
			return fail(fmt.Errorf("the new key is named %q, not after the origin %q", nextNote.Name(), origin))
		}
		if err := signedBy(cp.note, curNote); err != nil {
			return fail(fmt.Errorf("the checkpoint is not signed by the key it replaces: %w", err))
		}
		if err := signedBy(cp.note, nextNote); err != nil {
			return fail(fmt.Errorf("the checkpoint is not signed by the new key: %w", err))
		}
		cur, curNote, key, at = nextPub, nextNote, p.Trust.LogKey, s.Index
	}
	return key, at, nil
}
