package query

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"evident.dev/evident/policies"
)

// PolicyCompleteness is the CompletenessSource of a server that judges
// with its policies: the policies Tracker's completeness per change and
// its rates by environment and class. The Tracker folds the log in behind
// the appends, so each answer first waits until it has folded in every
// entry the log held when asked: a reader sees what it has just appended.
type PolicyCompleteness struct {
	Tracker *policies.Tracker
	Log     interface{ Size() uint64 }
}

func (p PolicyCompleteness) caughtUp(ctx context.Context) error {
	if err := p.Tracker.WaitFor(ctx, p.Log.Size()); err != nil {
		return fmt.Errorf("completeness: waiting for the tracker: %w", err)
	}
	return nil
}

// Environment aggregates the environment's changes that a contract class
// applies to. Missing counts the evidence closed changes lack.
func (p PolicyCompleteness) Environment(ctx context.Context, env string) (*Completeness, error) {
	if err := p.caughtUp(ctx); err != nil {
		return nil, err
	}
	c := &Completeness{Environment: env, Classes: []ClassCompleteness{}}
	for _, r := range p.Tracker.Rates() {
		if r.Environment != env {
			continue
		}
		c.Changes += r.Changes
		c.Closed += r.Closed
		c.Complete += r.Complete
		c.Classes = append(c.Classes, ClassCompleteness{Class: r.Class, Changes: r.Changes, Closed: r.Closed, Complete: r.Complete, Rate: r.Rate})
	}
	missing := map[string]int{}
	for _, s := range p.Tracker.Changes(func(s policies.Status) bool { return s.Environment == env && s.Class != "" && s.Closed }) {
		for _, m := range s.Missing {
			missing[m]++
		}
	}
	c.Missing = make([]string, 0, len(missing))
	for m := range missing {
		c.Missing = append(c.Missing, m)
	}
	slices.SortFunc(c.Missing, func(a, b string) int { return cmp.Or(cmp.Compare(missing[b], missing[a]), cmp.Compare(a, b)) })
	return c, nil
}

// Change is one change's status against its class's contract, or nil
// when the log has no record of it.
func (p PolicyCompleteness) Change(ctx context.Context, changeID string) (*ChangeCompleteness, error) {
	if err := p.caughtUp(ctx); err != nil {
		return nil, err
	}
	s, ok := p.Tracker.Change(changeID)
	if !ok {
		return nil, nil
	}
	cc := &ChangeCompleteness{Class: s.Class, Closed: s.Closed, Present: s.Present, Missing: s.Missing}
	cc.Required = slices.Sorted(slices.Values(slices.Concat(s.Present, s.Missing)))
	return cc, nil
}

// Expiring lists the exceptions the Tracker holds in force at now that
// expire within the window (ExceptionSource).
func (p PolicyCompleteness) Expiring(ctx context.Context, now time.Time, within time.Duration) ([]ExpiringException, error) {
	if err := p.caughtUp(ctx); err != nil {
		return nil, err
	}
	es := p.Tracker.Expiring(now, within)
	out := make([]ExpiringException, len(es))
	for i, e := range es {
		out[i] = ExpiringException{Index: e.Index, ExpiresAt: e.ExpiresAt}
	}
	slices.SortFunc(out, func(a, b ExpiringException) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), cmp.Compare(a.Index, b.Index))
	})
	return out, nil
}
