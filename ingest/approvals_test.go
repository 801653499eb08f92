package ingest_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/approvals"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/keylesstest"
)

const (
	planA   = "1111111111111111111111111111111111111111111111111111111111111111"
	planB   = "2222222222222222222222222222222222222222222222222222222222222222"
	commitA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	commitB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

	alice = "alice@example.com" // the author
	bob   = "bob@example.com"   // platform-infra
	carol = "carol@example.com" // database-owners
	dave  = "dave@example.com"  // keyless, database-owners

	googleIssuer = "https://accounts.google.com"
)

// approvalServer is a real log (Badger, segment files) behind the real ingest
// handler and apply gate on 127.0.0.1, with the approval judge wired as
// evident serve wires it. Records are signed with real keys and, for dave,
// real Sigstore bundles from the virtual Sigstore.
type approvalServer struct {
	t        testing.TB
	log      *ledger.Log
	keys     map[string]testKey
	sigstore *keylesstest.Sigstore
	url      string
	base     time.Time    // records happen at base + offsets
	clock    atomic.Int64 // the server's clock (unix ns)
	appr     *approvals.Approvals
	mux      *http.ServeMux
}

// policyStandIn stands in for the policy engine (another package, built
// separately): it decides plan.created records, requiring database owners
// for high-risk plans, so that requiredApprovers come from a real policy
// decision in the plan entry.
func policyStandIn(_ context.Context, v *verifier.Verified) (ingest.Judgement, error) {
	p := v.Statement.Predicate
	if p.Kind != evidence.KindPlanCreated || p.RiskClass != "high" {
		return ingest.Judgement{}, nil
	}
	return ingest.Judgement{Decision: &evidence.Policy{Result: "allow", Decisions: []evidence.Decision{{
		Result: "allow", RuleID: "prod.database.requires-db-owner", RequiredApprovers: []string{"database-owners"},
	}}}}, nil
}

func newApprovalServer(t testing.TB, cfg approvals.Config) *approvalServer {
	t.Helper()
	s := &approvalServer{t: t, keys: map[string]testKey{}}
	s.base = time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	s.clock.Store(s.base.Add(time.Hour).UnixNano())
	var err error
	if s.sigstore, err = keylesstest.New(); err != nil {
		t.Fatal(err)
	}
	root, err := s.sigstore.TrustedRoot()
	if err != nil {
		t.Fatal(err)
	}
	logKey := fixedKey(t, "ed25519", "log")
	for _, n := range []string{"ci", "bob", "carol", "alice", "relay", "stranger"} {
		s.keys[n] = fixedKey(t, "ed25519", n)
	}
	all := verifier.Scope{Environments: []string{"*"}}
	trust := verifier.TrustConfig{
		Runners: []verifier.Runner{
			{Name: "ci", PublicKey: s.keys["ci"].pubPEM, Scope: all},
			{Name: "bob", PublicKey: s.keys["bob"].pubPEM, Scope: all, Approver: bob},
			{Name: "carol", PublicKey: s.keys["carol"].pubPEM, Scope: all, Approver: carol},
			{Name: "alice", PublicKey: s.keys["alice"].pubPEM, Scope: all, Approver: alice},
			{Name: "review-relay", PublicKey: s.keys["relay"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}, RelayApprovals: true}},
		},
		Identities: []verifier.Identity{{Name: "dave", SAN: dave, Issuer: googleIssuer, Scope: all}},
		Sigstore:   &verifier.SigstoreTrust{TrustedRoot: root},
		Groups: map[string][]string{
			"database-owners": {carol, dave},
			"platform-infra":  {bob, alice},
		},
	}
	signer, err := checkpoint.NewSigner(testOrigin, logKey.priv.(ed25519.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Unix(0, s.clock.Load()).UTC() }
	s.log, err = ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: testOrigin, Signer: signer, CacheMB: 8, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.log.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := ingest.EnsureTrust(context.Background(), s.log, logKey.priv, trust, ingest.Genesis{
		Operator: "erin@example.com", Origin: testOrigin, LogKey: signer.VerifierKey(), Now: now(),
	}); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(trust, logKey.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Groups = trust.Groups
	if s.appr, err = approvals.New(ingest.ChangeLog(s.log), cfg); err != nil {
		t.Fatal(err)
	}
	h := ingest.New(ingest.Config{
		Log: s.log, Verifier: v, Clock: now,
		Judges: []ingest.Judge{judgeFunc(policyStandIn), ingest.ApprovalJudge{Approvals: s.appr}},
	})
	mux := http.NewServeMux()
	h.Register(mux)
	ingest.NewGate(ingest.GateConfig{Decider: s.appr, Recorder: h.Recorder(logKey.priv), Clock: now}).Register(mux)
	s.mux = mux
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *approvalServer) setClock(t time.Time) { s.clock.Store(t.UnixNano()) }

// at is a time offset from the scenario's base.
func (s *approvalServer) at(d time.Duration) time.Time { return s.base.Add(d) }

func (s *approvalServer) statement(p evidence.Transition) []byte {
	s.t.Helper()
	b, err := json.Marshal(evidence.Statement{
		Type: evidence.StatementType, PredicateType: evidence.PredicateType, Predicate: p,
		Subject: []evidence.Subject{{Name: "change", Digest: map[string]string{"sha256": planA}}},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// post signs p with the named key ("dave" signs keyless) and posts it,
// expecting a new entry.
func (s *approvalServer) post(signer string, p evidence.Transition) api.Receipt {
	s.t.Helper()
	payload := s.statement(p)
	var body []byte
	ct := "application/json"
	if signer == "dave" {
		b, err := s.sigstore.Bundle(dave, googleIssuer, payload, keylesstest.Options{})
		if err != nil {
			s.t.Fatal(err)
		}
		body, ct = b, verifier.BundleMediaType
	} else {
		body = sign(s.t, s.keys[signer], payload)
	}
	resp, err := http.Post(s.url+"/v1/records", ct, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("post %s by %s: %d %s", p.Kind, signer, resp.StatusCode, b)
	}
	var rc api.Receipt
	if err := json.Unmarshal(b, &rc); err != nil {
		s.t.Fatal(err)
	}
	return rc
}

// gate asks the apply gate.
func (s *approvalServer) gate(req approvals.GateRequest) (int, api.GateAnswer, []byte) {
	s.t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := http.Post(s.url+"/v1/gate/apply", "application/json", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a api.GateAnswer
	if resp.StatusCode == http.StatusOK {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			s.t.Fatalf("gate answer %s: %v", b, err)
		}
	}
	return resp.StatusCode, a, b
}

// change is one change's records, built in the order a pipeline posts them.
type change struct {
	s      *approvalServer
	id     string
	target evidence.Target
	risk   string
	policy string // the plan's policyDecisionSha256
}

func (s *approvalServer) newChange(id, risk string) *change {
	c := &change{s: s, id: id, risk: risk, target: evidence.Target{Environment: "prod", Account: "account-payments-prod", Stack: "prod/rds-orders"}}
	p := c.base(evidence.KindChangeOpened, s.at(0), "ci")
	p.Change = &evidence.Change{Author: alice, Title: "orders: pg15 parameters"}
	s.post("ci", p)
	return c
}

func (c *change) base(kind evidence.Kind, at time.Time, actor string) evidence.Transition {
	return evidence.Transition{
		Kind: kind, ChangeID: c.id, OccurredAt: at, Actor: actor,
		Source:    evidence.Source{Repository: "infra-live", PullRequest: 4812, CommitSHA: commitA},
		Target:    c.target,
		RiskClass: c.risk,
	}
}

func (c *change) plan(planSHA string, at time.Time) api.Receipt {
	p := c.base(evidence.KindPlanCreated, at, "ci")
	p.Plan = &evidence.Plan{PlanSHA256: planSHA, Engine: "opentofu"}
	rc := c.s.post("ci", p)
	c.policy = rc.PolicyDecisionSHA256
	return rc
}

type approvalEdit func(*evidence.Approval)

func (c *change) approve(signer, approver string, at time.Time, edits ...approvalEdit) api.Receipt {
	p := c.base(evidence.KindApprovalGranted, at, approver)
	p.Approval = &evidence.Approval{
		PullRequest: 4812, CommitSHA: commitA, PlanSHA256: planA, PolicyDecisionSHA256: c.policy,
		Approver: approver, ApprovedAt: at, ExpiresAt: at.Add(4 * time.Hour),
	}
	for _, e := range edits {
		e(p.Approval)
	}
	return c.s.post(signer, p)
}

func (c *change) revoke(signer, approver string, at time.Time) api.Receipt {
	p := c.base(evidence.KindApprovalRevoked, at, approver)
	p.Approval = &evidence.Approval{CommitSHA: commitA, PlanSHA256: planA, Approver: approver, ApprovedAt: at, Reason: "found a problem"}
	return c.s.post(signer, p)
}

func (c *change) apply(planSHA, commit string, at time.Time) api.Receipt {
	p := c.base(evidence.KindApplyCompleted, at, "ci")
	p.Source.CommitSHA = commit
	p.Apply = &evidence.Apply{PlanSHA256: planSHA, Engine: "opentofu", StartedAt: at, CompletedAt: at}
	return c.s.post("ci", p)
}

func (c *change) breakglass(kind evidence.Kind, at time.Time, expires time.Time) api.Receipt {
	p := c.base(kind, at, "oncall@example.com")
	p.Breakglass = &evidence.Breakglass{Incident: "INC-7781", Reason: "orders database down", ExpiresAt: expires}
	return c.s.post("ci", p)
}

func codes(fs []evidence.Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Code)
	}
	return out
}

func wantCodes(t *testing.T, rc api.Receipt, want ...string) {
	t.Helper()
	got := codes(rc.Findings)
	slices.Sort(got)
	slices.Sort(want)
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("entry %d (%s) findings = %v, want %v; %+v", rc.Index, rc.Kind, got, want, rc.Findings)
	}
}

func findingOf(rc api.Receipt, code string) *evidence.Finding {
	for i := range rc.Findings {
		if rc.Findings[i].Code == code {
			return &rc.Findings[i]
		}
	}
	return nil
}

func defaultApprovalConfig() approvals.Config {
	return approvals.Config{
		Rules: []approvals.Rule{{Environment: "prod", Groups: []string{"platform-infra"}}},
	}
}

// Everything in order: the author's change, a high-risk plan whose policy
// decision requires database owners, approvals by a database owner (a
// registered key) and a platform engineer, the apply of exactly that plan and
// commit. No finding; the receipt of the plan names the decision digest the
// approvals bound.
func TestApprovalBindingInOrder(t *testing.T) {
	s := newApprovalServer(t, defaultApprovalConfig())
	c := s.newChange("CHG-OK", "high")
	rc := c.plan(planA, s.at(time.Minute))
	if rc.Decision == nil || c.policy == "" {
		t.Fatalf("the plan entry has no policy decision: %+v", rc)
	}
	wantCodes(t, c.approve("carol", carol, s.at(2*time.Minute)))
	wantCodes(t, c.apply(planA, commitA, s.at(3*time.Minute)))

	// A keyless approver (a Sigstore bundle whose certificate identity is
	// the approver's e-mail) counts the same way.
	k := s.newChange("CHG-KEYLESS", "high")
	k.plan(planA, s.at(time.Minute))
	ap := k.approve("dave", dave, s.at(2*time.Minute))
	if ap.Signer.Name != dave || ap.Signer.Issuer != googleIssuer {
		t.Errorf("keyless approval signer = %+v", ap.Signer)
	}
	wantCodes(t, ap)
	wantCodes(t, k.apply(planA, commitA, s.at(3*time.Minute)))

	// A relay service may post others' approvals.
	r := s.newChange("CHG-RELAY", "high")
	r.plan(planA, s.at(time.Minute))
	wantCodes(t, r.approve("relay", carol, s.at(2*time.Minute)))
	wantCodes(t, r.apply(planA, commitA, s.at(3*time.Minute)))

	// A low-risk change has no policy requirement: the configured rule for
	// prod (platform-infra) applies.
	l := s.newChange("CHG-LOW", "low")
	l.plan(planA, s.at(time.Minute))
	l.approve("bob", bob, s.at(2*time.Minute))
	wantCodes(t, l.apply(planA, commitA, s.at(3*time.Minute)))
}

func TestApprovalFindings(t *testing.T) {
	s := newApprovalServer(t, defaultApprovalConfig())
	t.Run("missing", func(t *testing.T) {
		c := s.newChange("CHG-MISSING", "high")
		c.plan(planA, s.at(time.Minute))
		rc := c.apply(planA, commitA, s.at(3*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing)
	})
	t.Run("plan-mismatch", func(t *testing.T) {
		c := s.newChange("CHG-PLAN", "high")
		c.plan(planA, s.at(time.Minute))
		c.plan(planB, s.at(90*time.Second))
		c.approve("carol", carol, s.at(2*time.Minute))
		rc := c.apply(planB, commitA, s.at(3*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalPlanMismatch, approvals.FindingApprovalGroupMissing)
		f := findingOf(rc, approvals.FindingApprovalPlanMismatch)
		if f == nil || f.Evidence["planSha256"] != planB || f.Evidence["approvalEntry"] == "" {
			t.Errorf("plan-mismatch evidence: %+v", f)
		}
	})
	t.Run("commit-mismatch", func(t *testing.T) {
		c := s.newChange("CHG-COMMIT", "high")
		c.plan(planA, s.at(time.Minute))
		c.approve("carol", carol, s.at(2*time.Minute))
		rc := c.apply(planA, commitB, s.at(3*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalCommitMismatch, approvals.FindingApprovalGroupMissing)
	})
	t.Run("policy-mismatch", func(t *testing.T) {
		c := s.newChange("CHG-POLICY", "high")
		c.plan(planA, s.at(time.Minute))
		c.approve("carol", carol, s.at(2*time.Minute), func(a *evidence.Approval) { a.PolicyDecisionSHA256 = planB })
		rc := c.apply(planA, commitA, s.at(3*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalPolicyMismatch, approvals.FindingApprovalGroupMissing)
	})
	t.Run("expired", func(t *testing.T) {
		c := s.newChange("CHG-EXPIRED", "high")
		c.plan(planA, s.at(time.Minute))
		c.approve("carol", carol, s.at(2*time.Minute), func(a *evidence.Approval) { a.ExpiresAt = s.at(10 * time.Minute) })
		rc := c.apply(planA, commitA, s.at(20*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalExpired, approvals.FindingApprovalGroupMissing)
	})
	t.Run("revoked", func(t *testing.T) {
		c := s.newChange("CHG-REVOKED", "high")
		c.plan(planA, s.at(time.Minute))
		c.approve("carol", carol, s.at(2*time.Minute))
		c.revoke("carol", carol, s.at(150*time.Second))
		rc := c.apply(planA, commitA, s.at(3*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalRevoked, approvals.FindingApprovalGroupMissing)
	})
	t.Run("self-approved", func(t *testing.T) {
		c := s.newChange("CHG-SELF", "low")
		c.plan(planA, s.at(time.Minute))
		c.approve("alice", alice, s.at(2*time.Minute))
		rc := c.apply(planA, commitA, s.at(3*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalSelfApproved, approvals.FindingApprovalGroupMissing)
	})
	t.Run("group-missing", func(t *testing.T) {
		c := s.newChange("CHG-GROUP", "high")
		c.plan(planA, s.at(time.Minute))
		c.approve("bob", bob, s.at(2*time.Minute))
		rc := c.apply(planA, commitA, s.at(3*time.Minute))
		wantCodes(t, rc, approvals.FindingApprovalGroupMissing)
		f := findingOf(rc, approvals.FindingApprovalGroupMissing)
		if f.Evidence["missingGroups"] != "database-owners" || f.Evidence["membershipSha256"] != s.appr.MembershipSHA256() ||
			f.Evidence["requirementFrom"] != "policy:"+c.policy {
			t.Errorf("group-missing evidence = %+v", f.Evidence)
		}
	})
	t.Run("unauthorized signer", func(t *testing.T) {
		c := s.newChange("CHG-FORGED", "high")
		c.plan(planA, s.at(time.Minute))
		// bob's key signs an approval naming carol: recorded, flagged, and
		// it does not count.
		wantCodes(t, c.approve("bob", carol, s.at(2*time.Minute)), approvals.FindingApprovalUnauthorized)
		wantCodes(t, c.apply(planA, commitA, s.at(3*time.Minute)), approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing)
	})
	t.Run("findings are stored with the entry", func(t *testing.T) {
		c := s.newChange("CHG-STORED", "high")
		c.plan(planA, s.at(time.Minute))
		rc := c.apply(planA, commitA, s.at(3*time.Minute))
		e, err := s.log.Entry(context.Background(), rc.Index)
		if err != nil {
			t.Fatal(err)
		}
		if got := codes(e.Meta.Findings); !slices.Contains(got, approvals.FindingApprovalMissing) {
			t.Errorf("stored findings = %v", got)
		}
	})
}

func TestBreakglass(t *testing.T) {
	s := newApprovalServer(t, approvals.Config{
		Rules:            []approvals.Rule{{Environment: "prod", Groups: []string{"platform-infra"}}},
		BreakglassReview: time.Hour,
	})
	// Emergency apply, then the review arrives in time: flagged emergency,
	// no review-missing.
	c := s.newChange("CHG-BG-OK", "high")
	c.plan(planA, s.at(time.Minute))
	c.breakglass(evidence.KindBreakglassOpened, s.at(2*time.Minute), s.at(2*time.Hour))
	rc := c.apply(planA, commitA, s.at(3*time.Minute))
	wantCodes(t, rc, approvals.FindingEmergency)
	if f := findingOf(rc, approvals.FindingEmergency); f.Evidence["incident"] != "INC-7781" {
		t.Errorf("emergency evidence = %+v", f.Evidence)
	}
	c.approve("carol", carol, s.at(30*time.Minute))
	s.setClock(s.at(90 * time.Minute))
	wantCodes(t, c.breakglass(evidence.KindBreakglassClosed, s.at(90*time.Minute), time.Time{}))

	// No review within the window: the next record of the change after the
	// window says so, once.
	m := s.newChange("CHG-BG-NOREVIEW", "high")
	m.plan(planA, s.at(time.Minute))
	m.breakglass(evidence.KindBreakglassOpened, s.at(2*time.Minute), s.at(2*time.Hour))
	applied := m.apply(planA, commitA, s.at(3*time.Minute))
	wantCodes(t, applied, approvals.FindingEmergency)
	m.approve("carol", carol, s.at(80*time.Minute)) // too late
	closed := m.breakglass(evidence.KindBreakglassClosed, s.at(90*time.Minute), time.Time{})
	wantCodes(t, closed, approvals.FindingBreakglassReviewMissing)
	if f := findingOf(closed, approvals.FindingBreakglassReviewMissing); f.Evidence["applyEntry"] != itoa(applied.Index) {
		t.Errorf("review-missing evidence = %+v", f.Evidence)
	}
	// After the break-glass closed, applies need approvals again; the
	// overdue review is not flagged twice.
	wantCodes(t, m.apply(planA, commitA, s.at(100*time.Minute)))

	// The gate denies the change's applies while a review is overdue, and
	// allows again once an approval of the plan arrives, even late.
	g := s.newChange("CHG-BG-GATE", "high")
	g.plan(planA, s.at(time.Minute))
	g.breakglass(evidence.KindBreakglassOpened, s.at(2*time.Minute), s.at(2*time.Hour))
	wantCodes(t, g.apply(planA, commitA, s.at(3*time.Minute)), approvals.FindingEmergency)
	wantCodes(t, g.breakglass(evidence.KindBreakglassClosed, s.at(70*time.Minute), time.Time{}), approvals.FindingBreakglassReviewMissing)
	s.setClock(s.at(75 * time.Minute))
	req := approvals.GateRequest{ChangeID: g.id, CommitSHA: commitA, PlanSHA256: planA, Target: g.target, Actor: "ci"}
	if _, a, _ := s.gate(req); a.Decision != approvals.Deny || !hasPrefix(a.Reasons, approvals.FindingBreakglassReviewMissing) {
		t.Errorf("gate with an overdue review: %+v", a)
	}
	g.approve("carol", carol, s.at(76*time.Minute))
	s.setClock(s.at(77 * time.Minute))
	if _, a, _ := s.gate(req); a.Decision != approvals.Allow {
		t.Errorf("gate after the late review: %+v", a)
	}

	// An expired break-glass does not cover an apply.
	x := s.newChange("CHG-BG-EXPIRED", "high")
	x.plan(planA, s.at(time.Minute))
	x.breakglass(evidence.KindBreakglassOpened, s.at(2*time.Minute), s.at(4*time.Minute))
	wantCodes(t, x.apply(planA, commitA, s.at(5*time.Minute)), approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing)
}

func itoa(i uint64) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestGate(t *testing.T) {
	s := newApprovalServer(t, approvals.Config{
		Rules:          []approvals.Rule{{Environment: "prod", Groups: []string{"platform-infra"}}},
		MaxPlanAge:     time.Hour,
		MaxApprovalAge: 2 * time.Hour,
	})
	c := s.newChange("CHG-GATE", "high")
	c.plan(planA, s.at(time.Minute))
	// The request names only the environment and stack, as `evident gate
	// check` without further flags does: the decision is recorded with the
	// plan's whole target.
	req := approvals.GateRequest{ChangeID: c.id, CommitSHA: commitA, PlanSHA256: planA,
		Target: evidence.Target{Environment: c.target.Environment, Stack: c.target.Stack}, Actor: "ci"}
	s.setClock(s.at(5 * time.Minute))

	// Refused: the policy requires database owners and nobody approved.
	status, a, body := s.gate(req)
	if status != http.StatusOK || a.Decision != approvals.Deny {
		t.Fatalf("gate = %d %s", status, body)
	}
	if !slices.Equal(a.RequiredApprovers, []string{"database-owners"}) || len(a.Approvals) != 0 || !hasPrefix(a.Reasons, approvals.FindingApprovalMissing) {
		t.Errorf("deny answer = %+v", a)
	}
	// The decision itself is an entry, signed by the log.
	e, err := s.log.Entry(context.Background(), a.Entry.Index)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.Statement()
	if err != nil {
		t.Fatal(err)
	}
	if st.Predicate.Kind != evidence.KindGateDecided || st.Predicate.Gate.Decision != approvals.Deny ||
		st.Predicate.Gate.PlanSHA256 != planA || e.Meta.Signer.Name != verifier.LogSigner || a.Entry.Kind != evidence.KindGateDecided {
		t.Errorf("gate.decided entry = %+v by %+v", st.Predicate, e.Meta.Signer)
	}
	if st.Predicate.Target != c.target || c.target.Account == "" {
		t.Errorf("gate.decided target = %+v, want the plan's %+v", st.Predicate.Target, c.target)
	}

	// Approved by a database owner: allowed, naming the approval.
	ap := c.approve("carol", carol, s.at(6*time.Minute))
	s.setClock(s.at(7 * time.Minute))
	_, a, _ = s.gate(req)
	if a.Decision != approvals.Allow || len(a.Approvals) != 1 || a.Approvals[0].Entry != ap.Index || a.Approvals[0].Approver != carol ||
		!slices.Equal(a.Approvals[0].Groups, []string{"database-owners"}) {
		t.Errorf("allow answer = %+v", a)
	}

	// Another plan, another commit, another target: denied.
	for name, tc := range map[string]struct {
		edit func(*approvals.GateRequest)
		want string
	}{
		"other plan":   {func(r *approvals.GateRequest) { r.PlanSHA256 = planB }, "plan.missing"},
		"other commit": {func(r *approvals.GateRequest) { r.CommitSHA = commitB }, "plan.commit-mismatch"},
		"other env":    {func(r *approvals.GateRequest) { r.Target.Environment = "staging" }, "plan.target-mismatch"},
	} {
		r := req
		tc.edit(&r)
		if _, a, _ := s.gate(r); a.Decision != approvals.Deny || !hasPrefix(a.Reasons, tc.want) {
			t.Errorf("%s: %+v, want a %s denial", name, a, tc.want)
		}
	}

	// Freshness: the plan is older than an hour at decision time.
	s.setClock(s.at(70 * time.Minute))
	if _, a, _ := s.gate(req); a.Decision != approvals.Deny || !hasPrefix(a.Reasons, "plan.stale") {
		t.Errorf("stale plan: %+v", a)
	}
	// A fresh plan of the same hash, then the approval grows too old.
	c.plan(planA, s.at(69*time.Minute))
	s.setClock(s.at(130 * time.Minute))
	if _, a, _ := s.gate(req); a.Decision != approvals.Deny || !hasPrefix(a.Reasons, approvals.FindingApprovalExpired) {
		t.Errorf("stale approval: %+v", a)
	}

	// Under break-glass the gate allows, flagged as an emergency.
	c.breakglass(evidence.KindBreakglassOpened, s.at(131*time.Minute), s.at(4*time.Hour))
	s.setClock(s.at(132 * time.Minute))
	if _, a, _ := s.gate(req); a.Decision != approvals.Allow || !a.Emergency || !hasPrefix(a.Reasons, "emergency") {
		t.Errorf("break-glass: %+v", a)
	}

	// Bad requests are refused without a decision.
	for _, body := range []string{`{`, `{"changeId":"x"}`, `{"changeId":"x","commitSha":"` + commitA + `","planSha256":"` + planA + `","target":{"environment":"prod"},"actor":"ci","extra":1}`} {
		resp, err := http.Post(s.url+"/v1/gate/apply", "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("gate %s = %d, want 400", body, resp.StatusCode)
		}
	}
}

func hasPrefix(reasons []string, prefix string) bool {
	return slices.ContainsFunc(reasons, func(r string) bool { return len(r) >= len(prefix) && r[:len(prefix)] == prefix })
}

// The log with keyless entries, approvals and gate decisions re-verifies
// offline: the bundles are stored whole, and the trusted root is part of the
// trust configuration recorded at genesis.
func TestKeylessEntriesVerifyOffline(t *testing.T) {
	s := newApprovalServer(t, defaultApprovalConfig())
	c := s.newChange("CHG-OFFLINE", "high")
	c.plan(planA, s.at(time.Minute))
	ap := c.approve("dave", dave, s.at(2*time.Minute))
	s.setClock(s.at(3 * time.Minute))
	if _, a, _ := s.gate(approvals.GateRequest{ChangeID: c.id, CommitSHA: commitA, PlanSHA256: planA, Target: c.target, Actor: "ci"}); a.Decision != approvals.Allow {
		t.Fatalf("gate: %+v", a)
	}
	snap, err := s.log.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	keyless := 0
	vkey := s.log.VerifierKey()
	rep, err := audit.CheckLog(context.Background(), snap, audit.CheckOptions{
		Origin: testOrigin, LogKey: vkey, Signatures: true,
		OnRecord: func(i uint64, v *verifier.Verified) {
			if v.Keyless {
				if i != ap.Index || v.Signer.Name != dave {
					t.Errorf("keyless entry %d signed by %+v", i, v.Signer)
				}
				keyless++
			}
		},
	})
	if err != nil {
		t.Fatalf("CheckLog: %v", err)
	}
	if keyless != 1 || rep.Signatures != s.log.Size() {
		t.Errorf("re-verified %d records (%d keyless) of %d", rep.Signatures, keyless, s.log.Size())
	}
}
