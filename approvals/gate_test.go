package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

func TestGateRequestCheck(t *testing.T) {
	good := approvals.GateRequest{ChangeID: "CHG-1", CommitSHA: commitA, PlanSHA256: planA,
		Target: evidence.Target{Environment: "prod"}, Actor: "ci"}
	for name, tc := range map[string]struct {
		edit func(*approvals.GateRequest)
		bad  string // part of the error; "" for none
	}{
		"valid":                 {edit: func(*approvals.GateRequest) {}},
		"sha256 commit":         {edit: func(r *approvals.GateRequest) { r.CommitSHA = planB }},
		"no change":             {edit: func(r *approvals.GateRequest) { r.ChangeID = "" }, bad: "changeId is required"},
		"short commit":          {edit: func(r *approvals.GateRequest) { r.CommitSHA = commitA[:12] }, bad: "commitSha"},
		"uppercase commit":      {edit: func(r *approvals.GateRequest) { r.CommitSHA = strings.ToUpper(commitA) }, bad: "commitSha"},
		"commit not hex":        {edit: func(r *approvals.GateRequest) { r.CommitSHA = strings.Repeat("g", 40) }, bad: "commitSha"},
		"no plan":               {edit: func(r *approvals.GateRequest) { r.PlanSHA256 = "" }, bad: "planSha256"},
		"plan of a commit size": {edit: func(r *approvals.GateRequest) { r.PlanSHA256 = commitA }, bad: "planSha256"},
		"no environment":        {edit: func(r *approvals.GateRequest) { r.Target.Environment = "" }, bad: "target.environment is required"},
		"no actor":              {edit: func(r *approvals.GateRequest) { r.Actor = "" }, bad: "actor is required"},
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			tc.edit(&r)
			err := r.Check()
			if tc.bad == "" {
				if err != nil {
					t.Errorf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, verifier.ErrMalformed) || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("Check = %v, want ErrMalformed naming %q", err, tc.bad)
			}
			// Decide refuses it before reading the change.
			s := newSim(t, approvals.Config{})
			s.fail = errUnavailable
			if _, err := s.appr.Decide(context.Background(), r, at(time.Minute)); !errors.Is(err, verifier.ErrMalformed) {
				t.Errorf("Decide = %v, want ErrMalformed", err)
			}
		})
	}
	// Every problem is named at once.
	err := approvals.GateRequest{}.Check()
	for _, want := range []string{"changeId", "commitSha", "planSha256", "target.environment", "actor"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty request: %v, want %s named", err, want)
		}
	}
}

// The walk-through of docs/approvals.md: denied with no approval, denied
// when the author approved their own change, allowed once a member of the
// required group approved this exact plan and decision.
func TestGateApprovalHalf(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	req := c.request()

	d := c.decide(req, at(2*time.Minute))
	if d.Decision != approvals.Deny || !slices.Equal(d.RequiredApprovers, []string{dbOwners}) || d.Approvals == nil || len(d.Approvals) != 0 ||
		!slices.Equal(d.Reasons, []string{
			"approval.missing: no approval of change CHG-1",
			"approval.group-missing: no valid approval by a member of database-owners",
		}) {
		t.Errorf("nobody approved: %+v", d)
	}

	self := c.approve(alice, alice, at(3*time.Minute))
	d = c.decide(req, at(4*time.Minute))
	if d.Decision != approvals.Deny || !hasReason(d.Reasons, fmt.Sprintf("approval.self-approved: alice@example.com approved their own change (entry %d)", self.Index)) {
		t.Errorf("the author approved: %+v", d)
	}

	ap := c.approve(carol, carol, at(5*time.Minute))
	d = c.decide(req, at(6*time.Minute))
	want := []string{
		fmt.Sprintf("approval by carol@example.com (database-owners), entry %d, bound to commit aaaaaaaaaaaa and plan 111111111111, fresh until 2026-07-03T13:05:00Z", ap.Index),
		"no counted approver is the author (alice@example.com)",
		fmt.Sprintf("required groups database-owners covered (from policy:%s, membership %s)", c.policy, s.appr.MembershipSHA256()[:12]),
	}
	if d.Decision != approvals.Allow || d.Emergency || !slices.Equal(d.Reasons, want) {
		t.Errorf("carol approved: %+v\nwant reasons %q", d, want)
	}
	if len(d.Approvals) != 1 || d.Approvals[0].Entry != ap.Index || d.Approvals[0].Approver != carol ||
		!slices.Equal(d.Approvals[0].Groups, []string{dbOwners}) || !d.Approvals[0].ApprovedAt.Equal(at(5*time.Minute)) {
		t.Errorf("approvals = %+v", d.Approvals)
	}

	// The gate judges at the time it is asked: the same approval, expired.
	d = c.decide(req, at(5*time.Minute+4*time.Hour))
	if d.Decision != approvals.Deny || !hasReason(d.Reasons, approvals.FindingApprovalExpired+": the approval by carol@example.com expired at 2026-07-03T13:05:00Z") {
		t.Errorf("approval expired at the time of asking: %+v", d)
	}
	// ... and an approval given after that time is not counted.
	d = c.decide(req, at(4*time.Minute+30*time.Second))
	if d.Decision != approvals.Deny || len(d.Approvals) != 0 {
		t.Errorf("asked before carol approved: %+v", d)
	}
	// Revoked: denied.
	c.revoke(carol, carol, planA, at(7*time.Minute))
	if d := c.decide(req, at(8*time.Minute)); d.Decision != approvals.Deny || !hasReason(d.Reasons, approvals.FindingApprovalRevoked) {
		t.Errorf("revoked: %+v", d)
	}
}

// The gate's plan checks: the plan must be recorded for this change, commit
// and target, fresh, and its policy decision present (when required), not
// a denial, and fresh.
func TestGatePlanChecks(t *testing.T) {
	deny := &evidence.Policy{Result: "deny", Decisions: []evidence.Decision{{Result: "deny", RuleID: "prod.no.public-buckets"}}}
	for name, tc := range map[string]struct {
		cfg       approvals.Config
		decision  *evidence.Policy // default highRisk()
		undecided bool             // the policies did not judge the plan
		edit      func(*approvals.GateRequest)
		received  time.Duration // when the log received the plan, after at(1m)
		now       time.Duration
		reason    string // "" for allow
	}{
		"in order":            {},
		"other plan":          {edit: func(r *approvals.GateRequest) { r.PlanSHA256 = planB }, reason: "plan.missing: no plan.created record of plan 222222222222 for change CHG-1"},
		"other commit":        {edit: func(r *approvals.GateRequest) { r.CommitSHA = commitB }, reason: "plan.commit-mismatch: plan 111111111111 was made from commit aaaaaaaaaaaa, not bbbbbbbbbbbb"},
		"other environment":   {edit: func(r *approvals.GateRequest) { r.Target.Environment = "staging" }, reason: "plan.target-mismatch: plan 111111111111 targets prod/prod/rds-orders, not staging/prod/rds-orders"},
		"other stack":         {edit: func(r *approvals.GateRequest) { r.Target.Stack = "prod/other" }, reason: "plan.target-mismatch"},
		"no stack asked":      {edit: func(r *approvals.GateRequest) { r.Target.Stack = "" }},
		"plan within age":     {cfg: approvals.Config{MaxPlanAge: time.Hour}, now: 61 * time.Minute},
		"plan too old":        {cfg: approvals.Config{MaxPlanAge: time.Hour}, now: 61*time.Minute + time.Second, reason: "plan.stale: plan 111111111111 is 1h0m1s old, more than 1h0m0s"},
		"no decision":         {undecided: true},
		"decision required":   {cfg: approvals.Config{RequirePolicyDecision: true}, undecided: true, reason: "policy.missing: plan 111111111111 has no policy decision"},
		"decision present":    {cfg: approvals.Config{RequirePolicyDecision: true}},
		"decision denies":     {decision: deny, reason: "policy.denied: the policy decision " + deny.Digest()[:12] + " on plan 111111111111 is \"deny\""},
		"decision within age": {cfg: approvals.Config{MaxPolicyAge: time.Hour}, received: 10 * time.Minute, now: 71 * time.Minute},
		// The policy decision's age runs from when the log received the
		// plan, not from when the plan says it was made.
		"decision too old": {cfg: approvals.Config{MaxPolicyAge: time.Hour}, received: 10 * time.Minute, now: 71*time.Minute + time.Second,
			reason: "policy.stale: the policy decision"},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t, tc.cfg)
			c := s.open("CHG-1", "high")
			d := highRisk()
			switch {
			case tc.undecided:
				d = nil
			case tc.decision != nil:
				d = tc.decision
			}
			p := c.base(evidence.KindPlanCreated, at(time.Minute), "ci")
			p.Plan = &evidence.Plan{PlanSHA256: planA, Engine: "opentofu"}
			s.postReceived("ci", p, at(time.Minute+tc.received), d)
			if d != nil {
				c.policy = d.Digest()
			}
			c.approve(carol, carol, at(2*time.Minute))
			req := c.request()
			if tc.edit != nil {
				tc.edit(&req)
			}
			got := c.decide(req, at(cmpOr(tc.now, 3*time.Minute)))
			if tc.reason == "" {
				if got.Decision != approvals.Allow {
					t.Errorf("decision = %+v, want allow", got)
				}
				return
			}
			if got.Decision != approvals.Deny || !hasReason(got.Reasons, tc.reason) {
				t.Errorf("decision = %s %q, want deny with %q", got.Decision, got.Reasons, tc.reason)
			}
		})
	}
}

func cmpOr(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// Under an open break-glass the gate allows, flagged as an emergency, and
// says which denials the break-glass overrides.
func TestGateBreakglass(t *testing.T) {
	s := newSim(t, approvals.Config{MaxPlanAge: time.Minute})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	c.breakglass(evidence.KindBreakglassOpened, "INC-1", at(2*time.Minute), at(2*time.Hour))
	d := c.decide(c.request(), at(10*time.Minute))
	if d.Decision != approvals.Allow || !d.Emergency || len(d.Approvals) != 0 ||
		!hasReason(d.Reasons, "emergency: break-glass INC-1 is open (orders database down); approval must follow within 24h0m0s") ||
		!hasReason(d.Reasons, "overridden by break-glass: plan.stale") {
		t.Errorf("under break-glass: %+v", d)
	}
	// A plan the log never saw: still allowed, and said.
	req := c.request()
	req.PlanSHA256 = planB
	if d := c.decide(req, at(10*time.Minute)); d.Decision != approvals.Allow || !hasReason(d.Reasons, "overridden by break-glass: plan.missing") {
		t.Errorf("unknown plan under break-glass: %+v", d)
	}
	// Once closed, the approval half decides again.
	c.breakglass(evidence.KindBreakglassClosed, "INC-1", at(11*time.Minute), time.Time{})
	if d := c.decide(c.request(), at(12*time.Minute)); d.Decision != approvals.Deny || d.Emergency {
		t.Errorf("after the break-glass closed: %+v", d)
	}
}

// The decision carries the plan's risk class, source and target (the
// request's fields where the plan leaves them out), for its record; without
// a plan, the request's target.
func TestGateDecisionTarget(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	req := c.request()
	req.Target.Region = "eu-west-1"
	req.Target.Namespace = "orders"
	d := c.decide(req, at(2*time.Minute))
	want := c.target
	want.Region, want.Namespace = "eu-west-1", "orders"
	if d.Target != want || d.RiskClass != "high" || d.Source.CommitSHA != commitA || d.Source.Repository != "infra-live" {
		t.Errorf("decision target %+v risk %q source %+v, want target %+v", d.Target, d.RiskClass, d.Source, want)
	}
	req.PlanSHA256 = planB
	if d := c.decide(req, at(2*time.Minute)); d.Target != req.Target || d.RiskClass != "" {
		t.Errorf("without a plan: target %+v risk %q, want the request's %+v", d.Target, d.RiskClass, req.Target)
	}
}

// With the policies off, the groups come from the first matching rule
// ("from config"); with no rule, anyone but the author, in no group.
func TestGateFromConfig(t *testing.T) {
	s := newSim(t, approvals.Config{Rules: []approvals.Rule{{Environment: "prod", RiskClass: "high", Groups: []string{platform}}}})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), nil)
	ap := c.approve(bob, bob, at(2*time.Minute), func(a *evidence.Approval) { a.PolicyDecisionSHA256 = "" })
	d := c.decide(c.request(), at(3*time.Minute))
	if d.Decision != approvals.Allow || !slices.Equal(d.RequiredApprovers, []string{platform}) ||
		!hasReason(d.Reasons, fmt.Sprintf("approval by bob@example.com (platform-infra), entry %d", ap.Index)) ||
		!hasReason(d.Reasons, "required groups platform-infra covered (from config, membership ") {
		t.Errorf("from config: %+v", d)
	}

	// The rule is for high risk: a low-risk plan needs one approval by
	// anyone but the author.
	l := s.open("CHG-2", "low")
	l.plan(planA, commitA, at(time.Minute), nil)
	ap = l.approve(erin, erin, at(2*time.Minute))
	d = l.decide(l.request(), at(3*time.Minute))
	if d.Decision != approvals.Allow || len(d.RequiredApprovers) != 0 ||
		!hasReason(d.Reasons, fmt.Sprintf("approval by erin@example.com (no group), entry %d", ap.Index)) ||
		hasReason(d.Reasons, "required groups") {
		t.Errorf("no rule: %+v", d)
	}
}
