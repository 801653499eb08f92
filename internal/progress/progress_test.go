package progress_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"evident.dev/evident/internal/progress"
)

// A wait blocks (on a channel, not a loop: synctest.Wait only returns once
// every goroutine of the bubble is durably blocked) until the mark reaches
// its value, and a mark already there answers at once.
func TestWaitBlocksUntilReached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m progress.Mark
		m.Advance(3)
		if v, err := m.Wait(t.Context(), 3); v != 3 || err != nil {
			t.Fatalf("Wait(3) at 3 = %d, %v", v, err)
		}
		got := make(chan uint64, 1)
		go func() {
			v, err := m.Wait(t.Context(), 5)
			if err != nil {
				t.Error(err)
			}
			got <- v
		}()
		synctest.Wait()
		m.Advance(4)
		m.Advance(2) // below the mark: ignored
		synctest.Wait()
		select {
		case v := <-got:
			t.Fatalf("Wait(5) returned %d before the mark reached 5", v)
		default:
		}
		if m.Load() != 4 {
			t.Fatalf("Load = %d, want 4", m.Load())
		}
		m.Advance(7)
		if v := <-got; v != 7 {
			t.Fatalf("Wait(5) = %d, want 7", v)
		}
	})
}

// Stopping a mark ends the waits it has not satisfied with the stop's
// error, later ones too; only the first stop counts, and the mark still
// satisfies the waits it reaches.
func TestStopEndsUnsatisfiedWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m progress.Mark
		m.Advance(2)
		errs := make(chan error, 1)
		go func() {
			_, err := m.Wait(t.Context(), 10)
			errs <- err
		}()
		synctest.Wait()
		closed := errors.New("closed")
		m.Stop(closed)
		m.Stop(errors.New("second"))
		if err := <-errs; err != closed {
			t.Fatalf("Wait after Stop = %v, want %v", err, closed)
		}
		if v, err := m.Wait(t.Context(), 3); v != 2 || err != closed {
			t.Fatalf("Wait(3) on the stopped mark = %d, %v", v, err)
		}
		if v, err := m.Wait(t.Context(), 2); v != 2 || err != nil {
			t.Fatalf("Wait(2) on the stopped mark at 2 = %d, %v", v, err)
		}
		m.Advance(5)
		if v, err := m.Wait(t.Context(), 5); v != 5 || err != nil {
			t.Fatalf("Wait(5) on the stopped mark advanced to 5 = %d, %v", v, err)
		}

		var n progress.Mark
		n.Stop(nil)
		if _, err := n.Wait(t.Context(), 1); err != progress.ErrStopped {
			t.Fatalf("Wait on a mark stopped without a reason = %v", err)
		}
	})
}

// A wait ends with its context, with the mark's value; the goroutine
// waiting is gone (synctest.Test fails on one left blocked).
func TestWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var m progress.Mark
		m.Advance(1)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		v, err := m.Wait(ctx, 2)
		if v != 1 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait past the deadline = %d, %v", v, err)
		}
		if took := time.Since(start); took != time.Minute {
			t.Fatalf("Wait returned after %s, want the deadline's minute", took)
		}
		done, cancelDone := context.WithCancel(t.Context())
		cancelDone()
		if _, err := m.Wait(done, 2); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait with an ended context = %v", err)
		}
		if v, err := m.Wait(done, 1); v != 1 || err != nil {
			t.Fatalf("Wait for a reached value with an ended context = %d, %v", v, err)
		}
	})
}

// Advancing a mark nobody waits on allocates nothing: the log advances
// one at every batch it commits.
func TestAdvanceWithoutWaitersAllocatesNothing(t *testing.T) {
	var m progress.Mark
	var n uint64
	if a := testing.AllocsPerRun(1000, func() { n++; m.Advance(n) }); a != 0 {
		t.Fatalf("Advance allocates %v times", a)
	}
}

// No wake-up is lost: with many goroutines advancing the mark at once, out
// of order, every waiter that asks for each next value in turn reaches the
// last one without help from its context, and no goroutine is left behind.
func TestNoLostWakeUps(t *testing.T) {
	before := runtime.NumGoroutine()
	const advancers, waiters, steps = 8, 8, 20_000
	var m progress.Mark
	// Canceled only to free waiters stuck on a lost wake-up: a wait that
	// ends with its context still reports a mark that has reached its value.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var waiting, advancing sync.WaitGroup
	for range waiters {
		waiting.Go(func() {
			var seen uint64
			for seen < advancers*steps {
				v, err := m.Wait(ctx, seen+1)
				if err != nil {
					return
				}
				if v <= seen {
					t.Errorf("Wait(%d) = %d", seen+1, v)
					return
				}
				seen = v
			}
		})
	}
	var ticket atomic.Uint64
	for range advancers {
		advancing.Go(func() {
			for range steps {
				m.Advance(ticket.Add(1))
				if ticket.Load()%64 == 0 {
					runtime.Gosched() // let waiters fall between a read and a wait
				}
			}
		})
	}
	advancing.Wait()
	done := make(chan struct{})
	go func() { waiting.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("waiters still waiting 10s after the mark reached %d: a wake-up was lost", m.Load())
	}
	// Waits abandoned by their context leave no goroutine either.
	for range 100 {
		wctx, wcancel := context.WithTimeout(t.Context(), time.Millisecond)
		if _, err := m.Wait(wctx, m.Load()+1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		wcancel()
	}
	if after := waitGoroutines(before); after > before {
		t.Fatalf("%d goroutines before, %d after", before, after)
	}
}

// waitGoroutines returns the number of goroutines once it is down to want,
// or after a second: exited goroutines take a moment to be counted out.
func waitGoroutines(want int) int {
	deadline := time.Now().Add(time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Millisecond)
	}
}
