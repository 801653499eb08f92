package policies_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/policies"
)

// Posters each wait for the tracker to fold the entry just appended for
// them while the others append: every one finds its change, and none waits
// for a fold that already happened. Waits given up leave no goroutine.
func TestTrackerWaitForUnderConcurrentAppends(t *testing.T) {
	s := newServer(t, policies.Source{})
	const posters, each = 8, 25
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for p := range posters {
		wg.Go(func() {
			for k := range each {
				change := fmt.Sprintf("CHG-W-%d-%d", p, k)
				a := s.post(record(evidence.KindPlanCreated, change, "dev"))
				if a.status != http.StatusCreated {
					t.Errorf("post %s: %d %+v", change, a.status, a.refusal)
					return
				}
				if err := s.tracker.WaitFor(ctx, a.receipt.Index+1); err != nil {
					t.Errorf("WaitFor(%d): %v", a.receipt.Index+1, err)
					return
				}
				if _, ok := s.tracker.Change(change); !ok {
					t.Errorf("entry %d is folded in but change %s is not there", a.receipt.Index, change)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, want := s.tracker.Processed(), s.log.Size(); got != want {
		t.Fatalf("the tracker folded %d entries of %d", got, want)
	}

	before := runtime.NumGoroutine()
	var waits sync.WaitGroup
	for range 20 {
		waits.Go(func() {
			wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer wcancel()
			if err := s.tracker.WaitFor(wctx, s.log.Size()+1); err != context.DeadlineExceeded {
				t.Errorf("WaitFor beyond the log: %v, want the deadline", err)
			}
		})
	}
	waits.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before the waits, %d after", before, after)
	}
}
