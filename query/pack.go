package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

// Pack builds the evidence pack of a change as id may see it: its visible
// records with inclusion proofs against the latest signed checkpoint. An
// auditor's pack also carries the genesis and trust entries so record
// signatures can be checked offline; a tenant's does not (they are
// log-wide). Records appended after the checkpoint are left for a later
// pack. With witnesses, the checkpoint is the latest one they cosigned, so
// that the pack passes a witness policy. It returns ledger.ErrNotFound when
// no record of the change is visible and covered.
func (g *GraphQL) Pack(ctx context.Context, id *Identity, change string) (*audit.Pack, error) {
	cpv, err := g.packCheckpoint()
	if err != nil {
		return nil, err
	}
	tl, err := g.timeline(ctx, id, change)
	if err != nil {
		return nil, err
	}
	p := &audit.Pack{Format: audit.PackFormat, Origin: g.store.Origin(), LogKey: g.store.VerifierKey(), Change: change, Checkpoint: cpv.Note}
	if rl, ok := g.store.(rotatingLog); ok {
		// The pack names the genesis key, and the rotations from it to the
		// key that signs its checkpoint.
		if keys := rl.LogKeys(); len(keys) > 0 {
			p.LogKey = keys[0].VerifierKey
		}
		if p.LogKeyRotations, err = rotationSteps(ctx, rl, cpv.Size); err != nil {
			return nil, err
		}
	}
	entry := func(i uint64, leaf []byte) (audit.PackEntry, error) {
		h, err := g.store.InclusionProof(ctx, i, cpv.Size)
		if err != nil {
			return audit.PackEntry{}, err
		}
		pe := audit.PackEntry{Index: i, Leaf: leaf, Proof: make([][]byte, len(h))}
		for j := range h {
			pe.Proof[j] = h[j][:]
		}
		return pe, nil
	}
	var last uint64
	for _, r := range tl {
		if r.Index >= cpv.Size {
			break
		}
		pe, err := entry(r.Index, r.Leaf)
		if err != nil {
			return nil, err
		}
		p.Entries = append(p.Entries, pe)
		last = r.Index
	}
	if len(p.Entries) == 0 {
		return nil, fmt.Errorf("change %q: %w", change, ledger.ErrNotFound)
	}
	if id.Role == RoleAuditor {
		trust := []uint64{0}
		for _, k := range []evidence.Kind{evidence.KindTrustUpdated} {
			res, err := g.store.Search(ctx, ledger.Search{Driver: ledger.Query{Name: ledger.TermKind, Value: string(k)}, Limit: 10_000, Budget: 10_000})
			if err != nil {
				return nil, err
			}
			for _, h := range res.Hits {
				if h.Index < last {
					trust = append(trust, h.Index)
				}
			}
		}
		for _, i := range trust {
			leaf, err := g.store.Leaf(ctx, i)
			if err != nil {
				return nil, err
			}
			pe, err := entry(i, leaf)
			if err != nil {
				return nil, err
			}
			p.Trust = append(p.Trust, pe)
		}
	}
	return p, nil
}

// packCheckpoint is the checkpoint a pack proves against: the latest
// witnessed one, with its cosignatures, when the log has witnesses and they
// have cosigned one; the latest signed one otherwise.
func (g *GraphQL) packCheckpoint() (*checkpointView, error) {
	if g.cfg.Witnessed == nil {
		return g.checkpoint()
	}
	note := g.cfg.Witnessed()
	if note == nil {
		return g.checkpoint()
	}
	cp, err := checkpoint.Parse(note, g.store.Origin())
	if err != nil {
		return nil, internal(fmt.Errorf("witnessed checkpoint: %w", err))
	}
	return &checkpointView{Origin: cp.Origin, Note: string(note), Size: cp.Size, Root: cp.Root}, nil
}

// servePack serves GET /v1/packs/{change} with the caller's credentials.
func (g *GraphQL) servePack(w http.ResponseWriter, r *http.Request) {
	id, err := g.cfg.Auth.Authenticate(r)
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error(), "code": "unauthenticated"})
		return
	}
	if id.Role == RoleRunner {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": ErrForbidden.Error(), "code": "forbidden"})
		return
	}
	change := r.PathValue("change")
	if err := evidence.CheckChangeID(change); err != nil {
		badRequest(w, err.Error())
		return
	}
	if g.cfg.Access != nil {
		if err := g.cfg.Access.Record(AccessRecord{Time: g.cfg.Clock(), Subject: id.Subject, Role: id.Role, Operation: "pack", Query: "pack " + change, Status: "ok"}); err != nil {
			g.logger.Error("access log", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the access log cannot be written", "code": "unavailable"})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	p, err := g.Pack(ctx, id, change)
	switch {
	case errors.Is(err, ledger.ErrNotFound), errors.Is(err, ledger.ErrEmpty):
		// The same answer whether the change does not exist or is another tenant's.
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no records of this change are visible to you under a signed checkpoint", "code": "not_found"})
		return
	case err != nil:
		g.logger.Error("pack", "change", change, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error reading the log", "code": "internal"})
		return
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "evidence-pack-"+sanitize(change)+".json"))
	writeJSON(w, http.StatusOK, p)
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '/' {
			b[i] = '_'
		}
	}
	return string(b)
}
