package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// judgeFunc adapts a function to ingest.Judge.
type judgeFunc func(context.Context, *verifier.Verified) (ingest.Judgement, error)

func (f judgeFunc) Judge(ctx context.Context, v *verifier.Verified) (ingest.Judgement, error) {
	return f(ctx, v)
}

func withJudges(js ...ingest.Judge) serverOption {
	return func(_ *ledger.Config, c *ingest.Config) { c.Judges = append(c.Judges, js...) }
}

// Findings and the decision of every judge are appended with the entry and
// returned in the receipt; a duplicate's receipt leaves them out.
func TestJudgesAddFindingsAndDecision(t *testing.T) {
	decision := &evidence.Policy{Result: "deny", BundleSHA256: testPlan,
		Decisions: []evidence.Decision{{Result: "deny", Severity: "high", RuleID: "prod.db-replace", Message: "needs database owners"}}}
	s := newTestServer(t, withJudges(
		judgeFunc(func(_ context.Context, v *verifier.Verified) (ingest.Judgement, error) {
			return ingest.Judgement{Findings: []evidence.Finding{{Code: "approval.missing", Severity: "high",
				Evidence: map[string]string{"change": v.Statement.Predicate.ChangeID}}}}, nil
		}),
		judgeFunc(func(context.Context, *verifier.Verified) (ingest.Judgement, error) {
			return ingest.Judgement{Decision: decision, Findings: []evidence.Finding{{Code: "policy.deny"}}}, nil
		}),
	))
	body := s.signedPlan("CHG-J1")
	r := s.post(body, "application/json")
	if r.status != http.StatusCreated {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	rc := receipt(t, r)
	if len(rc.Findings) != 2 || rc.Findings[0].Code != "approval.missing" || rc.Findings[1].Code != "policy.deny" {
		t.Fatalf("receipt findings = %+v", rc.Findings)
	}
	if rc.Decision == nil || rc.PolicyDecisionSHA256 != decision.Digest() {
		t.Fatalf("receipt decision = %+v, digest %q", rc.Decision, rc.PolicyDecisionSHA256)
	}
	e, _ := s.entry(rc.Index)
	if len(e.Meta.Findings) != 2 || e.Meta.Findings[0].Evidence["change"] != "CHG-J1" {
		t.Fatalf("entry findings = %+v", e.Meta.Findings)
	}
	if e.Meta.Decision == nil || e.Meta.Decision.Digest() != decision.Digest() {
		t.Fatalf("entry decision = %+v", e.Meta.Decision)
	}

	dup := receipt(t, s.post(body, "application/json"))
	if !dup.Duplicate || dup.Index != rc.Index || dup.Findings != nil || dup.Decision != nil {
		t.Fatalf("duplicate receipt = %+v", dup)
	}
}

// A judge refuses only with a validation error (400); a judge that cannot
// read its state makes the post fail with 503, and nothing is appended.
func TestJudgeErrors(t *testing.T) {
	var fail error
	s := newTestServer(t, withJudges(judgeFunc(func(context.Context, *verifier.Verified) (ingest.Judgement, error) {
		return ingest.Judgement{}, fail
	})))
	before := s.log.Size()

	fail = &evidence.ValidationError{Problems: []evidence.FieldError{{Field: "predicate.exception.expiresAt", Reason: "required"}}}
	r := s.post(s.signedPlan("CHG-J2"), "application/json")
	if r.status != http.StatusBadRequest || errorBody(t, r).Code != "invalid_record" {
		t.Fatalf("validation refusal: %d %s", r.status, r.body)
	}

	fail = errors.New("state store unreachable")
	r = s.post(s.signedPlan("CHG-J3"), "application/json")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("judge failure: %d %s", r.status, r.body)
	}
	if contains(string(r.body), "unreachable") {
		t.Fatalf("judge failure leaks its cause: %s", r.body)
	}
	if s.log.Size() != before {
		t.Fatalf("log grew from %d to %d on refused records", before, s.log.Size())
	}
}

// The log's own records go through the same path, signed with the log key;
// the log key cannot sign a runner's kinds.
func TestRecorder(t *testing.T) {
	s := newTestServer(t)
	rec := s.h.Recorder(s.logKey.priv)
	tr := transition(evidence.KindPlanCreated, "CHG-J4", evidence.Target{Environment: "prod", Stack: stackA})
	tr.Kind, tr.Plan = evidence.KindGateDecided, nil
	tr.Gate = &evidence.Gate{Decision: "deny", PlanSHA256: testPlan, Reasons: []string{"approval.missing"}}
	rc, err := rec.Record(context.Background(), []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": testPlan}}}, tr)
	if err != nil {
		t.Fatalf("Record(gate.decided): %v", err)
	}
	if rc.Signer.Name != verifier.LogSigner || rc.Kind != evidence.KindGateDecided {
		t.Fatalf("receipt = %+v", rc)
	}
	pl := transition(evidence.KindPlanCreated, "CHG-J5", evidence.Target{Environment: "prod", Stack: stackA})
	if _, err := rec.Record(context.Background(), []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": testPlan}}}, pl); !errors.Is(err, verifier.ErrOutOfScope) {
		t.Fatalf("Record(plan.created) with the log key: %v, want ErrOutOfScope", err)
	}
}

// A runner that gives up while its record is judged is no server error: the
// refusal is logged below ERROR, while a judge that fails on its own still
// logs at ERROR.
func TestJudgeClientGone(t *testing.T) {
	s := newTestServer(t)
	entered := make(chan struct{}, 1)
	var failing atomic.Bool
	judgeBlocks := judgeFunc(func(ctx context.Context, _ *verifier.Verified) (ingest.Judgement, error) {
		if failing.Load() {
			return ingest.Judgement{}, errors.New("state store unreachable")
		}
		entered <- struct{}{}
		<-ctx.Done()
		return ingest.Judgement{}, ctx.Err()
	})
	v, err := verifier.New(s.trust, s.logKey.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	h := ingest.New(ingest.Config{Log: s.log, Verifier: v, Judges: []ingest.Judge{judgeBlocks},
		Clock: func() time.Time { return serverNow }, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	mux := http.NewServeMux()
	h.Register(mux)
	served := make(chan struct{}, 1)
	srv := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		served <- struct{}{}
	}))

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv+"/v1/records", bytes.NewReader(s.signedPlan("CHG-J6")))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("post answered %d; want the client to have given up", resp.StatusCode)
	}
	<-served
	if out := logs.String(); strings.Contains(out, "level=ERROR") || !strings.Contains(out, "client went away") {
		t.Fatalf("a client going away was logged as:\n%s", out)
	}

	failing.Store(true)
	resp, err := http.Post(srv+"/v1/records", "application/json", bytes.NewReader(s.signedPlan("CHG-J7")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-served
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("judge failure: status %d, logs:\n%s", resp.StatusCode, logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
