package policies_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/approvals"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/policies"
	"evident.dev/evident/verifier"
)

const (
	origin  = "evident.test/policies"
	commit  = "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"
	planSHA = "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"
	stack   = "prod/aws/account-payments-prod/ap-southeast-1/rds-orders"
)

// t0 is when the test's records happen; the server's clock starts an hour
// later and tests move it.
var t0 = time.Date(2026, 7, 3, 8, 0, 0, 0, time.UTC)

// judgeAdapter makes a policies.Judge an ingest.Judge, as evident serve does.
type judgeAdapter struct{ j *policies.Judge }

func (a judgeAdapter) Judge(ctx context.Context, v *verifier.Verified) (ingest.Judgement, error) {
	r, err := a.j.Judge(ctx, v)
	return ingest.Judgement{Findings: r.Findings, Decision: r.Decision}, err
}

// server is the real write path: a ledger in a temporary directory, the
// ingest handler with the policy judge over HTTP on 127.0.0.1, and a
// tracker tailing the log.
type server struct {
	t       testing.TB
	log     *ledger.Log
	url     string
	key     ed25519.PrivateKey
	set     *policies.Set
	tracker *policies.Tracker
	clock   atomic.Int64
	logKey  ed25519.PrivateKey
	keys    map[string]ed25519.PrivateKey // approvers' keys by e-mail
	signer  *checkpoint.Signer
	trust   verifier.TrustConfig
}

// restartTrust runs what a server start with another policy set runs.
func (s *server) restartTrust(set *policies.Set) {
	s.t.Helper()
	info := set.Info()
	err := ingest.EnsureTrust(context.Background(), s.log, s.logKey, s.trust, ingest.Genesis{Operator: "erin@example.com",
		Origin: origin, LogKey: s.signer.VerifierKey(), Now: s.now(), Policies: &info})
	if err != nil {
		s.t.Fatal(err)
	}
}

// approver is a person whose key signs their approvals, in groups.
type approver struct {
	name, email string
	groups      []string
}

func newServer(t testing.TB, src policies.Source, approvers ...approver) *server {
	t.Helper()
	ctx := context.Background()
	s := &server{t: t}
	s.clock.Store(t0.Add(time.Hour).UnixNano())
	seed := sha256.Sum256([]byte("log"))
	logKey := ed25519.NewKeyFromSeed(seed[:])
	seed = sha256.Sum256([]byte("runner"))
	s.key = ed25519.NewKeyFromSeed(seed[:])
	signer, err := checkpoint.NewSigner(origin, logKey)
	if err != nil {
		t.Fatal(err)
	}
	s.logKey = logKey
	s.log, err = ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: origin, Signer: signer, CacheMB: 8})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	trust := verifier.TrustConfig{Runners: []verifier.Runner{{Name: "ci",
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Scope:     verifier.Scope{Environments: []string{"*"}}}}}
	s.keys = map[string]ed25519.PrivateKey{}
	for _, a := range approvers {
		seed := sha256.Sum256([]byte(a.name))
		k := ed25519.NewKeyFromSeed(seed[:])
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		s.keys[a.email] = k
		trust.Runners = append(trust.Runners, verifier.Runner{Name: a.name, Approver: a.email,
			PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
			Scope:     verifier.Scope{Environments: []string{"*"}}})
		if trust.Groups == nil {
			trust.Groups = map[string][]string{}
		}
		for _, g := range a.groups {
			trust.Groups[g] = append(trust.Groups[g], a.email)
		}
	}
	s.trust, s.signer = trust, signer
	if s.set, err = policies.Load(ctx, src); err != nil {
		t.Fatal(err)
	}
	info := s.set.Info()
	err = ingest.EnsureTrust(ctx, s.log, logKey, trust, ingest.Genesis{Operator: "erin@example.com", Origin: origin,
		LogKey: signer.VerifierKey(), Now: s.now(), Policies: &info})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(trust, logKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	s.tracker = policies.NewTracker(s.log, nil, nil)
	tctx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- s.tracker.Run(tctx) }()
	approvalJudge, err := approvals.New(ingest.ChangeLog(s.log), approvals.Config{Groups: trust.Groups})
	if err != nil {
		t.Fatal(err)
	}
	j, err := policies.NewJudge(policies.JudgeConfig{Set: s.set, Log: s.log, Exceptions: s.tracker, Approvals: approvalJudge, Clock: s.now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ingest.New(ingest.Config{Log: s.log, Verifier: v, Clock: s.now,
		Judges: []ingest.Judge{ingest.ApprovalJudge{Approvals: approvalJudge}, judgeAdapter{j}}}).Register(mux)
	srv := httptest.NewServer(mux)
	s.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-stopped; err != nil && err != context.Canceled {
			t.Errorf("tracker: %v", err)
		}
		if err := s.log.Close(); err != nil {
			t.Errorf("close log: %v", err)
		}
	})
	return s
}

func (s *server) now() time.Time { return time.Unix(0, s.clock.Load()).UTC() }

func (s *server) setNow(t time.Time) { s.clock.Store(t.UnixNano()) }

// answer is the server's answer to a posted record.
type answer struct {
	status  int
	receipt api.Receipt
	refusal api.ErrorBody
}

// post signs the transition as the runner and posts it.
func (s *server) post(tr evidence.Transition) answer {
	s.t.Helper()
	payload, err := json.Marshal(evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       []evidence.Subject{{Name: "change:" + tr.ChangeID, Digest: map[string]string{"sha256": planSHA}}},
		PredicateType: evidence.PredicateType,
		Predicate:     tr,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	key := s.key
	if tr.Approval != nil && s.keys[tr.Approval.Approver] != nil {
		key = s.keys[tr.Approval.Approver]
	}
	env, err := verifier.SignEnvelope(key, payload)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := http.Post(s.url+"/v1/records", "application/json", bytes.NewReader(env))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	a := answer{status: resp.StatusCode}
	target := any(&a.receipt)
	if resp.StatusCode >= 300 {
		target = &a.refusal
	}
	if err := json.Unmarshal(body, target); err != nil {
		s.t.Fatalf("answer %d %s: %v", resp.StatusCode, body, err)
	}
	return a
}

// mustPost posts and requires the record to be appended.
func (s *server) mustPost(tr evidence.Transition) api.Receipt {
	s.t.Helper()
	a := s.post(tr)
	if a.status != http.StatusCreated {
		s.t.Fatalf("post %s: %d %+v", tr.Kind, a.status, a.refusal)
	}
	return a.receipt
}

// entry reads an appended entry back from the log.
func (s *server) entry(i uint64) *evidence.Entry {
	s.t.Helper()
	e, err := s.log.Entry(context.Background(), i)
	if err != nil {
		s.t.Fatal(err)
	}
	return e
}

// sync waits until the tracker has read every entry.
func (s *server) sync() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.tracker.WaitFor(ctx, s.log.Size()); err != nil {
		s.t.Fatalf("tracker did not catch up: %v", err)
	}
}

// record returns a valid transition of a kind for a change.
func record(kind evidence.Kind, change, env string) evidence.Transition {
	tr := evidence.Transition{
		Kind: kind, ChangeID: change, OccurredAt: t0, Actor: "repo:example/infra-live:pull_request",
		Source: evidence.Source{Repository: "infra-live", PullRequest: 4812, CommitSHA: commit},
		Target: evidence.Target{Environment: env, Cloud: "aws", Account: "account-payments-" + env, Stack: stack, Service: "orders"},
	}
	switch kind {
	case evidence.KindChangeOpened:
		tr.Change = &evidence.Change{Author: "alice@example.com"}
	case evidence.KindPlanCreated:
		tr.Plan = &evidence.Plan{PlanSHA256: planSHA, Engine: "opentofu"}
		tr.Artifacts = []evidence.Artifact{{Name: "plan", Digest: "sha256:" + planSHA}}
	case evidence.KindApplyStarted, evidence.KindApplyCompleted:
		tr.Apply = &evidence.Apply{PlanSHA256: planSHA}
	case evidence.KindVerificationCompleted:
		tr.Verification = &evidence.Verification{Result: "pass"}
	case evidence.KindSyncSucceeded:
		tr.Sync = &evidence.Sync{Revision: commit}
	case evidence.KindBreakglassOpened, evidence.KindBreakglassClosed:
		tr.Emergency = true
		tr.Breakglass = &evidence.Breakglass{Incident: "INC-7", Reason: "orders database is down"}
	default:
		panic(fmt.Sprintf("record: no block for %s", kind))
	}
	return tr
}

func approval(change, approver string, groups ...string) evidence.Transition {
	tr := record(evidence.KindPlanCreated, change, "prod")
	tr.Kind, tr.Plan, tr.Artifacts, tr.Actor = evidence.KindApprovalGranted, nil, nil, approver
	tr.Approval = &evidence.Approval{CommitSHA: commit, PlanSHA256: planSHA, Approver: approver, Groups: groups,
		ApprovedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}
	return tr
}

// bind binds an approval to the plan's policy decision, as a real one is.
func bind(tr evidence.Transition, policyDecisionSHA256 string) evidence.Transition {
	tr.Approval.PolicyDecisionSHA256 = policyDecisionSHA256
	return tr
}

func exception(change, id, rule, scope string, expires time.Time) evidence.Transition {
	tr := record(evidence.KindPlanCreated, change, "prod")
	tr.Kind, tr.Plan, tr.Artifacts, tr.Actor = evidence.KindExceptionGranted, nil, nil, "security@example.com"
	tr.Exception = &evidence.Exception{ID: id, RuleID: rule, Scope: scope, Owner: "carol@example.com",
		Justification: "public artifact bucket for signed release assets", ApprovedBy: []string{"security@example.com"},
		CompensatingControls: []string{"CloudFront signed URLs"}, ExpiresAt: expires}
	return tr
}

// decision returns the decision of a rule in a receipt, failing if absent.
func decision(t testing.TB, rc api.Receipt, rule string) evidence.Decision {
	t.Helper()
	if rc.Decision == nil {
		t.Fatalf("entry %d has no policy decision", rc.Index)
	}
	for _, d := range rc.Decision.Decisions {
		if d.RuleID == rule {
			return d
		}
	}
	t.Fatalf("entry %d: no decision of %s in %+v", rc.Index, rule, rc.Decision.Decisions)
	return evidence.Decision{}
}

func hasRule(rc api.Receipt, rule string) bool {
	if rc.Decision == nil {
		return false
	}
	for _, d := range rc.Decision.Decisions {
		if d.RuleID == rule {
			return true
		}
	}
	return false
}

func finding(rc api.Receipt, code string) (evidence.Finding, bool) {
	for _, f := range rc.Findings {
		if f.Code == code {
			return f, true
		}
	}
	return evidence.Finding{}, false
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
