package policies

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/progress"
	"evident.dev/evident/ledger"
)

// TailLog is the log as a projection reads it. *ledger.Log implements it.
type TailLog interface {
	// Wait blocks until the log holds more than size entries and returns
	// its size; it returns ledger.ErrClosed once the log closes.
	Wait(ctx context.Context, size uint64) (uint64, error)
	// Entry returns entry i; a recent one comes with its statement decoded.
	Entry(ctx context.Context, i uint64) (*evidence.Entry, error)
}

// Tracker is a projection of the log: every change's evidence
// completeness against the contracts, and every exception. It tails the
// log from its first entry (its state lives in memory and is rebuilt at
// start), folding each entry in once, so a query costs no log reads. Safe
// for concurrent use; Run must be running for it to advance.
type Tracker struct {
	log       TailLog
	contracts *Contracts
	prod      Environments
	// folded counts the entries folded in, each once the state below has
	// it; Run stops it with the error that stopped Run before the log
	// closed, so that WaitFor's callers learn why at once.
	folded progress.Mark

	mu      sync.RWMutex // guards the fields below
	changes *changeSet
	// rates and missing aggregate every change's status, kept as changes
	// move, so that reading them costs nothing like a pass over every
	// change of the log under the lock the judges also take.
	rates      map[rateKey]*Rate
	missing    map[string]map[string]int // environment → evidence closed changes lack → changes
	exceptions exceptionLog
	// snapshot is every exception, rebuilt when one is folded in and
	// shared read-only with every caller of AllExceptions.
	snapshot []*Exception
}

// NewTracker returns a tracker of log; nil contracts and production mean
// the defaults.
func NewTracker(log TailLog, contracts *Contracts, production Environments) *Tracker {
	if contracts == nil {
		contracts = DefaultContracts()
	}
	if production == nil {
		production = DefaultProduction()
	}
	return &Tracker{log: log, contracts: contracts, prod: production,
		changes: newChangeSet(contracts), exceptions: exceptionLog{},
		rates: map[rateKey]*Rate{}, missing: map[string]map[string]int{}}
}

// Run tails the log until ctx ends (returning ctx's error) or the log
// closes (returning nil). An entry that cannot be read stops it with the
// error: a projection that skipped entries would report wrong figures.
func (t *Tracker) Run(ctx context.Context) error {
	err := t.run(ctx)
	if err != nil && ctx.Err() == nil {
		t.folded.Stop(err)
	}
	return err
}

func (t *Tracker) run(ctx context.Context) error {
	for {
		done := t.folded.Load()
		size, err := t.log.Wait(ctx, done)
		switch {
		case errors.Is(err, ledger.ErrClosed):
			return nil
		case err != nil:
			return err
		}
		for i := done; i < size; i++ {
			e, err := t.log.Entry(ctx, i)
			if errors.Is(err, ledger.ErrClosed) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("completeness tracker: entry %d: %w", i, err)
			}
			st, err := e.Statement()
			if err != nil {
				return fmt.Errorf("completeness tracker: entry %d: %w", i, err)
			}
			t.fold(i, st, e.Meta.Decision != nil)
		}
	}
}

func (t *Tracker) fold(i uint64, st *evidence.Statement, decided bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := &st.Predicate
	if !p.Kind.LogWide() {
		if f, ok := t.changes.get(p.ChangeID); ok {
			t.count(t.contracts.Check(p.ChangeID, &f), -1)
		}
		f := t.changes.add(p.ChangeID, st, decided, t.prod)
		t.count(t.contracts.Check(p.ChangeID, &f), 1)
	}
	if p.Exception != nil {
		t.exceptions.add(i, st)
		t.snapshot = make([]*Exception, 0, len(t.exceptions))
		for _, e := range t.exceptions {
			t.snapshot = append(t.snapshot, e)
		}
	}
	t.folded.Advance(i + 1)
}

// Processed is the number of log entries folded in.
func (t *Tracker) Processed() uint64 { return t.folded.Load() }

// WaitFor blocks until the first n entries of the log are folded in, for
// a reader that wants to see what it has just appended.
func (t *Tracker) WaitFor(ctx context.Context, n uint64) error {
	done, err := t.folded.Wait(ctx, n)
	if err == nil || err == ctx.Err() {
		return err
	}
	return fmt.Errorf("the tracker stopped at entry %d: %w", done, err)
}

// Change returns the completeness of one change, and false when the log
// has no record of it.
func (t *Tracker) Change(changeID string) (Status, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	f, ok := t.changes.get(changeID)
	if !ok {
		return Status{}, false
	}
	return t.contracts.Check(changeID, &f), true
}

// Changes returns the completeness of every change the filter accepts
// (nil accepts all), ordered by change id.
func (t *Tracker) Changes(accept func(Status) bool) []Status {
	t.mu.RLock()
	out := make([]Status, 0, len(t.changes.facts))
	for id, i := range t.changes.index {
		f := t.changes.expand(t.changes.facts[i])
		if s := t.contracts.Check(id, &f); accept == nil || accept(s) {
			out = append(out, s)
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.ChangeID, b.ChangeID) })
	return out
}

// Rate is the completeness of the changes of one environment and class.
type Rate struct {
	Environment string `json:"environment"`
	Class       string `json:"class"`
	Changes     int    `json:"changes"`  // changes of the class
	Closed      int    `json:"closed"`   // of which closed
	Complete    int    `json:"complete"` // closed with all required evidence
	// Rate is Complete / Closed: the share of closed changes with all their
	// evidence; 1 when none is closed yet.
	Rate float64 `json:"rate"`
}

type rateKey struct{ env, class string }

// count adds (delta 1) or removes (delta -1) a change's status to or from
// the aggregates. Called with mu held.
func (t *Tracker) count(s Status, delta int) {
	if s.Class == "" {
		return
	}
	k := rateKey{s.Environment, s.Class}
	r := t.rates[k]
	if r == nil {
		r = &Rate{Environment: k.env, Class: k.class}
		t.rates[k] = r
	}
	r.Changes += delta
	if !s.Closed {
		return
	}
	r.Closed += delta
	if s.Complete() {
		r.Complete += delta
	}
	m := t.missing[s.Environment]
	if m == nil {
		m = map[string]int{}
		t.missing[s.Environment] = m
	}
	for _, x := range s.Missing {
		if m[x] += delta; m[x] == 0 {
			delete(m, x)
		}
	}
}

// Rates aggregates completeness by environment and class, ordered by
// environment then class. Changes no class matches are left out.
func (t *Tracker) Rates() []Rate {
	t.mu.RLock()
	out := make([]Rate, 0, len(t.rates))
	for _, r := range t.rates {
		if r.Changes > 0 {
			out = append(out, *r)
		}
	}
	t.mu.RUnlock()
	for i := range out {
		out[i].Rate = 1
		if out[i].Closed > 0 {
			out[i].Rate = float64(out[i].Complete) / float64(out[i].Closed)
		}
	}
	slices.SortFunc(out, func(a, b Rate) int {
		return cmp.Or(cmp.Compare(a.Environment, b.Environment), cmp.Compare(a.Class, b.Class))
	})
	return out
}

// Missing counts, for each environment, the closed changes that lack each
// piece of required evidence ("apply.completed", "artifact:plan").
func (t *Tracker) Missing() map[string]map[string]int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[string]map[string]int, len(t.missing))
	for env, m := range t.missing {
		if len(m) > 0 {
			out[env] = maps.Clone(m)
		}
	}
	return out
}

// AllExceptions returns every exception granted in the log so far, active
// or not, in no particular order. The Judge reads it for exceptions granted
// under other changes, for every record, so it is not copied: the slice
// and the exceptions are read-only.
func (t *Tracker) AllExceptions() []*Exception {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.snapshot
}

// Expiring returns the exceptions active at now that expire within the
// window, soonest first: the ones to renew or let lapse, so that every
// exception is visible.
func (t *Tracker) Expiring(now time.Time, within time.Duration) []*Exception {
	var out []*Exception
	for _, e := range t.AllExceptions() {
		if e.Active(now) && e.ExpiresAt.Sub(now) <= within {
			c := *e
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *Exception) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}
