package ingest

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"

	"evident.dev/evident/api"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// Recorder appends the log's own records (gate decisions, anchors): signed
// with the log key, then verified, judged and appended exactly like a posted
// record, so they carry the same findings and the same proofs.
type Recorder struct {
	h   *Handler
	key crypto.Signer
}

// Recorder returns a recorder that signs with the log key. The handler's
// verifier must trust that key as the log's.
func (h *Handler) Recorder(logKey crypto.Signer) *Recorder {
	return &Recorder{h: h, key: logKey}
}

// Record signs t as an in-toto statement about subjects and appends it,
// returning once it is durable.
func (r *Recorder) Record(ctx context.Context, subjects []evidence.Subject, t evidence.Transition) (api.Receipt, error) {
	if t.LogOrigin == "" {
		// The log's own records are bound to it, like any posted record.
		t.LogOrigin = r.h.cfg.Origin
	}
	st := evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       subjects,
		PredicateType: evidence.PredicateType,
		Predicate:     t,
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return api.Receipt{}, fmt.Errorf("encode %s record: %w", t.Kind, err)
	}
	env, err := verifier.SignEnvelope(r.key, payload)
	if err != nil {
		return api.Receipt{}, fmt.Errorf("sign %s record: %w", t.Kind, err)
	}
	rec, verified, err := r.h.prepare(ctx, env)
	if err != nil {
		return api.Receipt{}, fmt.Errorf("the log's own %s record: %w", t.Kind, err)
	}
	receipt, err := r.h.cfg.Log.Append(ctx, rec)
	if err != nil {
		return api.Receipt{}, fmt.Errorf("append %s record: %w", t.Kind, err)
	}
	return newReceipt(receipt, rec, verified), nil
}
