package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/api"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// PackFormat identifies an evidence pack.
const PackFormat = "evident.dev/pack/v1"

// Pack is an evidence pack: every record of one change the requester may
// see, each with its RFC 6962 inclusion proof against one signed checkpoint,
// so that an auditor can check the answer offline with only the log key.
// Trust, when present, holds the genesis entry and every trust update before
// the pack's last record, with proofs, so that record signatures can be
// checked against the trust configuration in force when each was appended.
type Pack struct {
	Format     string      `json:"format"`
	Origin     string      `json:"origin"`
	LogKey     string      `json:"logKey"`
	Change     string      `json:"change"`
	Checkpoint string      `json:"checkpoint"` // signed note
	Trust      []PackEntry `json:"trust,omitempty"`
	Entries    []PackEntry `json:"entries"`
	// LogKeyRotations lead from LogKey, the genesis key, to the key that
	// signs Checkpoint when the log key was rotated (FollowLogKeys).
	LogKeyRotations []api.LogKeyStep `json:"logKeyRotations,omitempty"`
}

// PackEntry is one leaf with its inclusion proof.
type PackEntry struct {
	Index uint64   `json:"index"`
	Leaf  []byte   `json:"leaf"`
	Proof [][]byte `json:"proof"`
}

// PackReport is what CheckPack established.
type PackReport struct {
	Change     string
	Records    int
	TreeSize   uint64
	Root       [32]byte
	Signatures int // records whose signature and signer scope were re-verified
	Kinds      []evidence.Kind
}

// ReadPack decodes a pack, refusing unknown fields.
func ReadPack(r io.Reader) (*Pack, error) {
	dec := json.NewDecoder(io.LimitReader(r, 1<<30))
	dec.DisallowUnknownFields()
	var p Pack
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: pack: %v", verifier.ErrMalformed, err)
	}
	if p.Format != PackFormat {
		return nil, fmt.Errorf("%w: pack format %q, want %q", verifier.ErrMalformed, p.Format, PackFormat)
	}
	return &p, nil
}

// CheckPack verifies a pack offline against the log key (pinned out of band,
// "name+hash+base64key"): the checkpoint's signature, every entry's inclusion
// under it, every leaf's form, that every record belongs to the pack's
// change, and, when the pack carries the trust entries, every record's
// signature under the trust in force.
func CheckPack(p *Pack, logKey string) (*PackReport, error) {
	logPub, nv, err := LogPublicKey(logKey)
	if err != nil {
		return nil, err
	}
	if p.Origin != nv.Name() {
		return nil, fmt.Errorf("the pack is of log %q but the log key is %q's", p.Origin, nv.Name())
	}
	cp, err := openNote([]byte(p.Checkpoint), p.Origin)
	if err != nil {
		return nil, fmt.Errorf("pack checkpoint: %w", err)
	}
	// The key in force at an index: the pinned one, or where the pack's
	// rotations lead by then.
	keyAt := func(index uint64) (chainKey, error) {
		n := 0
		for n < len(p.LogKeyRotations) && p.LogKeyRotations[n].Index < index {
			n++
		}
		vkey, _, err := FollowLogKeys(logKey, p.LogKeyRotations[:n])
		if err != nil {
			return chainKey{}, err
		}
		pub, v, err := LogPublicKey(vkey)
		return chainKey{vkey: vkey, pub: pub, note: v}, err
	}
	current, err := keyAt(cp.size)
	if err != nil {
		return nil, err
	}
	if n := len(p.LogKeyRotations); n > 0 && p.LogKeyRotations[n-1].Index >= cp.size {
		return nil, fmt.Errorf("the pack names a log key rotation at entry %d, beyond its checkpoint of %d entries", p.LogKeyRotations[n-1].Index, cp.size)
	}
	if err := signedBy(cp.note, current.note); err != nil {
		return nil, fmt.Errorf("pack checkpoint: not signed by the log key in force (%s): %w", current.vkey, err)
	}
	keys := newKeyChain(chainKey{vkey: logKey, pub: logPub, note: nv})
	rep := &PackReport{Change: p.Change, TreeSize: cp.size, Root: cp.root}
	included := func(pe PackEntry) (*evidence.Entry, error) {
		if pe.Index >= cp.size {
			return nil, fmt.Errorf("entry %d is beyond the checkpoint (size %d)", pe.Index, cp.size)
		}
		proof := make(tlog.RecordProof, len(pe.Proof))
		for i, h := range pe.Proof {
			if len(h) != tlog.HashSize {
				return nil, fmt.Errorf("entry %d: proof hash %d has %d bytes", pe.Index, i, len(h))
			}
			copy(proof[i][:], h)
		}
		if err := tlog.CheckRecord(proof, int64(cp.size), cp.root, int64(pe.Index), tlog.RecordHash(pe.Leaf)); err != nil {
			return nil, fmt.Errorf("entry %d is not in the signed tree: %w", pe.Index, err)
		}
		e, err := evidence.ParseLeaf(pe.Leaf)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", pe.Index, err)
		}
		if e.Index != pe.Index || e.Origin != p.Origin {
			return nil, fmt.Errorf("entry %d: the leaf says index %d of %q", pe.Index, e.Index, e.Origin)
		}
		return e, nil
	}

	// Trust in force, by the index from which it applies.
	type trustAt struct {
		from uint64
		v    *verifier.Verifier
	}
	var trust []trustAt
	for i, pe := range p.Trust {
		e, err := included(pe)
		if err != nil {
			return nil, fmt.Errorf("trust %w", err)
		}
		st, err := e.Statement()
		if err != nil {
			return nil, fmt.Errorf("trust entry %d: %w", pe.Index, err)
		}
		if k := st.Predicate.Kind; k != evidence.KindBootstrap && k != evidence.KindTrustUpdated {
			return nil, fmt.Errorf("trust entry %d is a %s record, not the genesis or a trust update", pe.Index, k)
		}
		if i == 0 && pe.Index != 0 {
			return nil, errors.New("trust entries must start with the genesis entry (index 0)")
		}
		if i > 0 && pe.Index <= p.Trust[i-1].Index {
			return nil, errors.New("trust entries are not in log order")
		}
		start, err := keyAt(pe.Index)
		if err != nil {
			return nil, err
		}
		keys.restart(start)
		v, err := logRecord(pe.Leaf, pe.Index, CheckOptions{Origin: p.Origin, LogKey: logKey}, keys, nil)
		if err != nil {
			return nil, fmt.Errorf("trust entry %d: %w", pe.Index, err)
		}
		if v != nil {
			trust = append(trust, trustAt{from: pe.Index + 1, v: v})
		}
	}

	var last uint64
	for i, pe := range p.Entries {
		if i > 0 && pe.Index <= last {
			return nil, errors.New("pack entries are not in log order")
		}
		last = pe.Index
		e, err := included(pe)
		if err != nil {
			return nil, err
		}
		st, err := e.Statement()
		if err != nil {
			return nil, err
		}
		if st.Predicate.ChangeID != p.Change {
			return nil, fmt.Errorf("entry %d is of change %q, not %q", pe.Index, st.Predicate.ChangeID, p.Change)
		}
		rep.Records++
		rep.Kinds = append(rep.Kinds, st.Predicate.Kind)
		var v *verifier.Verifier
		for _, t := range trust {
			if t.from <= pe.Index {
				v = t.v
			}
		}
		if v == nil {
			continue
		}
		verified, err := v.Verify(e.Envelope)
		if err != nil {
			return nil, fmt.Errorf("entry %d: the record does not verify under the trust in force: %w", pe.Index, err)
		}
		if err := checkMeta(e, verified); err != nil {
			return nil, fmt.Errorf("entry %d: %w", pe.Index, err)
		}
		if err := verifier.CheckRevocation(verified, e.ReceivedAt); err != nil {
			return nil, fmt.Errorf("entry %d: received after its key's revocation: %w", pe.Index, err)
		}
		rep.Signatures++
	}
	if rep.Records == 0 {
		return nil, errors.New("the pack holds no records")
	}
	return rep, nil
}
