package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// Decider decides gate requests from the ledger's state. Safe for concurrent
// use; an error wrapping verifier.ErrMalformed means a bad request.
type Decider interface {
	Decide(ctx context.Context, req approvals.GateRequest, now time.Time) (*approvals.GateDecision, error)
}

// GateConfig wires the apply gate.
type GateConfig struct {
	Decider Decider
	// Recorder appends each decision as a gate.decided entry.
	Recorder *Recorder
	Logger   *slog.Logger
	// Clock is the server's time; nil means time.Now.
	Clock func() time.Time
}

// Gate serves POST /v1/gate/apply: runners ask it before they apply a plan.
// Every decision, allow or deny, is itself recorded in the log before it is
// answered, so the answer a runner acted on is evidence too.
type Gate struct {
	cfg GateConfig
}

// NewGate returns the apply gate handler.
func NewGate(cfg GateConfig) *Gate {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Gate{cfg: cfg}
}

// Register adds the gate's route to mux.
func (g *Gate) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/gate/apply", g.apply)
}

// maxGateRequest bounds a gate request body.
const maxGateRequest = 64 << 10

func (g *Gate) apply(w http.ResponseWriter, r *http.Request) {
	var req approvals.GateRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxGateRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "malformed", "gate request: "+err.Error(), nil)
		return
	}
	answer, err := g.Decide(r.Context(), req)
	var invalid *evidence.ValidationError
	switch {
	case errors.As(err, &invalid):
		// The request names something a record cannot hold (e.g. an
		// over-long target field): the decision could not be recorded.
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error(), invalid.Problems)
	case errors.Is(err, verifier.ErrMalformed):
		writeError(w, http.StatusBadRequest, "malformed", err.Error(), nil)
	case err != nil && r.Context().Err() != nil:
		// The runner left; it asks again.
	case err != nil:
		g.cfg.Logger.Error("gate decision failed", "change", req.ChangeID, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "gate_unavailable", "the gate could not decide; retry later (do not apply)", nil)
	default:
		writeJSON(w, http.StatusOK, answer)
	}
}

// Decide decides a request and records the decision. It returns only once
// the gate.decided entry is durable.
func (g *Gate) Decide(ctx context.Context, req approvals.GateRequest) (*api.GateAnswer, error) {
	now := g.cfg.Clock().UTC()
	d, err := g.cfg.Decider.Decide(ctx, req, now)
	if err != nil {
		return nil, err
	}
	src := d.Source
	if src.CommitSHA != req.CommitSHA {
		src = evidence.Source{Repository: src.Repository, CommitSHA: req.CommitSHA}
	}
	reasons := make([]string, len(d.Reasons))
	for i, s := range d.Reasons {
		reasons[i] = clip(s, 1000) // the record's limit per reason is 1024
	}
	t := evidence.Transition{
		Kind:       evidence.KindGateDecided,
		ChangeID:   req.ChangeID,
		OccurredAt: now,
		Actor:      req.Actor,
		Source:     src,
		Target:     d.Target,
		RiskClass:  d.RiskClass,
		Emergency:  d.Emergency,
		Gate:       &evidence.Gate{Decision: d.Decision, PlanSHA256: req.PlanSHA256, Reasons: reasons},
	}
	subjects := []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": req.PlanSHA256}}}
	receipt, err := g.cfg.Recorder.Record(ctx, subjects, t)
	if err != nil {
		return nil, fmt.Errorf("record the gate decision: %w", err)
	}
	return &api.GateAnswer{GateDecision: *d, Entry: receipt}, nil
}
