// Package witness has the log's checkpoints cosigned by independent
// witnesses (C2SP tlog-witness and tlog-cosignature), and decides, for
// everyone who reads a checkpoint, whether its cosignatures are enough.
//
// A witness keeps, for each log it knows, the latest checkpoint it
// cosigned, and cosigns a new one only if a consistency proof shows that it
// extends that one. A log that shows one history to some readers and
// another to others (a split view) then cannot get both cosigned by the
// same witness: whoever requires that witness's cosignature sees only the
// history the witness saw. Collector submits the log's checkpoints; Policy
// is the one rule that judges a cosigned checkpoint, used alike by the
// client, the proof and verify commands, and evidence packs.
package witness

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// ErrNotWitnessed is wrapped by every error of a checkpoint that does not
// carry the cosignatures a Policy asks for.
var ErrNotWitnessed = errors.New("not witnessed")

// Policy is a set of witnesses and how many of them must have cosigned a
// checkpoint for it to be trusted.
type Policy struct {
	witnesses []note.Verifier
	quorum    int
}

// NewPolicy returns the policy "quorum of the witnesses with these verifier
// keys" (vkeys: name+hash+base64, C2SP signed-note, of a cosignature/v1
// Ed25519 key, type 0x04; a plain Ed25519 note key, type 0x01, is taken as
// the same key's cosignature/v1 key). A quorum of 0 means all of them.
func NewPolicy(vkeys []string, quorum int) (*Policy, error) {
	if len(vkeys) == 0 {
		return nil, errors.New("witness policy: no witness key")
	}
	p := &Policy{quorum: quorum}
	for _, k := range vkeys {
		v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("witness policy: witness key %q: %w", k, err)
		}
		if slices.ContainsFunc(p.witnesses, func(o note.Verifier) bool { return o.Name() == v.Name() }) {
			return nil, fmt.Errorf("witness policy: two keys of the witness %q", v.Name())
		}
		p.witnesses = append(p.witnesses, v)
	}
	if p.quorum == 0 {
		p.quorum = len(p.witnesses)
	}
	if p.quorum < 0 || p.quorum > len(p.witnesses) {
		return nil, fmt.Errorf("witness policy: a quorum of %d out of %d witnesses", quorum, len(p.witnesses))
	}
	return p, nil
}

// Quorum is how many witnesses must have cosigned.
func (p *Policy) Quorum() int { return p.quorum }

// Names are the witnesses' names, in the order their keys were given.
func (p *Policy) Names() []string {
	names := make([]string, len(p.witnesses))
	for i, v := range p.witnesses {
		names[i] = v.Name()
	}
	return names
}

// Check returns the names of the policy's witnesses whose cosignature on
// the signed note verifies, and an error wrapping ErrNotWitnessed when they
// are fewer than the quorum, or when a cosignature by one of the policy's
// keys does not verify: a note carrying a cosignature over another text is
// a forgery, or one witness's view of a different history pasted onto this
// one, and is refused outright rather than counted short. The log's own
// signature is not checked here (checkpoint.Open does).
func (p *Policy) Check(signed []byte) ([]string, error) {
	n, err := note.Open(signed, note.VerifierList(p.witnesses...))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return nil, fmt.Errorf("%w: the checkpoint carries no cosignature of the %d witnesses the policy names (%s); it needs %d",
			ErrNotWitnessed, len(p.witnesses), strings.Join(p.Names(), ", "), p.quorum)
	case errors.As(err, &invalid):
		return nil, fmt.Errorf("%w: the cosignature of witness %s+%08x does not verify over this checkpoint: a forged or transplanted cosignature",
			ErrNotWitnessed, invalid.Name, invalid.Hash)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrNotWitnessed, err)
	}
	var cosigned []string
	for _, s := range n.Sigs {
		if !slices.Contains(cosigned, s.Name) {
			cosigned = append(cosigned, s.Name)
		}
	}
	if len(cosigned) < p.quorum {
		return cosigned, fmt.Errorf("%w: the checkpoint is cosigned by %d of the witnesses the policy names (%s), it needs %d",
			ErrNotWitnessed, len(cosigned), strings.Join(cosigned, ", "), p.quorum)
	}
	return cosigned, nil
}
