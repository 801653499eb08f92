package query_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/policies"
	"evident.dev/evident/query"
)

// With Summaries, an environment's completeness is computed once and shared
// for MaxAge, then recomputed from what the tracker has folded in since.
func TestEnvironmentSummariesShareThenRefresh(t *testing.T) {
	// The policies are off: the staging change lacks its policy evidence
	// until a policy.evaluated record arrives.
	h := newHarnessPolicies(t, tenancyConfig(), false)
	h.loadDemo()
	tracker := policies.NewTracker(h.log, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = tracker.Run(ctx) }()
	const maxAge = 300 * time.Millisecond
	now := time.Now()
	clock := func() time.Time { return now }
	src := query.PolicyCompleteness{Tracker: tracker, Log: h.log, Summaries: &query.EnvironmentSummaries{MaxAge: maxAge, Clock: clock}}

	first, err := src.Environment(ctx, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if first.Closed != 1 || first.Complete != 0 {
		t.Fatalf("staging before: %+v", first)
	}
	// The staging change's missing policy evaluation arrives.
	pe := demoStatement(t, "CHG-2026-06-24-0101", evidence.KindPolicyEvaluated)
	pe.Predicate.ChangeID = "CHG-2026-06-30-0909"
	pe.Predicate.Target = demoStatement(t, "CHG-2026-06-30-0909", evidence.KindPlanCreated).Predicate.Target
	pe.Predicate.RiskClass = "medium"
	h.post(pe)

	now = now.Add(maxAge) // still within MaxAge
	shared, err := src.Environment(ctx, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if shared != first {
		t.Fatalf("within MaxAge the summary was recomputed: %+v", shared)
	}
	now = now.Add(time.Millisecond)
	fresh, err := src.Environment(ctx, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Complete != 1 {
		t.Fatalf("after MaxAge the summary still shows %+v", fresh)
	}
	if none, err := src.Environment(ctx, "nowhere"); err != nil || none.Changes != 0 || none.Missing == nil {
		t.Fatalf("unknown environment: %+v, %v", none, err)
	}
}

// While the tracker has not folded in the log (here: it is not running, as
// while it replays the log after a start), a completeness answer says so
// within about a second instead of holding its query slot until the
// query's own timeout.
func TestCompletenessCatchingUp(t *testing.T) {
	h := newHarness(t, tenancyConfig())
	h.loadDemo()
	src := query.PolicyCompleteness{Tracker: policies.NewTracker(h.log, nil, nil), Log: h.log}
	start := time.Now()
	_, err := src.Environment(t.Context(), "staging")
	if !errors.Is(err, query.ErrCatchingUp) {
		t.Fatalf("with the tracker behind: %v", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("answered after %s", waited)
	}
}
