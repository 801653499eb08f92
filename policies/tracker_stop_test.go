package policies_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/policies"
)

// damagedLeaf is the real log with one entry unreadable, as a damaged
// segment makes it.
type damagedLeaf struct {
	policies.TailLog
	bad uint64
}

func (d damagedLeaf) Entry(ctx context.Context, i uint64) (*evidence.Entry, error) {
	if i == d.bad {
		return nil, errors.New("checksum mismatch")
	}
	return d.TailLog.Entry(ctx, i)
}

// A tracker stopped by an unreadable entry says so to readers waiting for
// it at once, instead of leaving them to their timeout.
func TestTrackerStoppedByDamageAnswersWaiters(t *testing.T) {
	s := newServer(t, policies.Source{})
	tr := policies.NewTracker(damagedLeaf{TailLog: s.log, bad: 0}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Run(ctx); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("Run over a damaged entry: %v", err)
	}
	start := time.Now()
	err := tr.WaitFor(ctx, s.log.Size())
	if err == nil || !strings.Contains(err.Error(), "stopped at entry 0") {
		t.Fatalf("WaitFor after the tracker stopped: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("WaitFor took %s to report the stopped tracker", time.Since(start))
	}
}
