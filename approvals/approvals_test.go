package approvals_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// Each case is a high-risk change (its plan's policy decision requires a
// database owner) with one approval that differs from a good one in one
// way, then the apply of planA at commitA. The approval's verdict names the
// one reason it does not count, and the apply entry gets that finding
// (docs/approvals.md, "How binding works").
func TestApprovalBinding(t *testing.T) {
	for name, tc := range map[string]struct {
		signer, approver string // default carol, carol
		edit             func(*evidence.Approval)
		after            func(c *change) // records between the approval and the apply
		reason           string          // "" when the approval counts
		message          string          // part of the verdict's message
		findings         []string        // on the apply entry
	}{
		"bound to the exact commit, plan and decision": {},
		"signed by a relay allowed to post approvals":  {signer: "relay"},
		"other plan": {
			edit:    func(a *evidence.Approval) { a.PlanSHA256 = planB },
			message: "carol@example.com approved plan 222222222222, not the applied plan 111111111111",
			reason:  approvals.FindingApprovalPlanMismatch, findings: []string{approvals.FindingApprovalPlanMismatch, approvals.FindingApprovalGroupMissing},
		},
		"other commit": {
			edit:    func(a *evidence.Approval) { a.CommitSHA = commitB },
			message: "carol@example.com approved commit bbbbbbbbbbbb, not aaaaaaaaaaaa",
			reason:  approvals.FindingApprovalCommitMismatch, findings: []string{approvals.FindingApprovalCommitMismatch, approvals.FindingApprovalGroupMissing},
		},
		"other policy decision": {
			edit:   func(a *evidence.Approval) { a.PolicyDecisionSHA256 = otherDecision },
			reason: approvals.FindingApprovalPolicyMismatch, findings: []string{approvals.FindingApprovalPolicyMismatch, approvals.FindingApprovalGroupMissing},
		},
		"no policy decision bound, the plan has one": {
			edit:    func(a *evidence.Approval) { a.PolicyDecisionSHA256 = "" },
			message: "carol@example.com approved policy decision (none), not the plan's",
			reason:  approvals.FindingApprovalPolicyMismatch, findings: []string{approvals.FindingApprovalPolicyMismatch, approvals.FindingApprovalGroupMissing},
		},
		"expired before the apply": {
			edit:    func(a *evidence.Approval) { a.ExpiresAt = at(150 * time.Second) },
			message: "the approval by carol@example.com expired at 2026-07-03T09:02:30Z",
			reason:  approvals.FindingApprovalExpired, findings: []string{approvals.FindingApprovalExpired, approvals.FindingApprovalGroupMissing},
		},
		"expires at the instant of the apply": {
			edit:   func(a *evidence.Approval) { a.ExpiresAt = at(3 * time.Minute) },
			reason: approvals.FindingApprovalExpired, findings: []string{approvals.FindingApprovalExpired, approvals.FindingApprovalGroupMissing},
		},
		"expires just after the apply": {
			edit: func(a *evidence.Approval) { a.ExpiresAt = at(3*time.Minute + time.Second) },
		},
		"revoked by the approver": {
			after:   func(c *change) { c.revoke(carol, carol, planA, at(150*time.Second)) },
			message: "the approval by carol@example.com (entry 3) was revoked",
			reason:  approvals.FindingApprovalRevoked, findings: []string{approvals.FindingApprovalRevoked, approvals.FindingApprovalGroupMissing},
		},
		"revocation of another plan": {
			after: func(c *change) { c.revoke(carol, carol, planB, at(150*time.Second)) },
		},
		"revocation by another approver": {
			after: func(c *change) { c.revoke(dave, dave, planA, at(150*time.Second)) },
		},
		"self-approved by the author": {
			signer: alice, approver: alice, message: "alice@example.com approved their own change (entry 3)",
			reason: approvals.FindingApprovalSelfApproved, findings: []string{approvals.FindingApprovalSelfApproved, approvals.FindingApprovalGroupMissing},
		},
		"signed by someone else's key": {
			signer: bob, approver: carol,
			reason: approvals.FindingApprovalUnauthorized, findings: []string{approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing},
		},
		"signed by a machine key": {
			signer: "ci", approver: carol,
			reason: approvals.FindingApprovalUnauthorized, findings: []string{approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing},
		},
		"by a member of another group": {
			signer: bob, approver: bob, findings: []string{approvals.FindingApprovalGroupMissing},
		},
		"claiming a group the directory does not give": {
			signer: erin, approver: erin, edit: func(a *evidence.Approval) { a.Groups = []string{dbOwners} },
			findings: []string{approvals.FindingApprovalGroupMissing},
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t, approvals.Config{})
			c := s.open("CHG-1", "high")
			c.plan(planA, commitA, at(time.Minute), highRisk())
			signer, approver := cmp.Or(tc.signer, carol), cmp.Or(tc.approver, carol)
			var edits []func(*evidence.Approval)
			if tc.edit != nil {
				edits = append(edits, tc.edit)
			}
			ap := c.approve(signer, approver, at(2*time.Minute), edits...)
			if tc.reason == approvals.FindingApprovalUnauthorized {
				wantCodes(t, "approval entry", ap.Meta.Findings, approvals.FindingApprovalUnauthorized)
			} else {
				wantCodes(t, "approval entry", ap.Meta.Findings)
			}
			if tc.after != nil {
				tc.after(c)
			}
			applied := c.apply(planA, commitA, at(3*time.Minute))
			wantCodes(t, "apply entry", applied.Meta.Findings, tc.findings...)

			// One judgement: the verdict Assess gives at the apply's time
			// is the reason the apply's findings name.
			as := c.assess(at(3 * time.Minute))
			v := verdictOf(t, as, ap)
			if v.Counts != (tc.reason == "") || v.Reason != tc.reason || !strings.Contains(v.Message, tc.message) {
				t.Errorf("verdict = counts %v, reason %q (%s); want reason %q (%s)", v.Counts, v.Reason, v.Message, tc.reason, tc.message)
			}
			if tc.reason != "" && tc.reason != approvals.FindingApprovalUnauthorized {
				f := findingOf(applied.Meta.Findings, tc.reason)
				if f == nil || f.Message != v.Message || f.Severity != evidence.SeverityError ||
					f.Evidence["approvalEntry"] != fmt.Sprint(ap.Index) || f.Evidence["planSha256"] != planA || f.Evidence["commitSha"] != commitA {
					t.Errorf("%s finding = %+v, verdict message %q", tc.reason, f, v.Message)
				}
			}
			if v.Counts && !slices.ContainsFunc(as.Approvals, func(r approvals.Ref) bool { return r.Entry == ap.Index }) {
				t.Errorf("counted approval %d missing from Approvals %+v", ap.Index, as.Approvals)
			}
		})
	}
}

// A plan without a policy decision leaves nothing to bind: the
// policyDecisionSha256 an approval names is not compared.
func TestApprovalWithoutPlanDecision(t *testing.T) {
	s := newSim(t, approvals.Config{Rules: []approvals.Rule{{Environment: "prod", Groups: []string{dbOwners}}}})
	c := s.open("CHG-1", "low")
	c.plan(planA, commitA, at(time.Minute), nil)
	c.approve(carol, carol, at(2*time.Minute), func(a *evidence.Approval) { a.PolicyDecisionSHA256 = otherDecision })
	wantCodes(t, "apply", c.apply(planA, commitA, at(3*time.Minute)).Meta.Findings)
}

// The verdict names the directory's groups, never the approval's claim,
// and a claim does not satisfy the requirement (docs/approvals.md: "Group
// membership comes from the trust configuration's groups directory").
func TestGroupsComeFromTheDirectory(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	claim := c.approve(bob, bob, at(2*time.Minute), func(a *evidence.Approval) { a.Groups = []string{dbOwners} })
	as := c.assess(at(3 * time.Minute))
	v := verdictOf(t, as, claim)
	if !v.Counts || !slices.Equal(v.Groups, []string{platform}) || !slices.Equal(v.ClaimedGroups, []string{dbOwners}) {
		t.Errorf("verdict = %+v, want counted with directory groups [%s] and claim [%s]", v, platform, dbOwners)
	}
	wantCodes(t, "assessment", as.Findings, approvals.FindingApprovalGroupMissing)
	f := findingOf(as.Findings, approvals.FindingApprovalGroupMissing)
	if f.Evidence["missingGroups"] != dbOwners || f.Evidence["requiredGroups"] != dbOwners ||
		f.Evidence["requirementFrom"] != "policy:"+c.policy || f.Evidence["membershipSha256"] != s.appr.MembershipSHA256() {
		t.Errorf("group-missing evidence = %+v", f.Evidence)
	}

	// A database owner's approval, claiming nothing, covers the group.
	c.approve(dave, dave, at(150*time.Second))
	as = c.assess(at(3 * time.Minute))
	wantCodes(t, "with a database owner", as.Findings)
	if len(as.Approvals) != 2 || !slices.Equal(as.Approvals[1].Groups, []string{dbOwners}) {
		t.Errorf("approvals = %+v", as.Approvals)
	}
}

// A person in several groups is listed in all of them, sorted.
func TestMemberOfSeveralGroups(t *testing.T) {
	groups := map[string][]string{"zeta": {carol}, dbOwners: {carol}, "alpha": {carol}}
	s := newSim(t, approvals.Config{Groups: groups, Rules: []approvals.Rule{{Groups: []string{"zeta", "alpha"}}}})
	c := s.open("CHG-1", "low")
	c.plan(planA, commitA, at(time.Minute), nil)
	ap := c.approve(carol, carol, at(2*time.Minute))
	as := c.assess(at(3 * time.Minute))
	wantCodes(t, "assessment", as.Findings)
	if v := verdictOf(t, as, ap); !slices.Equal(v.Groups, []string{"alpha", dbOwners, "zeta"}) {
		t.Errorf("groups = %v", v.Groups)
	}
}

// Which approvals exist is judged at the subject's time: one given after it
// is not judged at all, and a revocation after it does not withdraw an
// approval before it.
func TestJudgedAtTheSubjectsTime(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	ap := c.approve(carol, carol, at(2*time.Minute))
	c.revoke(carol, carol, planA, at(10*time.Minute))

	before := c.assess(at(time.Minute + 30*time.Second))
	if len(before.Verdicts) != 0 {
		t.Errorf("verdicts before the approval was given: %+v", before.Verdicts)
	}
	wantCodes(t, "before the approval", before.Findings, approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing)

	between := c.assess(at(5 * time.Minute))
	if v := verdictOf(t, between, ap); !v.Counts {
		t.Errorf("before the revocation: %+v", v)
	}
	wantCodes(t, "before the revocation", between.Findings)

	revoked := c.assess(at(10 * time.Minute))
	if v := verdictOf(t, revoked, ap); v.Counts || v.Reason != approvals.FindingApprovalRevoked {
		t.Errorf("at the revocation: %+v", v)
	}
}

// A revocation withdraws the approvals before it, not a new approval after
// it.
func TestReapprovalAfterRevocation(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	first := c.approve(carol, carol, at(2*time.Minute))
	c.revoke(carol, carol, planA, at(3*time.Minute))
	second := c.approve(carol, carol, at(4*time.Minute))
	applied := c.apply(planA, commitA, at(5*time.Minute))
	wantCodes(t, "apply", applied.Meta.Findings)
	as := c.assess(at(5 * time.Minute))
	if v := verdictOf(t, as, first); v.Reason != approvals.FindingApprovalRevoked {
		t.Errorf("first approval: %+v", v)
	}
	if v := verdictOf(t, as, second); !v.Counts {
		t.Errorf("second approval: %+v", v)
	}
}

// Each verdict has one reason; where an approval has several defects the
// first in this order is given: signer, revocation, plan, commit, policy
// decision, expiry, age, author.
func TestOneReasonPerApproval(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	wrongAll := func(a *evidence.Approval) {
		a.PlanSHA256, a.CommitSHA, a.PolicyDecisionSHA256, a.ExpiresAt = planB, commitB, otherDecision, at(150*time.Second)
	}
	forged := c.approve(bob, alice, at(2*time.Minute), wrongAll)
	selfWrong := c.approve(alice, alice, at(2*time.Minute), wrongAll)
	commitPolicy := c.approve(carol, carol, at(2*time.Minute), func(a *evidence.Approval) {
		a.CommitSHA, a.PolicyDecisionSHA256 = commitB, otherDecision
	})
	selfExpired := c.approve(alice, alice, at(2*time.Minute), func(a *evidence.Approval) { a.ExpiresAt = at(150 * time.Second) })
	revokedToo := c.approve(dave, dave, at(2*time.Minute), wrongAll)
	c.revoke(dave, dave, planB, at(140*time.Second))

	as := c.assess(at(3 * time.Minute))
	for ap, want := range map[*evidence.Entry]string{
		forged:       approvals.FindingApprovalUnauthorized,
		revokedToo:   approvals.FindingApprovalRevoked,
		selfWrong:    approvals.FindingApprovalPlanMismatch,
		commitPolicy: approvals.FindingApprovalCommitMismatch,
		selfExpired:  approvals.FindingApprovalExpired,
	} {
		if v := verdictOf(t, as, ap); v.Reason != want {
			t.Errorf("entry %d: reason %q, want %q", ap.Index, v.Reason, want)
		}
	}
	// One finding per uncounted approval (the unauthorized one is not
	// "given": approval.missing is not raised either, as others were).
	wantCodes(t, "assessment", as.Findings, approvals.FindingApprovalRevoked, approvals.FindingApprovalPlanMismatch,
		approvals.FindingApprovalCommitMismatch, approvals.FindingApprovalExpired, approvals.FindingApprovalGroupMissing)
}

// MaxApprovalAge bounds an approval's age on top of its own expiry.
func TestMaxApprovalAge(t *testing.T) {
	s := newSim(t, approvals.Config{MaxApprovalAge: time.Hour})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	ap := c.approve(carol, carol, at(2*time.Minute))
	if v := verdictOf(t, c.assess(at(62*time.Minute)), ap); !v.Counts {
		t.Errorf("exactly MaxApprovalAge old: %+v", v)
	}
	v := verdictOf(t, c.assess(at(62*time.Minute+time.Second)), ap)
	if v.Counts || v.Reason != approvals.FindingApprovalExpired || !strings.Contains(v.Message, "older than 1h0m0s") {
		t.Errorf("older than MaxApprovalAge: %+v", v)
	}
}

// Quorum: the number of distinct approvers who count, whatever the number
// of approvals (docs/approvals.md; Rule.MinApprovals).
func TestQuorum(t *testing.T) {
	two, zero := 2, 0
	atLeastTwo := approvals.Rule{Environment: "prod", MinApprovals: &two}
	type approval struct{ signer, approver string }
	for name, tc := range map[string]struct {
		rule      approvals.Rule
		approvals []approval
		findings  []string
		message   string // of the approval.missing finding, if any
	}{
		"two required, none": {rule: atLeastTwo, findings: []string{approvals.FindingApprovalMissing},
			message: "no approval of change CHG-1"},
		"two required, one": {rule: atLeastTwo, approvals: []approval{{bob, bob}}, findings: []string{approvals.FindingApprovalMissing},
			message: "1 valid approval(s) of change CHG-1, 2 required"},
		"two required, one approver twice": {rule: atLeastTwo, approvals: []approval{{bob, bob}, {bob, bob}}, findings: []string{approvals.FindingApprovalMissing},
			message: "1 valid approval(s) of change CHG-1, 2 required"},
		"one approver twice, once relayed": {rule: atLeastTwo, approvals: []approval{{bob, bob}, {"relay", bob}}, findings: []string{approvals.FindingApprovalMissing},
			message: "1 valid approval(s) of change CHG-1, 2 required"},
		"two required, two":                 {rule: atLeastTwo, approvals: []approval{{bob, bob}, {erin, erin}}},
		"the author does not add":           {rule: atLeastTwo, approvals: []approval{{bob, bob}, {alice, alice}}, findings: []string{approvals.FindingApprovalSelfApproved, approvals.FindingApprovalMissing}},
		"a forgery does not add":            {rule: atLeastTwo, approvals: []approval{{bob, bob}, {bob, erin}}, findings: []string{approvals.FindingApprovalMissing}},
		"zero waives approval":              {rule: approvals.Rule{Environment: "prod", MinApprovals: &zero}},
		"default is one":                    {rule: approvals.Rule{Environment: "prod"}, approvals: []approval{{erin, erin}}},
		"default is one, none given":        {rule: approvals.Rule{Environment: "prod"}, findings: []string{approvals.FindingApprovalMissing}},
		"zero still needs the groups":       {rule: approvals.Rule{Environment: "prod", MinApprovals: &zero, Groups: []string{dbOwners}}, findings: []string{approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing}},
		"each group covered":                {rule: approvals.Rule{Groups: []string{dbOwners, platform}}, approvals: []approval{{bob, bob}, {carol, carol}}},
		"one group of two covered":          {rule: approvals.Rule{Groups: []string{dbOwners, platform}}, approvals: []approval{{bob, bob}}, findings: []string{approvals.FindingApprovalGroupMissing}},
		"two groups, one approver for both": {rule: approvals.Rule{Groups: []string{dbOwners, platform}}, approvals: []approval{{bob, bob}, {bob, bob}}, findings: []string{approvals.FindingApprovalGroupMissing}},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t, approvals.Config{Rules: []approvals.Rule{tc.rule}})
			c := s.open("CHG-1", "low")
			c.plan(planA, commitA, at(time.Minute), nil)
			for i, a := range tc.approvals {
				c.approve(a.signer, a.approver, at(2*time.Minute+time.Duration(i)*time.Second))
			}
			applied := c.apply(planA, commitA, at(3*time.Minute))
			wantCodes(t, "apply", applied.Meta.Findings, tc.findings...)
			if f := findingOf(applied.Meta.Findings, approvals.FindingApprovalMissing); f != nil && tc.message != "" && f.Message != tc.message {
				t.Errorf("approval.missing message = %q, want %q", f.Message, tc.message)
			}
		})
	}
}

// Where the requirement comes from: the plan's policy decision when it
// names required approvers, else the first matching rule, else one approval
// by anyone but the author.
func TestRequirement(t *testing.T) {
	rules := []approvals.Rule{
		{Environment: "prod", RiskClass: "low", Groups: []string{platform}},
		{Environment: "prod", Groups: []string{dbOwners}},
		{Environment: "staging", RiskClass: "high", Groups: []string{"nobody"}},
	}
	noApprovers := &evidence.Policy{Result: "allow", Decisions: []evidence.Decision{{Result: "allow", RuleID: "prod.fine"}}}
	twoRules := &evidence.Policy{Result: "warn", Decisions: []evidence.Decision{
		{Result: "deny", RuleID: "a.one", RequiredApprovers: []string{dbOwners}},
		{Result: "deny", RuleID: "a.two", RequiredApprovers: []string{platform, dbOwners}},
	}}
	for name, tc := range map[string]struct {
		env, risk string
		decision  *evidence.Policy
		required  []string
		from      string // "policy" for policy:<digest>
	}{
		"policy decision":                        {env: "prod", risk: "low", decision: highRisk(), required: []string{dbOwners}, from: "policy"},
		"policy decisions, groups merged":        {env: "prod", risk: "low", decision: twoRules, required: []string{dbOwners, platform}, from: "policy"},
		"decision without approvers, then rules": {env: "prod", risk: "low", decision: noApprovers, required: []string{platform}, from: "config"},
		"first matching rule":                    {env: "prod", risk: "low", required: []string{platform}, from: "config"},
		"rule matching any risk class":           {env: "prod", risk: "medium", required: []string{dbOwners}, from: "config"},
		"no rule matches":                        {env: "staging", risk: "low", required: nil, from: "config"},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSim(t, approvals.Config{Rules: rules})
			c := s.open("CHG-1", tc.risk)
			c.target.Environment = tc.env
			c.plan(planA, commitA, at(time.Minute), tc.decision)
			as := c.assess(at(3 * time.Minute))
			from := tc.from
			if from == "policy" {
				from = "policy:" + tc.decision.Digest()
			}
			if !slices.Equal(as.Required, tc.required) || as.RequiredFrom != from {
				t.Errorf("required %v from %q, want %v from %q", as.Required, as.RequiredFrom, tc.required, from)
			}
		})
	}
}

// With no requirement beyond one approval, anyone but the author counts,
// whatever their groups.
func TestAnyoneButTheAuthor(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "low")
	c.plan(planA, commitA, at(time.Minute), nil)
	c.approve(alice, alice, at(2*time.Minute))
	wantCodes(t, "only the author", c.apply(planA, commitA, at(3*time.Minute)).Meta.Findings,
		approvals.FindingApprovalSelfApproved, approvals.FindingApprovalMissing)
	c.approve(erin, erin, at(4*time.Minute))
	wantCodes(t, "and erin", c.apply(planA, commitA, at(5*time.Minute)).Meta.Findings)

	// Without a change.opened naming the author, no one is the author.
	u := s.newChange("CHG-2", "low")
	u.plan(planA, commitA, at(time.Minute), nil)
	u.approve(alice, alice, at(2*time.Minute))
	wantCodes(t, "unknown author", u.apply(planA, commitA, at(3*time.Minute)).Meta.Findings)
}

// Judge at ingest: an approval counts only when signed by its approver or
// by a relay (docs/approvals.md); other kinds get no approval finding.
func TestJudgeSigners(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	ctx := context.Background()
	for _, tc := range []struct {
		signer, approver string
		unauthorized     bool
	}{
		{carol, carol, false},
		{"relay", carol, false},
		{"relay", erin, false},
		{bob, carol, true},
		{"ci", carol, true},
		{alice, alice, false}, // the author may sign their own approval; it does not count for other reasons
	} {
		p := c.base(evidence.KindApprovalGranted, at(2*time.Minute), tc.approver)
		p.Approval = c.approval(tc.approver, at(2*time.Minute))
		got, err := s.appr.Judge(ctx, s.verify(tc.signer, p))
		if err != nil {
			t.Fatal(err)
		}
		if !tc.unauthorized {
			wantCodes(t, tc.signer+" for "+tc.approver, got)
			continue
		}
		wantCodes(t, tc.signer+" for "+tc.approver, got, approvals.FindingApprovalUnauthorized)
		if f := got[0]; f.Severity != evidence.SeverityError || f.Evidence["signer"] != tc.signer || f.Evidence["approver"] != tc.approver {
			t.Errorf("unauthorized finding = %+v", f)
		}
	}
	// Records that are neither approvals, applies nor review points.
	for _, kind := range []evidence.Kind{evidence.KindChangeOpened, evidence.KindPlanCreated, evidence.KindBreakglassOpened} {
		p := c.base(kind, at(time.Minute), "ci")
		switch kind {
		case evidence.KindChangeOpened:
			p.Change = &evidence.Change{Author: alice}
		case evidence.KindPlanCreated:
			p.Plan = &evidence.Plan{PlanSHA256: planA}
		case evidence.KindBreakglassOpened:
			p.Breakglass = &evidence.Breakglass{Incident: "INC-1", Reason: "down"}
		}
		if got, err := s.appr.Judge(ctx, s.verify("ci", p)); err != nil || len(got) != 0 {
			t.Errorf("Judge(%s) = %v, %v", kind, got, err)
		}
	}
}

// The one clock (docs/policies.md, "One clock"): the judge decides an
// apply at its judged time, verifier.JudgedAt as ingest sets it, else its
// occurredAt; never at the time the judge happens to run.
func TestJudgeClock(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	c.approve(carol, carol, at(2*time.Minute), func(a *evidence.Approval) { a.ExpiresAt = at(2 * time.Hour) })
	ran := at(time.Hour) // the apply ran within the approval's validity

	for name, tc := range map[string]struct {
		judgedAt time.Time
		findings []string
	}{
		"no judged time: occurredAt": {},
		"spooled, received after expiry within the backfill": {
			judgedAt: verifier.JudgedAt(ran, at(5*time.Hour), verifier.MaxBackfill),
		},
		"claimed older than the backfill: judged at receipt": {
			judgedAt: verifier.JudgedAt(ran, ran.Add(verifier.MaxBackfill+time.Second), verifier.MaxBackfill),
			findings: []string{approvals.FindingApprovalExpired, approvals.FindingApprovalGroupMissing},
		},
		"judged after the expiry": {
			judgedAt: at(2 * time.Hour),
			findings: []string{approvals.FindingApprovalExpired, approvals.FindingApprovalGroupMissing},
		},
		"judged before the approval was given": {
			judgedAt: at(90 * time.Second),
			findings: []string{approvals.FindingApprovalMissing, approvals.FindingApprovalGroupMissing},
		},
	} {
		t.Run(name, func(t *testing.T) {
			v := s.verify("ci", c.applyRecord(planA, commitA, ran))
			v.JudgedAt = tc.judgedAt
			got, err := s.appr.Judge(context.Background(), v)
			if err != nil {
				t.Fatal(err)
			}
			wantCodes(t, "apply", got, tc.findings...)
		})
	}
}

func TestNew(t *testing.T) {
	if _, err := approvals.New(nil, approvals.Config{}); err == nil {
		t.Error("New without a change log: no error")
	}
	neg := -1
	_, err := approvals.New(approvals.ChangeLogFunc(func(context.Context, string) ([]*evidence.Entry, error) { return nil, nil }),
		approvals.Config{Rules: []approvals.Rule{{Environment: "prod"}, {Environment: "dev", MinApprovals: &neg}}})
	if err == nil || !strings.Contains(err.Error(), "approvals.rules[1]") {
		t.Errorf("New with a negative minApprovals: %v", err)
	}
}

// The membership digest is SHA-256 of the directory's JSON, keys sorted,
// so an auditor recomputes it from the trust configuration.
func TestMembershipSHA256(t *testing.T) {
	s := newSim(t, approvals.Config{})
	sum := sha256.Sum256([]byte(`{"database-owners":["carol@example.com","dave@example.com"],"platform-infra":["alice@example.com","bob@example.com"]}`))
	if got, want := s.appr.MembershipSHA256(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("MembershipSHA256 = %s, want %s", got, want)
	}
	empty := newSim(t, approvals.Config{Groups: map[string][]string{}})
	if empty.appr.MembershipSHA256() == s.appr.MembershipSHA256() {
		t.Error("different directories, same digest")
	}
}

// A change log that cannot be read, or holds an entry that does not decode,
// is an error for every caller, not an empty change.
func TestChangeLogErrors(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "high")
	c.plan(planA, commitA, at(time.Minute), highRisk())
	applyV := s.verify("ci", c.applyRecord(planA, commitA, at(3*time.Minute)))
	closeP := c.base(evidence.KindBreakglassClosed, at(3*time.Minute), "ci")
	closeP.Breakglass = &evidence.Breakglass{Incident: "INC-1"}
	closeV := s.verify("ci", closeP)
	ctx := context.Background()

	check := func(what string, want error) {
		t.Helper()
		_, err := s.appr.Assess(ctx, approvals.Subject{ChangeID: c.id, CommitSHA: commitA, PlanSHA256: planA, At: at(3 * time.Minute)})
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%s: Assess error %v", what, err)
		}
		if _, err := s.appr.Decide(ctx, c.request(), at(3*time.Minute)); err == nil {
			t.Errorf("%s: Decide: no error", what)
		}
		if _, err := s.appr.Judge(ctx, applyV); err == nil {
			t.Errorf("%s: Judge(apply): no error", what)
		}
		if _, err := s.appr.Judge(ctx, closeV); err == nil {
			t.Errorf("%s: Judge(breakglass.closed): no error", what)
		}
	}
	s.fail = errUnavailable
	check("unreadable log", errUnavailable)
	s.fail = nil

	bad := &evidence.Entry{Index: 99, Envelope: []byte(`{"payloadType":"text/plain","payload":""}`)}
	appr, err := approvals.New(approvals.ChangeLogFunc(func(ctx context.Context, id string) ([]*evidence.Entry, error) {
		es, err := s.ChangeEntries(ctx, id)
		return append(es, bad), err
	}), approvals.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.appr = appr
	check("undecodable entry", nil)
}

// MaxEntries bounds the entries read per change: the latest ones.
func TestMaxEntries(t *testing.T) {
	s := newSim(t, approvals.Config{})
	c := s.open("CHG-1", "low")
	c.plan(planA, commitA, at(time.Minute), nil)
	c.approve(bob, bob, at(2*time.Minute))
	last := c.approve(erin, erin, at(3*time.Minute))
	bounded, err := approvals.New(approvals.ChangeLogFunc(s.ChangeEntries), approvals.Config{Groups: directory(), MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	as, err := bounded.Assess(context.Background(), approvals.Subject{ChangeID: c.id, CommitSHA: commitA, PlanSHA256: planA, At: at(4 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(as.Verdicts) != 1 || as.Verdicts[0].Entry != last.Index {
		t.Errorf("verdicts with MaxEntries 1: %+v, want only entry %d", as.Verdicts, last.Index)
	}
	if all := c.assess(at(4 * time.Minute)); len(all.Verdicts) != 2 {
		t.Errorf("verdicts with the default bound: %+v", all.Verdicts)
	}
}
