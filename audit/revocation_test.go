package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/audit"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/verifiertest"
)

// A key revoked by a trust.updated entry: the entries it signed before the
// revocation time stay valid and the report lists them; an entry received
// after it (a server that ignored the revocation) is a bad entry.
func TestCheckLogRevokedKey(t *testing.T) {
	f := buildStandardLog(t)
	revoked := f.trust
	revoked.Runners = append([]verifier.Runner(nil), f.trust.Runners...)
	at := time.Unix(0, f.clock.Load()).Add(time.Second).UTC()
	revoked.Runners[0].RevokedAt = &at // ci
	f.ensureTrust(revoked)
	v := f.verifierFor(revoked)
	f.postAs(v, "ci", evidence.KindPlanCreated, verifiertest.Prod()) // before the revocation time
	f.postAs(v, "apply", evidence.KindApplyCompleted, evidence.Target{Environment: "prod", Stack: verifiertest.StackA})

	rep, err := audit.CheckLog(context.Background(), f.snapshot(), f.opts(true))
	if err != nil {
		t.Fatalf("CheckLog: %v", err)
	}
	if len(rep.Revoked) != 1 {
		t.Fatalf("report lists %d revoked keys, want 1: %+v", len(rep.Revoked), rep.Revoked)
	}
	r := rep.Revoked[0]
	if r.Name != "ci" || !r.RevokedAt.Equal(at) || r.Entries != 5 || !r.LastReceivedAt.Before(at) {
		t.Fatalf("revoked key report %+v; want ci, revoked at %s, 5 entries before it", r, at)
	}

	// The log's clock passes the revocation time; a record by the revoked
	// key appended anyway fails the check, naming the entry.
	f.clock.Store(at.Add(time.Second).UnixNano())
	late := f.postAs(v, "ci", evidence.KindPlanCreated, verifiertest.Prod())
	_, err = audit.CheckLog(context.Background(), f.snapshot(), f.opts(true))
	var bad *audit.BadEntryError
	if !errors.As(err, &bad) || bad.Index != late.Index || !errors.Is(err, verifier.ErrUntrusted) || !strings.Contains(err.Error(), "revoked at") {
		t.Fatalf("CheckLog with an entry after the revocation: %v; want a bad entry %d naming the revocation", err, late.Index)
	}
}

func TestCheckRevocation(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v := &verifier.Verified{Signer: verifier.Signer{Name: "ci", KeyID: strings.Repeat("ab", 32)}, RevokedAt: &at}
	if err := verifier.CheckRevocation(v, at.Add(-time.Nanosecond)); err != nil {
		t.Errorf("received just before the revocation: %v", err)
	}
	for _, when := range []time.Time{at, at.Add(time.Hour)} {
		if err := verifier.CheckRevocation(v, when); !errors.Is(err, verifier.ErrUntrusted) {
			t.Errorf("received at %s: %v, want ErrUntrusted", when, err)
		}
	}
	v.RevokedAt = nil
	if err := verifier.CheckRevocation(v, at); err != nil {
		t.Errorf("a key never revoked: %v", err)
	}
}

// A record bound to one log (predicate.logOrigin) that another log took
// anyway is a bad entry of that log: the replay is noticed offline.
func TestCheckLogReplayedRecord(t *testing.T) {
	f := buildStandardLog(t)
	v := f.verifierFor(f.trust)
	bound := verifiertest.Transition(evidence.KindPlanCreated, "CHG-replayed", verifiertest.Prod())
	bound.LogOrigin = testOrigin
	f.post(v, verifiertest.Sign(t, f.keys["ci"], verifiertest.PayloadOf(t, bound)))
	if _, err := audit.CheckLog(context.Background(), f.snapshot(), f.opts(true)); err != nil {
		t.Fatalf("a record bound to this log: %v", err)
	}
	bound.ChangeID, bound.LogOrigin = "CHG-other", "evident.test/another-log"
	replayed := f.post(v, verifiertest.Sign(t, f.keys["ci"], verifiertest.PayloadOf(t, bound)))
	_, err := audit.CheckLog(context.Background(), f.snapshot(), f.opts(true))
	var bad *audit.BadEntryError
	if !errors.As(err, &bad) || bad.Index != replayed.Index || !strings.Contains(err.Error(), `signed for log "evident.test/another-log"`) {
		t.Fatalf("CheckLog with a record signed for another log: %v; want bad entry %d", err, replayed.Index)
	}
}
