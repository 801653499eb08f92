// Package approvals decides whether a change's approvals count and
// whether the change may be applied: the approval binding (an approval
// counts for the exact commit, plan and policy decision it names, from an
// approver the directory puts in the required groups, not revoked, not
// expired, not the author's own), break-glass and its review window, and
// the apply gate's approval half. It is the one place these facts are
// decided: the ingest judge, the gate, GraphQL and the evidence packs all
// ask it. See docs/approvals.md.
package approvals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// Finding codes of the approval binding (docs/approvals.md) and of
// break-glass. Every finding is stored with the entry it was computed for.
const (
	FindingApprovalMissing        = "approval.missing"
	FindingApprovalPlanMismatch   = "approval.plan-mismatch"
	FindingApprovalCommitMismatch = "approval.commit-mismatch"
	FindingApprovalPolicyMismatch = "approval.policy-mismatch"
	FindingApprovalExpired        = "approval.expired"
	FindingApprovalRevoked        = "approval.revoked"
	FindingApprovalSelfApproved   = "approval.self-approved"
	FindingApprovalGroupMissing   = "approval.group-missing"
	// FindingApprovalUnauthorized is set on an approval.granted entry whose
	// signer is neither the approver nor allowed to relay approvals; such an
	// approval never counts.
	FindingApprovalUnauthorized = "approval.unauthorized-signer"
	// FindingEmergency flags an apply under an open break-glass.
	FindingEmergency = "emergency"
	// FindingBreakglassReviewMissing: no approval of the applied plan
	// arrived within the review window after an emergency apply.
	FindingBreakglassReviewMissing = "breakglass.review-missing"
)

// ChangeLog reads the acknowledged entries of one change, in log order. It
// must be safe for concurrent use; an error means the state could not be
// read (the caller retries), never that the change is unknown (no entries).
type ChangeLog interface {
	ChangeEntries(ctx context.Context, changeID string) ([]*evidence.Entry, error)
}

// ChangeLogFunc adapts a function to ChangeLog.
type ChangeLogFunc func(ctx context.Context, changeID string) ([]*evidence.Entry, error)

// ChangeEntries calls f.
func (f ChangeLogFunc) ChangeEntries(ctx context.Context, changeID string) ([]*evidence.Entry, error) {
	return f(ctx, changeID)
}

// Rule is the fallback requirement for changes whose plan carries no
// policy decision naming required approvers. Empty Environment or RiskClass
// matches any; the first matching rule applies.
type Rule struct {
	Environment string   `json:"environment,omitempty" yaml:"environment"`
	RiskClass   string   `json:"riskClass,omitempty" yaml:"riskClass"`
	Groups      []string `json:"groups,omitempty" yaml:"groups"`
	// MinApprovals is how many distinct approvers must approve; nil means 1.
	// 0 waives approval (e.g. for a sandbox).
	MinApprovals *int `json:"minApprovals,omitempty" yaml:"minApprovals"`
}

// Config is the approval policy in force.
type Config struct {
	// Groups is the directory: group name to member identities. Usually
	// TrustConfig.Groups.
	Groups map[string][]string
	// Rules are the fallback requirements, first match wins. With none
	// matching, one approval by anyone but the author is required.
	Rules []Rule
	// MaxApprovalAge bounds how old an approval may be when used, on top of
	// its own expiry; MaxPlanAge and MaxPolicyAge how old the plan and its
	// policy decision may be when the gate decides. Zero means unbounded.
	MaxApprovalAge, MaxPlanAge, MaxPolicyAge time.Duration
	// RequirePolicyDecision makes the gate deny a plan without a policy
	// decision.
	RequirePolicyDecision bool
	// BreakglassReview is how long after an emergency apply an approval of
	// the applied plan may arrive. Default 24h.
	BreakglassReview time.Duration
	// MaxEntries bounds the entries read per change. Default 10,000.
	MaxEntries int
}

// Approvals computes approval-binding and break-glass findings and the apply
// gate's decisions from the ledger's state. It does no I/O of its own: it
// reads entries through ChangeLog. Safe for concurrent use.
type Approvals struct {
	changes          ChangeLog
	cfg              Config
	memberOf         map[string][]string // identity -> sorted groups
	membershipSHA256 string
}

// New builds the approval checker.
func New(changes ChangeLog, cfg Config) (*Approvals, error) {
	if changes == nil {
		return nil, errors.New("approvals: a change log is required")
	}
	if cfg.BreakglassReview <= 0 {
		cfg.BreakglassReview = 24 * time.Hour
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	for i, r := range cfg.Rules {
		if r.MinApprovals != nil && *r.MinApprovals < 0 {
			return nil, fmt.Errorf("approvals.rules[%d]: minApprovals must not be negative", i)
		}
	}
	a := &Approvals{changes: changes, cfg: cfg, memberOf: map[string][]string{}}
	for g, members := range cfg.Groups {
		for _, m := range members {
			a.memberOf[m] = append(a.memberOf[m], g)
		}
	}
	for _, gs := range a.memberOf {
		sort.Strings(gs)
	}
	// encoding/json sorts map keys: equal directories give equal digests.
	b, err := json.Marshal(cfg.Groups)
	if err != nil {
		return nil, fmt.Errorf("approvals: encode the group directory: %w", err)
	}
	sum := sha256.Sum256(b)
	a.membershipSHA256 = hex.EncodeToString(sum[:])
	return a, nil
}

// MembershipSHA256 is the digest of the group-membership snapshot in use:
// SHA-256 of the directory's JSON (keys sorted). Findings name it.
func (a *Approvals) MembershipSHA256() string { return a.membershipSHA256 }

// entry is one parsed entry of a change.
type entry struct {
	e *evidence.Entry
	p evidence.Transition
}

func (x entry) has(code string) bool {
	return slices.ContainsFunc(x.e.Meta.Findings, func(f evidence.Finding) bool { return f.Code == code })
}

// change is a change's state as the log holds it.
type change struct {
	entries []entry
	author  string // from change.opened
}

func (a *Approvals) load(ctx context.Context, changeID string) (*change, error) {
	es, err := a.changes.ChangeEntries(ctx, changeID)
	if err != nil {
		return nil, fmt.Errorf("read change %q: %w", changeID, err)
	}
	if len(es) > a.cfg.MaxEntries {
		es = es[len(es)-a.cfg.MaxEntries:]
	}
	c := &change{entries: make([]entry, 0, len(es))}
	for _, e := range es {
		st, err := e.Statement()
		if err != nil {
			return nil, fmt.Errorf("change %q: %w", changeID, err)
		}
		p := st.Predicate
		c.entries = append(c.entries, entry{e: e, p: p})
		if p.Kind == evidence.KindChangeOpened && p.Change != nil && p.Change.Author != "" {
			c.author = p.Change.Author
		}
	}
	return c, nil
}

// Subject is what must have been approved: one plan of one commit of one
// change, applied at At.
type Subject struct {
	ChangeID   string
	CommitSHA  string
	PlanSHA256 string
	Target     evidence.Target
	RiskClass  string
	At         time.Time
}

// Ref is an approval that counts.
type Ref struct {
	Approver   string    `json:"approver"`
	Groups     []string  `json:"groups"` // from the directory, not the approval's claim
	Entry      uint64    `json:"entry"`
	ApprovedAt time.Time `json:"approvedAt"`
	ExpiresAt  time.Time `json:"expiresAt,omitzero"`
}

// Verdict is the one judgement of one approval.granted entry for a
// subject: whether it counts, and if not, the one reason why (a finding
// code: approval.unauthorized-signer, .revoked, .plan-mismatch,
// .commit-mismatch, .policy-mismatch, .expired or .self-approved). The
// policies, the gate, GraphQL and the metrics all consume this judgement;
// none reads an approval's claimed groups for a decision.
type Verdict struct {
	Entry         uint64    `json:"entry"`
	Approver      string    `json:"approver"`
	Groups        []string  `json:"groups"`        // from the directory
	ClaimedGroups []string  `json:"claimedGroups"` // what the approval says; never decides
	ApprovedAt    time.Time `json:"approvedAt"`
	ExpiresAt     time.Time `json:"expiresAt,omitzero"`
	Counts        bool      `json:"counts"`
	Reason        string    `json:"reason,omitempty"`
	Message       string    `json:"message,omitempty"`
}

// Assessment is the approval state of a subject.
type Assessment struct {
	// Verdicts judge every approval given by the subject's time, counted
	// or not, in log order.
	Verdicts []Verdict
	// Findings are the approval.* findings (empty when all is in order), or
	// the emergency finding under break-glass.
	Findings []evidence.Finding
	// Required lists the groups that must approve, and RequiredFrom where
	// that came from: "policy:<policyDecisionSha256>" or "config".
	Required     []string
	RequiredFrom string
	// Approvals are the approvals that count.
	Approvals []Ref
	// Breakglass is the open break-glass the subject falls under, if any.
	Breakglass *evidence.Breakglass
	// plan is the latest plan.created entry of the subject's plan.
	plan *entry
}

// planEntry returns the latest plan.created entry for the plan hash.
func (c *change) planEntry(planSHA256 string) *entry {
	for i := len(c.entries) - 1; i >= 0; i-- {
		x := &c.entries[i]
		if x.p.Kind == evidence.KindPlanCreated && x.p.Plan != nil && x.p.Plan.PlanSHA256 == planSHA256 {
			return x
		}
	}
	return nil
}

// openBreakglass returns the break-glass open at t: opened before t, not
// expired, not closed (same incident) before t. Closing one incident leaves
// the others open; of several open, the latest opened is returned.
func (c *change) openBreakglass(t time.Time) *evidence.Breakglass {
	var open []*evidence.Breakglass // in the order opened
	for _, x := range c.entries {
		b := x.p.Breakglass
		if b == nil || x.p.OccurredAt.After(t) {
			continue
		}
		switch x.p.Kind {
		case evidence.KindBreakglassOpened:
			if b.ExpiresAt.IsZero() || t.Before(b.ExpiresAt) {
				open = append(open, b)
			}
		case evidence.KindBreakglassClosed:
			open = slices.DeleteFunc(open, func(o *evidence.Breakglass) bool { return o.Incident == b.Incident })
		}
	}
	if len(open) == 0 {
		return nil
	}
	return open[len(open)-1]
}

func finding(code, severity, msg string, ev map[string]string) evidence.Finding {
	return evidence.Finding{Code: code, Severity: severity, Message: msg, Evidence: ev}
}

// requirement returns the groups that must approve, how many approvers, and
// where the requirement comes from.
func (a *Approvals) requirement(s Subject, plan *entry) (groups []string, min int, from string) {
	if plan != nil && plan.e.Meta.Decision != nil {
		d := plan.e.Meta.Decision
		for _, r := range d.Decisions {
			for _, g := range r.RequiredApprovers {
				if !slices.Contains(groups, g) {
					groups = append(groups, g)
				}
			}
		}
		if len(groups) > 0 {
			return groups, 1, "policy:" + d.Digest()
		}
	}
	for _, r := range a.cfg.Rules {
		if (r.Environment == "" || r.Environment == s.Target.Environment) && (r.RiskClass == "" || r.RiskClass == s.RiskClass) {
			min = 1
			if r.MinApprovals != nil {
				min = *r.MinApprovals
			}
			return slices.Clone(r.Groups), min, "config"
		}
	}
	return nil, 1, "config"
}

// Assess computes the approval state of s from the change's entries
// acknowledged so far.
func (a *Approvals) Assess(ctx context.Context, s Subject) (Assessment, error) {
	c, err := a.load(ctx, s.ChangeID)
	if err != nil {
		return Assessment{}, err
	}
	return a.assess(c, s), nil
}

// verdicts judges each approval of the change given by s.At.
func (a *Approvals) verdicts(c *change, s Subject, policyDigest string) []Verdict {
	var out []Verdict
	for i, x := range c.entries {
		ap := x.p.Approval
		if x.p.Kind != evidence.KindApprovalGranted || ap == nil {
			continue
		}
		if x.p.OccurredAt.After(s.At) && ap.ApprovedAt.After(s.At) {
			continue // not yet given at the time of the subject
		}
		v := Verdict{Entry: x.e.Index, Approver: ap.Approver, Groups: a.memberOf[ap.Approver],
			ClaimedGroups: ap.Groups, ApprovedAt: ap.ApprovedAt, ExpiresAt: ap.ExpiresAt}
		reject := func(code, msg string) { v.Reason, v.Message = code, msg }
		switch {
		case x.has(FindingApprovalUnauthorized):
			reject(FindingApprovalUnauthorized, fmt.Sprintf("the approval by %s (entry %d) was signed by someone neither the approver nor allowed to relay approvals", ap.Approver, x.e.Index))
		case revoked(c.entries[i+1:], ap, s.At):
			reject(FindingApprovalRevoked, fmt.Sprintf("the approval by %s (entry %d) was revoked", ap.Approver, x.e.Index))
		case s.PlanSHA256 != "" && ap.PlanSHA256 != s.PlanSHA256:
			reject(FindingApprovalPlanMismatch, fmt.Sprintf("%s approved plan %s, not the applied plan %s (entry %d)", ap.Approver, short(ap.PlanSHA256), short(s.PlanSHA256), x.e.Index))
		case ap.CommitSHA != s.CommitSHA:
			reject(FindingApprovalCommitMismatch, fmt.Sprintf("%s approved commit %s, not %s (entry %d)", ap.Approver, short(ap.CommitSHA), short(s.CommitSHA), x.e.Index))
		case policyDigest != "" && ap.PolicyDecisionSHA256 != policyDigest:
			reject(FindingApprovalPolicyMismatch, fmt.Sprintf("%s approved policy decision %s, not the plan's %s (entry %d)", ap.Approver, short(ap.PolicyDecisionSHA256), short(policyDigest), x.e.Index))
		case !ap.ExpiresAt.IsZero() && !s.At.Before(ap.ExpiresAt):
			reject(FindingApprovalExpired, fmt.Sprintf("the approval by %s expired at %s (entry %d)", ap.Approver, ap.ExpiresAt.Format(time.RFC3339), x.e.Index))
		case a.cfg.MaxApprovalAge > 0 && s.At.Sub(ap.ApprovedAt) > a.cfg.MaxApprovalAge:
			reject(FindingApprovalExpired, fmt.Sprintf("the approval by %s is older than %s (entry %d)", ap.Approver, a.cfg.MaxApprovalAge, x.e.Index))
		case c.author != "" && ap.Approver == c.author:
			reject(FindingApprovalSelfApproved, fmt.Sprintf("%s approved their own change (entry %d)", ap.Approver, x.e.Index))
		default:
			v.Counts = true
		}
		out = append(out, v)
	}
	return out
}

// assess computes the approval state of s from the change's entries.
func (a *Approvals) assess(c *change, s Subject) Assessment {
	var out Assessment
	out.plan = c.planEntry(s.PlanSHA256)
	var policyDigest string
	if out.plan != nil && out.plan.e.Meta.Decision != nil {
		policyDigest = out.plan.e.Meta.Decision.Digest()
	}
	out.Verdicts = a.verdicts(c, s, policyDigest)
	if b := c.openBreakglass(s.At); b != nil {
		out.Breakglass = b
		out.Findings = []evidence.Finding{finding(FindingEmergency, evidence.SeverityWarning,
			fmt.Sprintf("applied under break-glass %s (%s); an approval of plan %s must follow within %s", b.Incident, b.Reason, short(s.PlanSHA256), a.cfg.BreakglassReview),
			map[string]string{"incident": b.Incident})}
		return out
	}
	groups, min, from := a.requirement(s, out.plan)
	out.Required, out.RequiredFrom = groups, from

	// Unauthorized approvals were never given: they do not make an
	// approval "present" for approval.missing.
	approvers := map[string]bool{}
	granted := 0
	for _, v := range out.Verdicts {
		if v.Reason == FindingApprovalUnauthorized {
			continue
		}
		granted++
		if v.Counts {
			approvers[v.Approver] = true
			out.Approvals = append(out.Approvals, Ref{
				Approver: v.Approver, Groups: v.Groups, Entry: v.Entry, ApprovedAt: v.ApprovedAt, ExpiresAt: v.ExpiresAt,
			})
		}
	}
	var missing []string
	for _, g := range groups {
		if !slices.ContainsFunc(out.Approvals, func(r Ref) bool { return slices.Contains(r.Groups, g) }) {
			missing = append(missing, g)
		}
	}
	if len(approvers) >= min && len(missing) == 0 {
		return out
	}
	// Not enough: say why, approval by approval.
	ev := func(index uint64) map[string]string {
		return map[string]string{"approvalEntry": fmt.Sprint(index), "planSha256": s.PlanSHA256, "commitSha": s.CommitSHA}
	}
	if granted == 0 {
		out.Findings = append(out.Findings, finding(FindingApprovalMissing, evidence.SeverityError,
			fmt.Sprintf("no approval of change %s", s.ChangeID), map[string]string{"planSha256": s.PlanSHA256, "commitSha": s.CommitSHA}))
	}
	for _, v := range out.Verdicts {
		if !v.Counts && v.Reason != FindingApprovalUnauthorized {
			out.Findings = append(out.Findings, finding(v.Reason, evidence.SeverityError, v.Message, ev(v.Entry)))
		}
	}
	if len(missing) > 0 {
		out.Findings = append(out.Findings, finding(FindingApprovalGroupMissing, evidence.SeverityError,
			fmt.Sprintf("no valid approval by a member of %s", strings.Join(missing, ", ")),
			map[string]string{
				"missingGroups": strings.Join(missing, ","), "requiredGroups": strings.Join(groups, ","),
				"requirementFrom": from, "membershipSha256": a.membershipSHA256,
			}))
	} else if granted > 0 && len(approvers) < min {
		out.Findings = append(out.Findings, finding(FindingApprovalMissing, evidence.SeverityError,
			fmt.Sprintf("%d valid approval(s) of change %s, %d required", len(approvers), s.ChangeID, min),
			map[string]string{"planSha256": s.PlanSHA256, "commitSha": s.CommitSHA, "requirementFrom": from}))
	}
	return out
}

// revoked reports whether a later approval.revoked by the same approver
// withdraws ap (for the same plan, when the revocation names one) before t.
func revoked(later []entry, ap *evidence.Approval, t time.Time) bool {
	for _, x := range later {
		r := x.p.Approval
		if x.p.Kind != evidence.KindApprovalRevoked || r == nil || r.Approver != ap.Approver || x.p.OccurredAt.After(t) {
			continue
		}
		if r.PlanSHA256 == "" || r.PlanSHA256 == ap.PlanSHA256 {
			return true
		}
	}
	return false
}

// reviewsMissing returns a breakglass.review-missing finding for every
// emergency apply of the change whose review window has passed at t without
// an approval of the applied plan within it, unless an earlier entry already
// says so. For the gate (gate true) every overdue review counts, flagged or
// not, until an approval of the plan arrives, late or not.
func (a *Approvals) reviewsMissing(c *change, t time.Time, gate bool) []evidence.Finding {
	var out []evidence.Finding
	for i, x := range c.entries {
		if !isApply(x.p.Kind) || x.p.Apply == nil || !x.has(FindingEmergency) {
			continue
		}
		deadline := x.p.OccurredAt.Add(a.cfg.BreakglassReview)
		if !t.After(deadline) {
			continue
		}
		idx := fmt.Sprint(x.e.Index)
		reviewed, flagged := false, false
		for _, y := range c.entries[i+1:] {
			if ap := y.p.Approval; y.p.Kind == evidence.KindApprovalGranted && ap != nil && !y.has(FindingApprovalUnauthorized) &&
				ap.PlanSHA256 == x.p.Apply.PlanSHA256 && (gate || !ap.ApprovedAt.After(deadline)) {
				reviewed = true
			}
			if slices.ContainsFunc(y.e.Meta.Findings, func(f evidence.Finding) bool {
				return f.Code == FindingBreakglassReviewMissing && f.Evidence["applyEntry"] == idx
			}) {
				flagged = true
			}
		}
		if !reviewed && (gate || !flagged) {
			out = append(out, finding(FindingBreakglassReviewMissing, evidence.SeverityError,
				fmt.Sprintf("emergency apply (entry %d) of plan %s has no approval within %s", x.e.Index, short(x.p.Apply.PlanSHA256), a.cfg.BreakglassReview),
				map[string]string{"applyEntry": idx, "planSha256": x.p.Apply.PlanSHA256, "deadline": deadline.Format(time.RFC3339)}))
		}
	}
	return out
}

// Judge computes the findings a verified record gets at ingest:
// approval.unauthorized-signer on approvals, the approval binding of every
// apply.*, and break-glass reviews that are overdue.
func (a *Approvals) Judge(ctx context.Context, v *verifier.Verified) ([]evidence.Finding, error) {
	p := v.Statement.Predicate
	switch {
	case p.Kind == evidence.KindApprovalGranted && p.Approval != nil:
		if v.RelaysApprovals || (v.Approver != "" && v.Approver == p.Approval.Approver) {
			return nil, nil
		}
		return []evidence.Finding{finding(FindingApprovalUnauthorized, evidence.SeverityError,
			fmt.Sprintf("signed by %s, who is neither the approver %s nor allowed to relay approvals", v.Signer.Name, p.Approval.Approver),
			map[string]string{"signer": v.Signer.Name, "approver": p.Approval.Approver})}, nil
	case isApply(p.Kind) && p.Apply != nil:
		c, err := a.load(ctx, p.ChangeID)
		if err != nil {
			return nil, err
		}
		at := v.JudgedTime()
		as := a.assess(c, Subject{
			ChangeID: p.ChangeID, CommitSHA: p.Source.CommitSHA, PlanSHA256: p.Apply.PlanSHA256,
			Target: p.Target, RiskClass: p.RiskClass, At: at,
		})
		return append(as.Findings, a.reviewsMissing(c, at, false)...), nil
	case p.Kind == evidence.KindBreakglassClosed || p.Kind == evidence.KindGateDecided || p.Kind == evidence.KindVerificationCompleted:
		c, err := a.load(ctx, p.ChangeID)
		if err != nil {
			return nil, err
		}
		return a.reviewsMissing(c, v.JudgedTime(), false), nil
	}
	return nil, nil
}

func isApply(k evidence.Kind) bool {
	return k == evidence.KindApplyStarted || k == evidence.KindApplyCompleted || k == evidence.KindApplyFailed
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	if sha == "" {
		return "(none)"
	}
	return sha
}
