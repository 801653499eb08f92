package approvals_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"testing"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

const (
	planA   = "1111111111111111111111111111111111111111111111111111111111111111"
	planB   = "2222222222222222222222222222222222222222222222222222222222222222"
	commitA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	commitB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	// otherDecision is a policy decision digest no plan of these tests has.
	otherDecision = "3333333333333333333333333333333333333333333333333333333333333333"

	alice = "alice@example.com" // the author; platform-infra
	bob   = "bob@example.com"   // platform-infra
	carol = "carol@example.com" // database-owners
	dave  = "dave@example.com"  // database-owners
	erin  = "erin@example.com"  // in no group

	dbOwners = "database-owners"
	platform = "platform-infra"
)

// t0 is the start of every scenario: records happen at t0 + offsets.
var t0 = time.Date(2026, 7, 3, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// directory is the trust configuration's groups in every scenario.
func directory() map[string][]string {
	return map[string][]string{
		dbOwners: {carol, dave},
		platform: {alice, bob},
	}
}

// highRisk is the policy decision a high-risk plan gets: a deny that an
// approval by a database owner lifts.
func highRisk() *evidence.Policy {
	return &evidence.Policy{Result: "warn", Decisions: []evidence.Decision{{
		Result: "deny", RuleID: "prod.database.requires-db-owner", RequiredApprovers: []string{dbOwners},
	}}}
}

// key derives an ed25519 key from a name, so that runs agree on it.
func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("approvals test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubPEM(t testing.TB, k ed25519.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// ledgerSim stands in for the log and the ingest handler: every record is
// signed with a real key, verified by the real verifier against the trust
// configuration, judged by the approval judge at its judged time
// (verifier.JudgedAt, as ingest sets it), and appended with the findings
// and policy decision it got. It serves the change's entries to the judge
// through approvals.ChangeLog.
type ledgerSim struct {
	t       testing.TB
	v       *verifier.Verifier
	appr    *approvals.Approvals
	entries []*evidence.Entry
	// fail, when set, is returned by ChangeEntries.
	fail error
}

// newSim builds the scenario's trust: runner keys for ci, alice, bob,
// carol, dave and erin (each person's key speaks for them), a review relay
// that may post others' approvals, and the log's own key for gate.decided.
func newSim(t testing.TB, cfg approvals.Config) *ledgerSim {
	t.Helper()
	all := verifier.Scope{Environments: []string{"*"}}
	trust := verifier.TrustConfig{
		Runners: []verifier.Runner{
			{Name: "ci", PublicKey: pubPEM(t, key("ci")), Scope: all},
			{Name: "relay", PublicKey: pubPEM(t, key("relay")), Scope: verifier.Scope{Environments: []string{"*"}, RelayApprovals: true}},
		},
		Groups: directory(),
	}
	for _, p := range []string{alice, bob, carol, dave, erin} {
		trust.Runners = append(trust.Runners, verifier.Runner{Name: p, PublicKey: pubPEM(t, key(p)), Scope: all, Approver: p})
	}
	v, err := verifier.New(trust, key(verifier.LogSigner).Public())
	if err != nil {
		t.Fatal(err)
	}
	s := &ledgerSim{t: t, v: v}
	if cfg.Groups == nil {
		cfg.Groups = trust.Groups
	}
	if s.appr, err = approvals.New(s, cfg); err != nil {
		t.Fatal(err)
	}
	return s
}

// ChangeEntries implements approvals.ChangeLog.
func (s *ledgerSim) ChangeEntries(_ context.Context, changeID string) ([]*evidence.Entry, error) {
	if s.fail != nil {
		return nil, s.fail
	}
	var out []*evidence.Entry
	for _, e := range s.entries {
		st, err := e.Statement()
		if err != nil {
			return nil, err
		}
		if st.Predicate.ChangeID == changeID {
			out = append(out, e)
		}
	}
	return out, nil
}

// sign signs p with the named key ("log" is the log's key) into a DSSE
// envelope.
func (s *ledgerSim) sign(signer string, p evidence.Transition) []byte {
	s.t.Helper()
	payload, err := json.Marshal(evidence.Statement{
		Type: evidence.StatementType, PredicateType: evidence.PredicateType, Predicate: p,
		Subject: []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": planA}}},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	env, err := verifier.SignEnvelope(key(signer), payload)
	if err != nil {
		s.t.Fatal(err)
	}
	return env
}

// verify signs p and verifies it as the log would, without judging it.
func (s *ledgerSim) verify(signer string, p evidence.Transition) *verifier.Verified {
	s.t.Helper()
	v, err := s.v.Verify(s.sign(signer, p))
	if err != nil {
		s.t.Fatalf("verify %s signed by %s: %v", p.Kind, signer, err)
	}
	return v
}

// post appends p, signed by signer and received at its occurredAt.
func (s *ledgerSim) post(signer string, p evidence.Transition) *evidence.Entry {
	s.t.Helper()
	return s.postReceived(signer, p, p.OccurredAt, nil)
}

// postReceived appends p received at received, with the policy decision d
// (the policy engine's, for a plan), after judging it as ingest does.
func (s *ledgerSim) postReceived(signer string, p evidence.Transition, received time.Time, d *evidence.Policy) *evidence.Entry {
	s.t.Helper()
	env := s.sign(signer, p)
	v, err := s.v.Verify(env)
	if err != nil {
		s.t.Fatalf("verify %s signed by %s: %v", p.Kind, signer, err)
	}
	v.JudgedAt = verifier.JudgedAt(p.OccurredAt, received, verifier.MaxBackfill)
	findings, err := s.appr.Judge(context.Background(), v)
	if err != nil {
		s.t.Fatalf("judge %s: %v", p.Kind, err)
	}
	e := &evidence.Entry{
		Origin: "evident.test/approvals", Index: uint64(len(s.entries) + 1), ReceivedAt: received,
		Meta: evidence.EntryMeta{
			Signer: v.Signer, RecordDigest: hex.EncodeToString(v.Digest[:]), Findings: findings, Decision: d,
		},
		Envelope: env,
	}
	s.entries = append(s.entries, e)
	return e
}

// change is one change's records, built as a pipeline posts them.
type change struct {
	s      *ledgerSim
	id     string
	target evidence.Target
	risk   string
	policy string // the latest plan's policyDecisionSha256
}

// newChange is a change with no records yet: its author is unknown.
func (s *ledgerSim) newChange(id, risk string) *change {
	return &change{s: s, id: id, risk: risk,
		target: evidence.Target{Environment: "prod", Account: "account-payments-prod", Stack: "prod/rds-orders"}}
}

// open records change.opened by CI at t0: alice is the author.
func (s *ledgerSim) open(id, risk string) *change {
	c := s.newChange(id, risk)
	p := c.base(evidence.KindChangeOpened, t0, "ci")
	p.Change = &evidence.Change{Author: alice, Title: "orders: pg15 parameters"}
	s.post("ci", p)
	return c
}

func (c *change) base(kind evidence.Kind, when time.Time, actor string) evidence.Transition {
	return evidence.Transition{
		Kind: kind, ChangeID: c.id, OccurredAt: when, Actor: actor,
		Source:    evidence.Source{Repository: "infra-live", PullRequest: 4812, CommitSHA: commitA},
		Target:    c.target,
		RiskClass: c.risk,
	}
}

// plan records plan.created of plan at commit, with the policy decision d
// (nil: the policies did not judge it).
func (c *change) plan(plan, commit string, when time.Time, d *evidence.Policy) *evidence.Entry {
	p := c.base(evidence.KindPlanCreated, when, "ci")
	p.Source.CommitSHA = commit
	p.Plan = &evidence.Plan{PlanSHA256: plan, Engine: "opentofu"}
	c.policy = ""
	if d != nil {
		c.policy = d.Digest()
	}
	return c.s.postReceived("ci", p, when, d)
}

// approval is what approve records unless edited: approver's approval of
// planA at commitA and the latest plan's decision, fresh for four hours.
func (c *change) approval(approver string, when time.Time) *evidence.Approval {
	return &evidence.Approval{
		PullRequest: 4812, CommitSHA: commitA, PlanSHA256: planA, PolicyDecisionSHA256: c.policy,
		Approver: approver, ApprovedAt: when, ExpiresAt: when.Add(4 * time.Hour),
	}
}

func (c *change) approve(signer, approver string, when time.Time, edits ...func(*evidence.Approval)) *evidence.Entry {
	p := c.base(evidence.KindApprovalGranted, when, approver)
	p.Approval = c.approval(approver, when)
	for _, e := range edits {
		e(p.Approval)
	}
	return c.s.post(signer, p)
}

// revoke records approver's revocation of their approval of plan.
func (c *change) revoke(signer, approver, plan string, when time.Time) *evidence.Entry {
	p := c.base(evidence.KindApprovalRevoked, when, approver)
	p.Approval = &evidence.Approval{CommitSHA: commitA, PlanSHA256: plan, Approver: approver, ApprovedAt: when, Reason: "found a problem"}
	return c.s.post(signer, p)
}

func (c *change) applyRecord(plan, commit string, when time.Time) evidence.Transition {
	p := c.base(evidence.KindApplyCompleted, when, "ci")
	p.Source.CommitSHA = commit
	p.Apply = &evidence.Apply{PlanSHA256: plan, Engine: "opentofu", StartedAt: when, CompletedAt: when}
	return p
}

// apply records apply.completed of plan at commit, received when it ran.
func (c *change) apply(plan, commit string, when time.Time) *evidence.Entry {
	return c.s.post("ci", c.applyRecord(plan, commit, when))
}

func (c *change) breakglass(kind evidence.Kind, incident string, when, expires time.Time) *evidence.Entry {
	p := c.base(kind, when, "oncall@example.com")
	p.Breakglass = &evidence.Breakglass{Incident: incident, Reason: "orders database down", ExpiresAt: expires}
	return c.s.post("ci", p)
}

func (c *change) verification(when time.Time) *evidence.Entry {
	p := c.base(evidence.KindVerificationCompleted, when, "ci")
	p.Verification = &evidence.Verification{Result: "pass"}
	return c.s.post("ci", p)
}

// gateDecided records the log's own gate.decided record.
func (c *change) gateDecided(when time.Time) *evidence.Entry {
	p := c.base(evidence.KindGateDecided, when, "evident")
	p.Gate = &evidence.Gate{Decision: approvals.Deny, PlanSHA256: planA}
	return c.s.post(verifier.LogSigner, p)
}

// assess is the approval state of planA at commitA at when.
func (c *change) assess(when time.Time) approvals.Assessment {
	c.s.t.Helper()
	as, err := c.s.appr.Assess(context.Background(), approvals.Subject{
		ChangeID: c.id, CommitSHA: commitA, PlanSHA256: planA, Target: c.target, RiskClass: c.risk, At: when,
	})
	if err != nil {
		c.s.t.Fatal(err)
	}
	return as
}

// request is a gate request for planA at commitA as `evident gate check`
// sends it: environment and stack only.
func (c *change) request() approvals.GateRequest {
	return approvals.GateRequest{ChangeID: c.id, CommitSHA: commitA, PlanSHA256: planA,
		Target: evidence.Target{Environment: c.target.Environment, Stack: c.target.Stack}, Actor: "ci"}
}

func (c *change) decide(req approvals.GateRequest, now time.Time) *approvals.GateDecision {
	c.s.t.Helper()
	d, err := c.s.appr.Decide(context.Background(), req, now)
	if err != nil {
		c.s.t.Fatal(err)
	}
	return d
}

func codes(fs []evidence.Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.Code)
	}
	return out
}

// sameCodes compares finding codes as sets with multiplicity.
func sameCodes(got []evidence.Finding, want ...string) bool {
	g := codes(got)
	w := append([]string{}, want...)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

func wantCodes(t testing.TB, what string, got []evidence.Finding, want ...string) {
	t.Helper()
	if !sameCodes(got, want...) {
		t.Errorf("%s: findings = %v, want %v; %+v", what, codes(got), want, got)
	}
}

func findingOf(fs []evidence.Finding, code string) *evidence.Finding {
	for i := range fs {
		if fs[i].Code == code {
			return &fs[i]
		}
	}
	return nil
}

// verdictOf is the verdict on the approval entry ap.
func verdictOf(t testing.TB, as approvals.Assessment, ap *evidence.Entry) approvals.Verdict {
	t.Helper()
	for _, v := range as.Verdicts {
		if v.Entry == ap.Index {
			return v
		}
	}
	t.Fatalf("no verdict on entry %d in %+v", ap.Index, as.Verdicts)
	return approvals.Verdict{}
}

// hasReason reports whether a gate reason starts with prefix.
func hasReason(reasons []string, prefix string) bool {
	return slices.ContainsFunc(reasons, func(r string) bool { return len(r) >= len(prefix) && r[:len(prefix)] == prefix })
}

var errUnavailable = errors.New("store unavailable")
