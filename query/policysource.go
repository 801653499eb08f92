package query

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	// Summaries, if set, shares the per-environment aggregates between
	// callers for up to its MaxAge: computing them walks every change the
	// tracker holds (about a second at 150,000 changes), which concurrent
	// dashboards must not repeat per query.
	Summaries *EnvironmentSummaries
}

// EnvironmentSummaries caches the completeness of every environment.
type EnvironmentSummaries struct {
	MaxAge time.Duration
	// Clock, if set, is what MaxAge is measured by; nil means time.Now.
	// Tests move it to age the summaries without waiting.
	Clock func() time.Time

	mu    sync.Mutex // held while computing, so concurrent callers share one pass
	at    time.Time
	upTo  uint64 // tracker entries folded in when computed
	byEnv map[string]*Completeness
}

func (e *EnvironmentSummaries) get(t *policies.Tracker, env string) *Completeness {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now
	if e.Clock != nil {
		now = e.Clock
	}
	if e.byEnv == nil || t.Processed() != e.upTo && now().Sub(e.at) > e.MaxAge {
		e.upTo, e.at = t.Processed(), now()
		e.byEnv = summarize(t)
	}
	if c, ok := e.byEnv[env]; ok {
		return c
	}
	return &Completeness{Environment: env, Classes: []ClassCompleteness{}, Missing: []string{}}
}

// maxCatchUp bounds how long an answer waits for the tracker to fold in the
// entries appended before it. That is normally milliseconds; after a start
// the tracker replays the whole log, a minute at a million entries, which a
// query must not wait out while holding one of the few query slots.
const maxCatchUp = time.Second

// ErrCatchingUp is returned while the tracker replays the log after a start.
var ErrCatchingUp = errors.New("completeness is still catching up with the log after a start; retry shortly")

func (p PolicyCompleteness) caughtUp(ctx context.Context) error {
	wait, cancel := context.WithTimeout(ctx, maxCatchUp)
	defer cancel()
	err := p.Tracker.WaitFor(wait, p.Log.Size())
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		return ErrCatchingUp
	}
	return fmt.Errorf("completeness: waiting for the tracker: %w", err)
}

// Environment aggregates the environment's changes that a contract class
// applies to. Missing counts the evidence closed changes lack.
func (p PolicyCompleteness) Environment(ctx context.Context, env string) (*Completeness, error) {
	if err := p.caughtUp(ctx); err != nil {
		return nil, err
	}
	if p.Summaries != nil {
		return p.Summaries.get(p.Tracker, env), nil
	}
	if c, ok := summarize(p.Tracker)[env]; ok {
		return c, nil
	}
	return &Completeness{Environment: env, Classes: []ClassCompleteness{}, Missing: []string{}}, nil
}

// summarize aggregates every environment's changes in one pass over the
// tracker. Missing counts the evidence closed changes lack.
func summarize(t *policies.Tracker) map[string]*Completeness {
	out := map[string]*Completeness{}
	envOf := func(env string) *Completeness {
		c := out[env]
		if c == nil {
			c = &Completeness{Environment: env, Classes: []ClassCompleteness{}}
			out[env] = c
		}
		return c
	}
	for _, r := range t.Rates() {
		c := envOf(r.Environment)
		c.Changes += r.Changes
		c.Closed += r.Closed
		c.Complete += r.Complete
		c.Classes = append(c.Classes, ClassCompleteness{Class: r.Class, Changes: r.Changes, Closed: r.Closed, Complete: r.Complete, Rate: r.Rate})
	}
	missing := t.Missing()
	for env, c := range out {
		m := missing[env]
		c.Missing = make([]string, 0, len(m))
		for x := range m {
			c.Missing = append(c.Missing, x)
		}
		slices.SortFunc(c.Missing, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	}
	return out
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
