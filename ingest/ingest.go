// Package ingest is Evident's write side: the HTTP endpoint runners post
// signed records to. It bounds and decodes the body, has the verifier
// authenticate it, and appends it to the ledger, answering only once the
// entry is durable. Bad input always gets a 4xx with a JSON error naming what
// is wrong, never a 5xx, and never reaches the log.
package ingest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"evident.dev/evident/api"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// Appender is the log as ingest needs it. Append must return only once the
// record is durable, and be safe for concurrent use.
type Appender interface {
	Append(ctx context.Context, rec ledger.Record) (ledger.Receipt, error)
}

// Verifier authenticates a posted envelope. Safe for concurrent use.
type Verifier interface {
	Verify(raw []byte) (*verifier.Verified, error)
}

// Config wires the handler.
type Config struct {
	Log      Appender
	Verifier Verifier
	// Judges assess each verified record before it is appended, in order.
	Judges []Judge
	Logger *slog.Logger
	// MaxBodyBytes bounds a posted record. Default 1 MiB.
	MaxBodyBytes int64
	// MaxClockSkew is how far in the future occurredAt may be. Default 10m.
	MaxClockSkew time.Duration
	// MaxBackfill is how far in the past occurredAt is believed when a
	// record is judged (verifier.JudgedAt). Default verifier.MaxBackfill.
	MaxBackfill time.Duration
	// Clock is the server's time; nil means time.Now.
	Clock func() time.Time
	// Origin is the log's origin. A record naming another log origin
	// (predicate.logOrigin) is refused: it was signed for another log.
	Origin string
	// RequireOrigin refuses records that name no log origin, so that no
	// record signed for this log can be replayed into another and none
	// signed for no log in particular is taken.
	RequireOrigin bool
	// Transport, if set, names the runner a request's client certificate
	// authenticates (mTLS): a record must then be signed by that runner.
	Transport TransportIdentity
	// Observer, if set, is told the outcome and latency of every posted
	// record (the service-health metrics).
	Observer Observer
	// RateLimit bounds each signer's posting rate; the zero value does not.
	RateLimit RateLimit
}

// TransportIdentity maps a request's transport authentication to a runner.
// Safe for concurrent use.
type TransportIdentity interface {
	// Runner returns the runner the request's verified client certificate
	// maps to; ok is false when the request carries no client certificate.
	// An error means a certificate was presented that maps to no runner.
	Runner(r *http.Request) (name string, ok bool, err error)
}

// errTransport marks a record whose signer is not the runner the transport
// authenticated.
var errTransport = errors.New("transport identity mismatch")

// Observer learns how each POST /v1/records ended. result is "accepted",
// "duplicate", the refusal's error code (e.g. "untrusted_signer"), or
// "abandoned" when the client left before an answer; took is the time to
// answer. Called once per request, concurrently; it must not block.
type Observer interface {
	IngestObserved(result string, took time.Duration)
}

// outcomeWriter remembers what a request was answered, for the Observer.
type outcomeWriter struct {
	http.ResponseWriter
	status int
	code   string // the refusal's code, set by writeError
}

func (w *outcomeWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *outcomeWriter) result() string {
	switch {
	case w.code != "":
		return w.code
	case w.status == http.StatusCreated:
		return "accepted"
	case w.status == http.StatusOK:
		return "duplicate"
	default:
		return "abandoned"
	}
}

// Handler serves POST /v1/records.
type Handler struct {
	cfg     Config
	limiter *limiter // nil: no rate limit
}

// New returns the ingest handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxBackfill <= 0 {
		cfg.MaxBackfill = verifier.MaxBackfill
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = 10 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Handler{cfg: cfg, limiter: newLimiter(cfg.RateLimit, cfg.Clock)}
}

// Register adds the handler's routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/records", h.postRecord)
}

func (h *Handler) postRecord(w http.ResponseWriter, r *http.Request) {
	// http.MaxBytesReader closes the connection after an oversized body
	// only when given the server's own writer, not a wrapper.
	raw := w
	if h.cfg.Observer != nil {
		ow := &outcomeWriter{ResponseWriter: w}
		start := time.Now()
		defer func() { h.cfg.Observer.IngestObserved(ow.result(), time.Since(start)) }()
		w = ow
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !acceptedType(mt) {
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
				fmt.Sprintf("Content-Type %q: post a DSSE envelope with Content-Type: application/json, or a Sigstore bundle with %s", ct, verifier.BundleMediaType), nil)
			return
		}
	}
	body, err := readBody(http.MaxBytesReader(raw, r.Body, h.cfg.MaxBodyBytes), r.ContentLength, h.cfg.MaxBodyBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("record larger than %d bytes", h.cfg.MaxBodyBytes), nil)
			return
		}
		writeError(w, http.StatusBadRequest, "truncated_body", "could not read the request body: "+err.Error(), nil)
		return
	}
	rec, verified, err := h.prepare(r.Context(), body)
	if err == nil {
		err = h.checkTransport(r, verified)
	}
	if err != nil {
		h.refuse(w, r, err)
		return
	}
	receipt, err := h.cfg.Log.Append(r.Context(), rec)
	if err != nil {
		h.appendFailed(w, r, err)
		return
	}
	status := http.StatusCreated
	if receipt.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, newReceipt(receipt, rec, verified))
}

// readBody reads a request body into a buffer sized by its declared
// length, when the client gave one: growing a buffer from zero would copy a
// typical record several times. net/http ends the body at that length and
// reports a shorter one as io.ErrUnexpectedEOF.
func readBody(r io.Reader, declared, limit int64) ([]byte, error) {
	if declared <= 0 || declared > limit {
		return io.ReadAll(r)
	}
	buf := make([]byte, declared)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func newReceipt(receipt ledger.Receipt, rec ledger.Record, verified *verifier.Verified) api.Receipt {
	p := verified.Statement.Predicate
	out := api.Receipt{
		Index:      receipt.Index,
		EntryHash:  hex.EncodeToString(receipt.EntryHash[:]),
		LeafHash:   hex.EncodeToString(receipt.LeafHash[:]),
		ReceivedAt: receipt.ReceivedAt,
		Duplicate:  receipt.Duplicate,
		Signer:     verified.Signer,
		Kind:       p.Kind,
		ChangeID:   p.ChangeID,
	}
	if !receipt.Duplicate {
		out.Findings, out.Decision = rec.Findings, rec.Decision
		if rec.Decision != nil {
			out.PolicyDecisionSHA256 = rec.Decision.Digest()
		}
	}
	return out
}

func acceptedType(mt string) bool {
	switch mt {
	case "application/json", "application/vnd.dsse.envelope.v1+json", "application/vnd.dsse+json", verifier.BundleMediaType:
		return true
	}
	return false
}

// revocationMargin is how long before a key's revocation time ingest starts
// refusing its records.
const revocationMargin = 5 * time.Second

// errFuture marks a record claiming to have happened in the future.
var errFuture = errors.New("occurredAt is in the future")

// prepare authenticates a body, has the judges assess it, and turns it into a
// ledger record.
func (h *Handler) prepare(ctx context.Context, body []byte) (ledger.Record, *verifier.Verified, error) {
	v, err := h.cfg.Verifier.Verify(body)
	if err != nil {
		return ledger.Record{}, nil, err
	}
	// The ledger stamps receivedAt a little after this check; refusing from
	// revocationMargin before the revocation time keeps every accepted
	// record's receivedAt before it, as an auditor's check requires.
	if err := verifier.CheckRevocation(v, h.cfg.Clock().Add(revocationMargin)); err != nil {
		return ledger.Record{}, nil, err
	}
	if err := h.checkOrigin(v.Statement.Predicate.LogOrigin); err != nil {
		return ledger.Record{}, nil, err
	}
	received := h.cfg.Clock()
	if at := v.Statement.Predicate.OccurredAt; at.After(received.Add(h.cfg.MaxClockSkew)) {
		return ledger.Record{}, nil, fmt.Errorf("%w: predicate.occurredAt %s is more than %s ahead of the server clock",
			errFuture, at.Format(time.RFC3339), h.cfg.MaxClockSkew)
	}
	// Every judge decides the validity of approvals and exceptions at this
	// one instant (verifier.JudgedAt).
	v.JudgedAt = verifier.JudgedAt(v.Statement.Predicate.OccurredAt, received, h.cfg.MaxBackfill)
	// The server's own records (log-signed kinds) are not rate limited:
	// refusing them would refuse the server's own bookkeeping.
	if !v.Statement.Predicate.Kind.LogWritten() {
		if err := h.limiter.admit(v.Signer); err != nil {
			return ledger.Record{}, nil, err
		}
	}
	judged, err := judge(ctx, h.cfg.Judges, v)
	if err != nil {
		return ledger.Record{}, nil, err
	}
	// The leaf holds the envelope on one line. Verify has checked it is
	// valid JSON, so JSON without whitespace is stored as posted.
	envelope := body
	if bytes.ContainsAny(body, " \t\r\n") {
		v := jsontext.Value(bytes.Clone(body))
		if err := v.Compact(); err != nil {
			return ledger.Record{}, nil, fmt.Errorf("%w: %v", verifier.ErrMalformed, err)
		}
		envelope = v
	}
	return ledger.Record{
		Envelope:  envelope,
		Digest:    v.Digest,
		Signer:    v.Signer,
		Findings:  judged.Findings,
		Decision:  judged.Decision,
		Terms:     ledger.TermsFor(v.Statement, evidence.EntryMeta{Findings: judged.Findings, Decision: judged.Decision}),
		Statement: v.Statement,
	}, v, nil
}

// errWrongLog marks a record signed for another log, or for no log when the
// log requires one.
var errWrongLog = errors.New("record not for this log")

// checkOrigin refuses a record bound to another log (origin binding: the
// signature covers logOrigin, so it cannot be changed in transit).
func (h *Handler) checkOrigin(origin string) error {
	switch {
	case origin == "" && h.cfg.RequireOrigin:
		return fmt.Errorf("%w: predicate.logOrigin is required: this log (%q) takes only records signed for it", errWrongLog, h.cfg.Origin)
	case origin != "" && h.cfg.Origin != "" && origin != h.cfg.Origin:
		return fmt.Errorf("%w: predicate.logOrigin %q names another log; this log is %q", errWrongLog, clip(origin, 256), h.cfg.Origin)
	}
	return nil
}

// checkTransport refuses a record whose signature identity disagrees with
// the runner its client certificate authenticates: a stolen signing key is
// useless without that runner's certificate, and the reverse.
func (h *Handler) checkTransport(r *http.Request, v *verifier.Verified) error {
	if h.cfg.Transport == nil {
		return nil
	}
	name, ok, err := h.cfg.Transport.Runner(r)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v", errTransport, err)
	case !ok:
		return nil
	case v.Signer.Name != name || v.Keyless:
		return fmt.Errorf("%w: the client certificate authenticates runner %q but the record is signed by %q", errTransport, name, v.Signer.Name)
	}
	return nil
}

// refuse maps an authentication or validation error to its 4xx.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *evidence.ValidationError
	var limited *errRateLimited
	switch {
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", limited.retryAfterSeconds())
		writeError(w, http.StatusTooManyRequests, "rate_limited", err.Error(), nil)
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, "invalid_record", err.Error(), invalid.Problems)
	case errors.Is(err, evidence.ErrMalformed), errors.Is(err, verifier.ErrMalformed):
		writeError(w, http.StatusBadRequest, "malformed", err.Error(), nil)
	case errors.Is(err, errFuture):
		writeError(w, http.StatusBadRequest, "clock_skew", err.Error(), nil)
	case errors.Is(err, errWrongLog):
		writeError(w, http.StatusForbidden, "wrong_log", err.Error(), nil)
	case errors.Is(err, errTransport):
		writeError(w, http.StatusForbidden, "transport_mismatch", err.Error(), nil)
	case errors.Is(err, verifier.ErrUntrusted):
		writeError(w, http.StatusForbidden, "untrusted_signer", err.Error(), nil)
	case errors.Is(err, verifier.ErrOutOfScope):
		writeError(w, http.StatusForbidden, "out_of_scope", err.Error(), nil)
	case errors.Is(err, errJudge) && r.Context().Err() != nil:
		// The runner left while its record was judged; it posts again.
		h.cfg.Logger.Debug("judging stopped: the client went away", "err", err)
	case errors.Is(err, errJudge):
		h.cfg.Logger.Error("judging a record failed", "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "judge_unavailable", "the record could not be judged; retry later", nil)
	default:
		// Every verifier error wraps a sentinel; reaching here is a bug, but
		// the input is still refused rather than half-accepted.
		h.cfg.Logger.Error("unclassified refusal", "err", err)
		writeError(w, http.StatusBadRequest, "refused", err.Error(), nil)
	}
}

func (h *Handler) appendFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ledger.ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "overloaded", "the ledger is at capacity; retry after 1 second", nil)
	case errors.Is(err, ledger.ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the ledger is shutting down", nil)
	case r.Context().Err() != nil:
		// The client left; it can post again and get the entry's receipt.
	default:
		h.cfg.Logger.Error("append failed", "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "storage_error", "the record was not stored; retry later", nil)
	}
}

// Bounds of a refusal: messages quote the input, which may be as large as
// the body limit, and must not echo it back whole.
const (
	maxErrorMessage = 2048
	maxErrorFields  = 64
	maxFieldText    = 256
)

func writeError(w http.ResponseWriter, status int, code, msg string, fields []evidence.FieldError) {
	if ow, ok := w.(*outcomeWriter); ok {
		ow.code = code
	}
	if len(fields) > maxErrorFields {
		fields = fields[:maxErrorFields]
	}
	clipped := make([]evidence.FieldError, len(fields))
	for i, f := range fields {
		clipped[i] = evidence.FieldError{Field: clip(f.Field, maxFieldText), Reason: clip(f.Reason, maxFieldText)}
	}
	writeJSON(w, status, api.ErrorBody{Error: clip(msg, maxErrorMessage), Code: code, Fields: clipped})
}

// clip shortens s to at most n bytes, on a UTF-8 boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = strings.ToValidUTF8(s[:n], "")
	return s + "…"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the status is sent; a failed write means the client left
}
