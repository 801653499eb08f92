package policies

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"evident.dev/evident/evidence"
)

// Exception is an exception as the log tells it: the grant, and whether an
// exception.expired record has ended it early.
type Exception struct {
	evidence.Exception
	ChangeID string `json:"changeId"`
	// Index is the entry of the grant.
	Index     uint64    `json:"index"`
	GrantedAt time.Time `json:"grantedAt"` // the grant's occurredAt
	// Ended is set by an exception.expired record, EndedAt to its
	// occurredAt.
	Ended   bool      `json:"ended"`
	EndedAt time.Time `json:"endedAt,omitzero"`
	scope   scope
}

// Active reports whether the exception waives its rule at time at: granted
// by then, not ended by then and not past its expiry. An expired exception
// fails closed.
func (e *Exception) Active(at time.Time) bool {
	return !at.Before(e.GrantedAt) && at.Before(e.ExpiresAt) && !(e.Ended && !at.Before(e.EndedAt))
}

// exceptionLog folds exception.granted and exception.expired records into
// exceptions by id; a later grant of the same id replaces the earlier one.
type exceptionLog map[string]*Exception

func (l exceptionLog) add(index uint64, st *evidence.Statement) {
	p := &st.Predicate
	e := p.Exception
	if e == nil {
		return
	}
	switch p.Kind {
	case evidence.KindExceptionGranted:
		sc, err := parseScope(e.Scope)
		if err != nil {
			sc = nil // granted before scopes were checked: matches nothing
		}
		l[e.ID] = &Exception{Exception: *e, ChangeID: p.ChangeID, Index: index, GrantedAt: p.OccurredAt, scope: sc}
	case evidence.KindExceptionExpired:
		if g, ok := l[e.ID]; ok {
			ended := *g // exceptions may be shared (Tracker.AllExceptions): never changed in place
			ended.Ended, ended.EndedAt = true, p.OccurredAt
			l[e.ID] = &ended
		}
	}
}

// sorted returns the exceptions longest-lived first, then by id: the
// first active one for a rule is the one a decision names.
func sortExceptions(es []*Exception) {
	slices.SortFunc(es, func(a, b *Exception) int {
		if c := b.ExpiresAt.Compare(a.ExpiresAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// checkGrant enforces the exception invariants the schema cannot: the
// scope must parse, and the expiry must lie after the grant, in the future,
// and within maxLifetime. The schema already requires owner, scope,
// justification, approvers and expiry.
func checkGrant(p *evidence.Transition, now time.Time, maxLifetime time.Duration) error {
	e := p.Exception
	var probs []evidence.FieldError
	add := func(field, format string, args ...any) {
		probs = append(probs, evidence.FieldError{Field: "predicate.exception." + field, Reason: fmt.Sprintf(format, args...)})
	}
	if _, err := parseScope(e.Scope); err != nil {
		add("scope", "%v", err)
	}
	switch {
	case !e.ExpiresAt.After(p.OccurredAt):
		add("expiresAt", "must be after occurredAt (%s): an exception must expire after it is granted", p.OccurredAt.Format(time.RFC3339))
	case !e.ExpiresAt.After(now):
		add("expiresAt", "%s is already past: the exception would never apply", e.ExpiresAt.Format(time.RFC3339))
	case e.ExpiresAt.Sub(p.OccurredAt) > maxLifetime:
		add("expiresAt", "more than %s after occurredAt: an exception without a near expiry is an unmanaged standard", maxLifetime)
	}
	if len(probs) > 0 {
		return &evidence.ValidationError{Problems: probs}
	}
	return nil
}
