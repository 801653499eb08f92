// Package query is Evident's read side. This file serves the log itself:
// signed checkpoints, entries with their exact leaf bytes, and RFC 6962
// inclusion and consistency proofs, so that an auditor can check any answer
// without trusting the server.
package query

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/api"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

// Log is the ledger as the read side needs it.
type Log interface {
	Checkpoint() ([]byte, error)
	CheckpointSize() uint64
	VerifierKey() string
	Leaf(ctx context.Context, index uint64) ([]byte, error)
	InclusionProof(ctx context.Context, index, size uint64) ([][32]byte, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][32]byte, error)
	Lookup(ctx context.Context, q ledger.Query) ([]uint64, error)
}

// ProofHandler serves the log endpoints.
type ProofHandler struct {
	log    Log
	logger *slog.Logger
}

// NewProofHandler returns the handler for checkpoints, entries and proofs.
func NewProofHandler(log Log, logger *slog.Logger) *ProofHandler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ProofHandler{log: log, logger: logger}
}

// Register adds the routes to mux.
func (h *ProofHandler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/checkpoint", h.checkpoint)
	mux.HandleFunc("GET /v1/log-key", h.logKey)
	mux.HandleFunc("GET /v1/log-keys", h.logKeys)
	mux.HandleFunc("GET /v1/entries/{index}", h.entry)
	mux.HandleFunc("GET /v1/entries", h.lookup)
	mux.HandleFunc("GET /v1/proofs/inclusion", h.inclusion)
	mux.HandleFunc("GET /v1/proofs/consistency", h.consistency)
}

func (h *ProofHandler) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := h.log.Checkpoint()
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(cp) // a failed write means the client left
}

// logKey serves the key to pin: the genesis key, the log's identity, from
// which every later key follows (GET /v1/log-keys).
func (h *ProofHandler) logKey(w http.ResponseWriter, r *http.Request) {
	key := h.log.VerifierKey()
	if rl, ok := h.log.(rotatingLog); ok {
		if keys := rl.LogKeys(); len(keys) > 0 {
			key = keys[0].VerifierKey
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(key + "\n"))
}

// rotatingLog is a log that knows its chain of keys (*ledger.Log).
type rotatingLog interface {
	LogKeys() []ledger.LogKey
	Rotations(ctx context.Context) ([]ledger.Rotation, error)
}

// rotationSteps returns the proofs of the log key rotations at entries
// below size.
func rotationSteps(ctx context.Context, rl rotatingLog, size uint64) ([]api.LogKeyStep, error) {
	rots, err := rl.Rotations(ctx)
	if err != nil {
		return nil, err
	}
	var steps []api.LogKeyStep
	for _, rot := range rots {
		if rot.Index >= size {
			break
		}
		proof := make([][]byte, len(rot.Proof))
		for i := range rot.Proof {
			proof[i] = rot.Proof[i][:]
		}
		steps = append(steps, api.LogKeyStep{Index: rot.Index, Leaf: rot.Leaf, Checkpoint: string(rot.Checkpoint), Proof: proof})
	}
	return steps, nil
}

func (h *ProofHandler) logKeys(w http.ResponseWriter, r *http.Request) {
	out := api.LogKeys{Genesis: h.log.VerifierKey(), Current: h.log.VerifierKey(), Rotations: []api.LogKeyStep{}}
	if rl, ok := h.log.(rotatingLog); ok {
		if keys := rl.LogKeys(); len(keys) > 0 {
			out.Genesis = keys[0].VerifierKey
		}
		steps, err := rotationSteps(r.Context(), rl, ^uint64(0))
		if err != nil {
			h.fail(w, err)
			return
		}
		out.Rotations = append(out.Rotations, steps...)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

func (h *ProofHandler) entry(w http.ResponseWriter, r *http.Request) {
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		badRequest(w, "index must be a non-negative integer")
		return
	}
	leaf, err := h.log.Leaf(r.Context(), index)
	if err != nil {
		h.fail(w, err)
		return
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		h.fail(w, fmt.Errorf("stored entry %d is damaged: %w", index, err))
		return
	}
	entryHash := evidence.EntryHash(leaf)
	leafHash := tlog.RecordHash(leaf)
	writeJSON(w, http.StatusOK, api.Entry{
		Index:        index,
		EntryHash:    hex.EncodeToString(entryHash[:]),
		LeafHash:     hex.EncodeToString(leafHash[:]),
		PrevHash:     hex.EncodeToString(e.PrevHash[:]),
		Leaf:         leaf,
		Envelope:     e.Envelope,
		Signer:       e.Meta.Signer,
		RecordDigest: e.Meta.RecordDigest,
		Findings:     e.Meta.Findings,
		ReceivedAt:   e.ReceivedAt,
	})
}

// lookup serves GET /v1/entries?change=…|environment=…|kind=…|actor=…|stack=…
// with optional from/to (RFC 3339, environment only) and limit.
func (h *ProofHandler) lookup(w http.ResponseWriter, r *http.Request) {
	q := ledger.Query{Limit: 100}
	set := 0
	for _, t := range [...]struct{ param, term string }{
		{"change", ledger.TermChange}, {"environment", ledger.TermEnvironment}, {"kind", ledger.TermKind},
		{"actor", ledger.TermActor}, {"stack", ledger.TermStack},
	} {
		if v := r.URL.Query().Get(t.param); v != "" {
			q.Name, q.Value = t.term, v
			set++
		}
	}
	if set != 1 {
		badRequest(w, "give exactly one of change, environment, kind, actor, stack")
		return
	}
	for _, b := range []struct {
		param string
		t     *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if v := r.URL.Query().Get(b.param); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				badRequest(w, b.param+" must be an RFC 3339 time")
				return
			}
			*b.t = t
		}
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			badRequest(w, "limit must be between 1 and 1000")
			return
		}
		q.Limit = n
	}
	idx, err := h.log.Lookup(r.Context(), q)
	if err != nil {
		h.fail(w, err)
		return
	}
	if idx == nil {
		idx = []uint64{}
	}
	out := map[string]any{"indexes": idx}
	if d := damagedEntries(h.log); len(d) > 0 {
		out["damagedEntries"] = d
		out["warning"] = damageWarning(d)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *ProofHandler) inclusion(w http.ResponseWriter, r *http.Request) {
	index, err1 := uintParam(r, "index", 0, false)
	size, err2 := uintParam(r, "size", 0, true)
	if err := errors.Join(err1, err2); err != nil {
		badRequest(w, err.Error())
		return
	}
	if size == 0 {
		size = h.log.CheckpointSize()
	}
	start := time.Now()
	proof, err := h.log.InclusionProof(r.Context(), index, size)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Server-Timing", fmt.Sprintf("proof;dur=%.3f", float64(time.Since(start).Microseconds())/1000))
	writeJSON(w, http.StatusOK, toProof(proof))
}

func (h *ProofHandler) consistency(w http.ResponseWriter, r *http.Request) {
	from, err1 := uintParam(r, "from", 0, false)
	to, err2 := uintParam(r, "to", 0, false)
	if err := errors.Join(err1, err2); err != nil {
		badRequest(w, err.Error())
		return
	}
	proof, err := h.log.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toProof(proof))
}

func toProof(p [][32]byte) api.Proof {
	out := api.Proof{Hashes: make([][]byte, len(p))}
	for i := range p {
		out.Hashes[i] = p[i][:]
	}
	return out
}

func uintParam(r *http.Request, name string, def uint64, optional bool) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		if optional {
			return def, nil
		}
		return 0, fmt.Errorf("%s is required", name)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s must be a non-negative integer", name)
	}
	return n, nil
}

func (h *ProofHandler) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error(), "code": "not_found"})
	case errors.Is(err, ledger.ErrEmpty):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error(), "code": "empty"})
	default:
		h.logger.Error("read failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error reading the log", "code": "internal"})
	}
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg, "code": "bad_request"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the status is sent; a failed write means the client left
}

// damageReporter is a log that knows which of its entries it found
// unreadable (*ledger.Log).
type damageReporter interface {
	Damaged() []uint64
}

// damagedEntries lists the entries the log could not read when it opened:
// an answer drawn from the index leaves them out, and must say so.
func damagedEntries(log any) []uint64 {
	if d, ok := log.(damageReporter); ok {
		return d.Damaged()
	}
	return nil
}

func damageWarning(d []uint64) string {
	return fmt.Sprintf("%d entries of this log cannot be read from its segment files (%v): answers from the index leave them out; the operator should run evident verify and restore them (docs/faults.md)", len(d), d)
}

// WitnessedCheckpoint serves the latest checkpoint the log's witnesses
// cosigned (witness.Collector.Witnessed): the log's signed note with their
// cosignature lines under its own. witnessed is nil when the log has no
// witnesses.
func WitnessedCheckpoint(witnessed func() []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if witnessed == nil {
			http.Error(w, "this log has no witnesses configured", http.StatusNotFound)
			return
		}
		cp := witnessed()
		if cp == nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "no checkpoint has gathered the witnesses' quorum yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(cp) // a failed write means the client left
	})
}
