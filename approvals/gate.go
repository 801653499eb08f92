package approvals

import (
	"context"
	"fmt"
	"strings"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// GateRequest asks whether one plan of one commit may be applied now.
type GateRequest struct {
	ChangeID   string          `json:"changeId"`
	CommitSHA  string          `json:"commitSha"`
	PlanSHA256 string          `json:"planSha256"`
	Target     evidence.Target `json:"target"`
	Actor      string          `json:"actor"`
}

// Gate decisions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// GateDecision is the apply gate's answer.
type GateDecision struct {
	Decision string `json:"decision"`
	// Reasons say why: for a denial, one line per problem, starting with
	// its finding code; for an allowance, what it rests on.
	Reasons           []string `json:"reasons"`
	RequiredApprovers []string `json:"requiredApprovers"`
	Approvals         []Ref    `json:"approvals"`
	// Emergency: allowed under an open break-glass.
	Emergency bool `json:"emergency,omitempty"`
	// RiskClass, Source and Target are the plan's, for the decision's
	// record: a gate decision is recorded with the target of the plan it
	// judged (the request's, where the plan is missing or leaves a field
	// out), so a tenant scoped by account sees it.
	RiskClass string          `json:"-"`
	Source    evidence.Source `json:"-"`
	Target    evidence.Target `json:"-"`
}

// Check validates a request's fields.
func (r GateRequest) Check() error {
	var bad []string
	if r.ChangeID == "" {
		bad = append(bad, "changeId is required")
	}
	if !isHex(r.CommitSHA, 40) && !isHex(r.CommitSHA, 64) {
		bad = append(bad, "commitSha must be a 40 or 64 hex digit Git commit")
	}
	if !isHex(r.PlanSHA256, 64) {
		bad = append(bad, "planSha256 must be 64 lowercase hex digits")
	}
	if r.Target.Environment == "" {
		bad = append(bad, "target.environment is required")
	}
	if r.Actor == "" {
		bad = append(bad, "actor is required")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", verifier.ErrMalformed, strings.Join(bad, "; "))
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Decide answers a gate request from the ledger's state at now. Allow needs
// a plan.created record of this exact plan for this commit and target,
// within MaxPlanAge; its policy decision (if any, or required) not a denial
// and within MaxPolicyAge; and approvals binding this commit, plan and
// policy decision by the required groups, fresh at now, none by the author
// counted. An open break-glass allows, flagged as an emergency.
func (a *Approvals) Decide(ctx context.Context, req GateRequest, now time.Time) (*GateDecision, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	c, err := a.load(ctx, req.ChangeID)
	if err != nil {
		return nil, err
	}
	out := &GateDecision{Decision: Allow, Reasons: []string{}, RequiredApprovers: []string{}, Approvals: []Ref{}}
	var deny []string
	out.Target = req.Target
	plan := c.planEntry(req.PlanSHA256)
	if plan == nil {
		deny = append(deny, fmt.Sprintf("plan.missing: no plan.created record of plan %s for change %s", short(req.PlanSHA256), req.ChangeID))
	} else {
		p := plan.p
		out.RiskClass, out.Source = p.RiskClass, p.Source
		out.Target = mergedTarget(p.Target, req.Target)
		if p.Source.CommitSHA != "" && p.Source.CommitSHA != req.CommitSHA {
			deny = append(deny, fmt.Sprintf("plan.commit-mismatch: plan %s was made from commit %s, not %s", short(req.PlanSHA256), short(p.Source.CommitSHA), short(req.CommitSHA)))
		}
		if p.Target.Environment != req.Target.Environment || (p.Target.Stack != "" && req.Target.Stack != "" && p.Target.Stack != req.Target.Stack) {
			deny = append(deny, fmt.Sprintf("plan.target-mismatch: plan %s targets %s/%s, not %s/%s", short(req.PlanSHA256),
				p.Target.Environment, p.Target.Stack, req.Target.Environment, req.Target.Stack))
		}
		if age := now.Sub(p.OccurredAt); a.cfg.MaxPlanAge > 0 && age > a.cfg.MaxPlanAge {
			deny = append(deny, fmt.Sprintf("plan.stale: plan %s is %s old, more than %s", short(req.PlanSHA256), age.Round(time.Second), a.cfg.MaxPlanAge))
		}
		switch d := plan.e.Meta.Decision; {
		case d == nil && a.cfg.RequirePolicyDecision:
			deny = append(deny, fmt.Sprintf("policy.missing: plan %s has no policy decision", short(req.PlanSHA256)))
		case d == nil:
		case d.Result == "deny":
			deny = append(deny, fmt.Sprintf("policy.denied: the policy decision %s on plan %s is %q", short(d.Digest()), short(req.PlanSHA256), d.Result))
		case a.cfg.MaxPolicyAge > 0 && now.Sub(plan.e.ReceivedAt) > a.cfg.MaxPolicyAge:
			deny = append(deny, fmt.Sprintf("policy.stale: the policy decision %s is older than %s", short(d.Digest()), a.cfg.MaxPolicyAge))
		}
	}
	risk := out.RiskClass
	as := a.assess(c, Subject{
		ChangeID: req.ChangeID, CommitSHA: req.CommitSHA, PlanSHA256: req.PlanSHA256,
		Target: req.Target, RiskClass: risk, At: now,
	})
	if as.Required != nil {
		out.RequiredApprovers = as.Required
	}
	if as.Approvals != nil {
		out.Approvals = as.Approvals
	}
	if b := as.Breakglass; b != nil {
		out.Emergency = true
		out.Reasons = append(out.Reasons, fmt.Sprintf("emergency: break-glass %s is open (%s); approval must follow within %s", b.Incident, b.Reason, a.cfg.BreakglassReview))
		for _, d := range deny {
			out.Reasons = append(out.Reasons, "overridden by break-glass: "+d)
		}
		return out, nil
	}
	for _, f := range as.Findings {
		deny = append(deny, f.Code+": "+f.Message)
	}
	for _, f := range a.reviewsMissing(c, now, true) {
		deny = append(deny, f.Code+": "+f.Message)
	}
	if len(deny) > 0 {
		out.Decision, out.Reasons = Deny, deny
		return out, nil
	}
	for _, r := range as.Approvals {
		groups := "no group"
		if len(r.Groups) > 0 {
			groups = strings.Join(r.Groups, ", ")
		}
		fresh := "no expiry"
		if !r.ExpiresAt.IsZero() {
			fresh = "fresh until " + r.ExpiresAt.Format(time.RFC3339)
		}
		out.Reasons = append(out.Reasons, fmt.Sprintf("approval by %s (%s), entry %d, bound to commit %s and plan %s, %s",
			r.Approver, groups, r.Entry, short(req.CommitSHA), short(req.PlanSHA256), fresh))
	}
	if c.author != "" {
		out.Reasons = append(out.Reasons, fmt.Sprintf("no counted approver is the author (%s)", c.author))
	}
	if len(as.Required) > 0 {
		out.Reasons = append(out.Reasons, fmt.Sprintf("required groups %s covered (from %s, membership %s)",
			strings.Join(as.Required, ", "), as.RequiredFrom, short(a.membershipSHA256)))
	}
	return out, nil
}

// mergedTarget is the plan's target with the request's fields where the
// plan leaves them out.
func mergedTarget(plan, req evidence.Target) evidence.Target {
	or := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return evidence.Target{
		Environment: or(plan.Environment, req.Environment), Cloud: or(plan.Cloud, req.Cloud),
		Account: or(plan.Account, req.Account), Region: or(plan.Region, req.Region), Stack: or(plan.Stack, req.Stack),
		Cluster: or(plan.Cluster, req.Cluster), Namespace: or(plan.Namespace, req.Namespace),
		Application: or(plan.Application, req.Application), Service: or(plan.Service, req.Service),
		DataClass: or(plan.DataClass, req.DataClass),
	}
}
