package policies

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// ChangeReader reads the entries of one change from the log: Lookup
// lists their indexes in log order, Entry reads one. *ledger.Log
// implements it; it must see every acknowledged entry.
type ChangeReader interface {
	Lookup(ctx context.Context, q ledger.Query) ([]uint64, error)
	Entry(ctx context.Context, i uint64) (*evidence.Entry, error)
}

// ExceptionSource lists exceptions granted under any change, for the
// standing exceptions whose scope covers other changes. *Tracker
// implements it; it may lag the log by the entries it has not read yet.
type ExceptionSource interface {
	AllExceptions() []*Exception
}

// JudgeConfig wires a Judge.
type JudgeConfig struct {
	Set *Set
	Log ChangeReader
	// Contracts decide which records close a change and what it must
	// have; nil means DefaultContracts.
	Contracts *Contracts
	// Exceptions adds exceptions granted under other changes; nil means
	// only the change's own.
	Exceptions ExceptionSource
	// Production decides which environments are production; nil means
	// DefaultProduction.
	Production Environments
	// MaxExceptionLifetime bounds expiresAt - occurredAt of a grant.
	// Default 180 days.
	MaxExceptionLifetime time.Duration
	// MaxHistory bounds the entries of one change read per record.
	// Default 10000.
	MaxHistory int
	// Approvals is the approval judge: which approvals count for a
	// subject, and why the others do not. The policies read its judgement,
	// never an approval's claimed groups. nil: no approval counts.
	Approvals ApprovalAssessor
	// MaxBackfill bounds how far before its receipt a record's occurredAt
	// is believed (verifier.JudgedAt); default verifier.MaxBackfill.
	MaxBackfill time.Duration
	// Clock is the server's time; nil means time.Now.
	Clock func() time.Time
}

// ApprovalAssessor judges the approvals of a subject once, for every
// consumer (*approvals.Approvals).
type ApprovalAssessor interface {
	Assess(ctx context.Context, s approvals.Subject) (approvals.Assessment, error)
}

// Judge judges records with a policy set (it is an ingest.Judge through
// a one-line adapter: ingest sits above this package). Which records:
//
//   - plan.created, apply.*, sync.*, artifact.admitted and
//     breakglass.closed are evaluated: their entry carries the decision,
//     and each deny becomes a finding;
//   - a record of a kind that closes a change class (contracts' closedBy)
//     gets a completeness.missing finding when the change lacks evidence;
//   - exception.granted records are checked against the exception
//     invariants and refused with an *evidence.ValidationError;
//   - other kinds pass unjudged.
//
// Safe for concurrent use.
type Judge struct {
	cfg JudgeConfig
}

// Judgement is what the judge adds to an entry (ingest.Judgement's fields).
type Judgement struct {
	Findings []evidence.Finding
	Decision *evidence.Policy
}

// NewJudge returns a judge.
func NewJudge(cfg JudgeConfig) (*Judge, error) {
	if cfg.Set == nil || cfg.Log == nil {
		return nil, errors.New("policies: a judge needs a policy set and a log")
	}
	if cfg.Contracts == nil {
		cfg.Contracts = DefaultContracts()
	}
	if cfg.Production == nil {
		cfg.Production = DefaultProduction()
	}
	if cfg.MaxExceptionLifetime <= 0 {
		cfg.MaxExceptionLifetime = 180 * 24 * time.Hour
	}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = 10000
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxBackfill <= 0 {
		cfg.MaxBackfill = verifier.MaxBackfill
	}
	return &Judge{cfg: cfg}, nil
}

// phase is what the rules call a judged record's stage; "" is not judged.
func phase(k evidence.Kind) string {
	switch k {
	case evidence.KindPlanCreated:
		return "plan"
	case evidence.KindApplyStarted, evidence.KindApplyCompleted, evidence.KindApplyFailed:
		return "apply"
	case evidence.KindSyncStarted, evidence.KindSyncSucceeded, evidence.KindSyncFailed:
		return "sync"
	case evidence.KindArtifactAdmitted:
		return "admission"
	case evidence.KindBreakglassClosed:
		return "review"
	}
	return ""
}

// Judge judges one verified record.
func (j *Judge) Judge(ctx context.Context, v *verifier.Verified) (Judgement, error) {
	st := v.Statement
	p := &st.Predicate
	now := j.cfg.Clock()
	if p.Kind == evidence.KindExceptionGranted {
		return Judgement{}, checkGrant(p, now, j.cfg.MaxExceptionLifetime)
	}
	at := v.JudgedAt
	if at.IsZero() {
		at = verifier.JudgedAt(p.OccurredAt, now, j.cfg.MaxBackfill)
	}
	return j.judge(ctx, st, at)
}

// judge judges a statement at the instant at, the one time that decides
// the validity of the approvals and exceptions it relies on.
func (j *Judge) judge(ctx context.Context, st *evidence.Statement, at time.Time) (Judgement, error) {
	p := &st.Predicate
	ph := phase(p.Kind)
	closing := j.cfg.Contracts.closes(p.Kind)
	if ph == "" && !closing {
		return Judgement{}, nil
	}
	hist, err := j.history(ctx, p.ChangeID)
	if err != nil {
		return Judgement{}, err
	}
	var out Judgement
	if ph != "" {
		in, err := j.input(ctx, st, ph, hist, at)
		if err != nil {
			return Judgement{}, err
		}
		decisions, err := j.cfg.Set.Eval(ctx, in)
		if err != nil {
			return Judgement{}, err
		}
		plan := ph == "plan"
		out.Decision = &evidence.Policy{Result: Overall(decisions, plan), BundleSHA256: j.cfg.Set.Digest(), Decisions: decisions}
		out.Findings = decisionFindings(decisions, plan)
	}
	if closing {
		var f Facts
		for _, h := range hist {
			f.Add(h.st, h.decided, j.cfg.Production)
		}
		f.Add(st, out.Decision != nil, j.cfg.Production)
		if s := j.cfg.Contracts.Check(p.ChangeID, &f); s.Closed && !s.Complete() {
			out.Findings = append(out.Findings, evidence.Finding{
				Code: "completeness.missing", Severity: "high",
				Message:  fmt.Sprintf("%s closed without required evidence: %s", s.Class, strings.Join(s.Missing, ", ")),
				Evidence: map[string]string{"class": s.Class, "missing": strings.Join(s.Missing, ",")},
			})
		}
	}
	return out, nil
}

// PlanDecisionAt judges the change's latest plan.created record of the plan
// again, at the instant at, with the change as the log holds it now: what
// the apply gate asks, so that an exception that has expired (or ended)
// since the plan was judged no longer waives its rule. nil: no such plan.
func (j *Judge) PlanDecisionAt(ctx context.Context, changeID, planSHA256 string, at time.Time) (*evidence.Policy, error) {
	hist, err := j.history(ctx, changeID)
	if err != nil {
		return nil, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		p := &hist[i].st.Predicate
		if p.Kind == evidence.KindPlanCreated && p.Plan != nil && p.Plan.PlanSHA256 == planSHA256 {
			out, err := j.judge(ctx, hist[i].st, at)
			return out.Decision, err
		}
	}
	return nil, nil
}

// past is one earlier entry of the change; st is shared and read-only.
type past struct {
	index   uint64
	st      *evidence.Statement
	decided bool
}

func (j *Judge) history(ctx context.Context, changeID string) ([]past, error) {
	idx, err := j.cfg.Log.Lookup(ctx, ledger.Query{Name: ledger.TermChange, Value: changeID, Limit: j.cfg.MaxHistory})
	if err != nil {
		return nil, fmt.Errorf("policies: read change %s: %w", changeID, err)
	}
	out := make([]past, 0, len(idx))
	for _, i := range idx {
		// The records of a change arrive close together: the log serves
		// recent entries from memory, statements decoded.
		e, err := j.cfg.Log.Entry(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("policies: change %s: %w", changeID, err)
		}
		st, err := e.Statement()
		if err != nil {
			return nil, fmt.Errorf("policies: change %s: %w", changeID, err)
		}
		out = append(out, past{index: i, st: st, decided: e.Meta.Decision != nil})
	}
	return out, nil
}

// Overall is a policy's result from its decisions: deny if any denies,
// else warn if any warns, else allow. On a plan (plan true), which
// approvals bind to, a deny that names requiredApprovers is what those
// approvals lift, and the apply gate checks them: it makes the plan's
// result warn, not deny. Only a deny that approvals cannot lift (an
// exception can) makes a plan's result deny.
func Overall(ds []evidence.Decision, plan bool) string {
	result := "allow"
	for _, d := range ds {
		switch {
		case d.Result == "deny" && !(plan && len(d.RequiredApprovers) > 0):
			return "deny"
		case d.Result == "deny", d.Result == "warn":
			result = "warn"
		}
	}
	return result
}

// decisionFindings turns denials and exception use into findings, so
// that they are indexed and counted like every other finding. On a plan,
// a deny that approvals lift is an approval requirement, not a denial.
func decisionFindings(ds []evidence.Decision, plan bool) []evidence.Finding {
	var out []evidence.Finding
	for _, d := range ds {
		switch {
		case d.Result == "deny" && plan && len(d.RequiredApprovers) > 0:
			out = append(out, evidence.Finding{Code: "policy.approval-required", Severity: "info", Message: d.Message,
				Evidence: map[string]string{"ruleId": d.RuleID, "requiredApprovers": strings.Join(d.RequiredApprovers, ",")}})
		case d.Result == "deny":
			out = append(out, evidence.Finding{Code: "policy.deny", Severity: cmp.Or(d.Severity, "high"), Message: d.Message,
				Evidence: map[string]string{"ruleId": d.RuleID}})
		}
		if d.ExceptionID != "" {
			out = append(out, evidence.Finding{Code: "policy.exception-used", Severity: "info",
				Message:  fmt.Sprintf("rule %s waived by exception %s", d.RuleID, d.ExceptionID),
				Evidence: map[string]string{"ruleId": d.RuleID, "exceptionId": d.ExceptionID}})
		}
		for _, ev := range d.Evidence {
			if id, ok := strings.CutPrefix(ev, "exception.expired."); ok {
				out = append(out, evidence.Finding{Code: "policy.exception-expired", Severity: "high",
					Message:  fmt.Sprintf("exception %s for rule %s has expired: the rule applies again", id, d.RuleID),
					Evidence: map[string]string{"ruleId": d.RuleID, "exceptionId": id}})
			}
		}
	}
	return out
}

// sortDecisions orders decisions deterministically, so that equal inputs
// give equal decision digests.
func sortDecisions(ds []evidence.Decision) {
	slices.SortFunc(ds, func(a, b evidence.Decision) int {
		return cmp.Or(cmp.Compare(a.RuleID, b.RuleID), cmp.Compare(a.Result, b.Result), cmp.Compare(a.Message, b.Message))
	})
}
