package policies

import (
	"context"
	"fmt"
	"strings"
	"time"

	"evident.dev/evident/approvals"
)

// Gate is the apply gate: the approval judge's decision at the time of
// asking, and the plan's policies judged again at that time, so that no plan
// the policies would deny now is allowed (an exception that has expired
// since the plan was judged waives nothing). An ingest.Decider.
type Gate struct {
	Approvals *approvals.Approvals
	Policies  *Judge // nil: policies off, the approval judge decides alone
}

// Decide decides a gate request at now.
func (g Gate) Decide(ctx context.Context, req approvals.GateRequest, now time.Time) (*approvals.GateDecision, error) {
	d, err := g.Approvals.Decide(ctx, req, now)
	if err != nil || g.Policies == nil {
		return d, err
	}
	pol, err := g.Policies.PlanDecisionAt(ctx, req.ChangeID, req.PlanSHA256, now)
	if err != nil {
		return nil, fmt.Errorf("gate: judge the plan's policies now: %w", err)
	}
	if pol == nil || pol.Result != "deny" {
		return d, nil
	}
	var reasons []string
	for _, x := range pol.Decisions {
		// A deny that approvals lift is the approval judge's to report.
		if x.Result != "deny" || len(x.RequiredApprovers) > 0 {
			continue
		}
		code := "policy.deny"
		for _, ev := range x.Evidence {
			if strings.HasPrefix(ev, "exception.expired.") {
				code = "policy.exception-expired"
			}
		}
		reasons = append(reasons, fmt.Sprintf("%s: %s (rule %s, judged now)", code, x.Message, x.RuleID))
	}
	if d.Emergency {
		for _, r := range reasons {
			d.Reasons = append(d.Reasons, "overridden by break-glass: "+r)
		}
		return d, nil
	}
	if d.Decision == approvals.Allow {
		d.Decision, d.Reasons = approvals.Deny, nil
	}
	d.Reasons = append(d.Reasons, reasons...)
	return d, nil
}
