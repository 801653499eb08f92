package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

// A projection tailing the log with Wait sees every entry, and Entries
// returns them parsed, with the findings and decision they were appended with.
func TestWaitAndEntries(t *testing.T) {
	ctx := context.Background()
	l := openLog(t, t.TempDir(), nil)

	seen := make(chan uint64, 16)
	go func() {
		var done uint64
		for {
			size, err := l.Wait(ctx, done)
			if err != nil {
				close(seen)
				return
			}
			for i := done; i < size; i++ {
				seen <- i
			}
			done = size
		}
	}()

	recs := makeRecords(t, 0, 3)
	recs[1].Decision = &evidence.Policy{Result: "deny", Decisions: []evidence.Decision{{Result: "deny", RuleID: "prod.db-owner"}}}
	for _, rec := range recs {
		if _, err := l.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	for want := range uint64(3) {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("tail saw entry %d, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("tail did not see entry %d", want)
		}
	}

	es, err := l.Entries(ctx, ledger.Query{Name: ledger.TermChange, Value: "CHG-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Index != 1 {
		t.Fatalf("Entries(change CHG-1) = %d entries", len(es))
	}
	if d := es[0].Meta.Decision; d == nil || d.Result != "deny" || d.Digest() != recs[1].Decision.Digest() {
		t.Fatalf("entry 1 decision = %+v, want the appended one", d)
	}
	if es[0].Meta.Findings[0].Code != "test.finding" {
		t.Fatalf("entry 1 findings = %+v", es[0].Meta.Findings)
	}

	// Wait returns at once when the log already holds more.
	if size, err := l.Wait(ctx, 1); err != nil || size != 3 {
		t.Fatalf("Wait(1) = %d, %v", size, err)
	}
	// Wait on a closed log ends with ErrClosed.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Wait(ctx, 3); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("Wait after Close: %v, want ErrClosed", err)
	}
}

// Tailers reading [done, Wait(done)) see every entry exactly once while
// many appenders publish small batches as fast as they can, so that heads
// are published between a tailer's read of the size and its wait; none
// needs its context to notice the last one. Cancelled or closed, they
// leave no goroutine behind.
func TestTailersMissNoHead(t *testing.T) {
	const records, appenders, tailers = 3000, 32, 4
	l := openLog(t, t.TempDir(), func(c *ledger.Config) { c.MaxBatch = 4 })
	recs := makeRecords(t, 0, records)
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type tail struct {
		reached chan struct{} // closed once it has read every record
		err     chan error
	}
	tails := make([]tail, tailers)
	for k := range tails {
		tl := tail{reached: make(chan struct{}), err: make(chan error, 1)}
		tails[k] = tl
		go func() {
			seen := make(map[string]bool, records)
			var done uint64
			for {
				size, err := l.Wait(ctx, done)
				if err != nil {
					tl.err <- err
					return
				}
				for ; done < size; done++ {
					e, err := l.Entry(ctx, done)
					if err != nil {
						tl.err <- err
						return
					}
					if e.Index != done || seen[e.Meta.RecordDigest] {
						tl.err <- fmt.Errorf("entry %d: index %d, record seen before: %v", done, e.Index, seen[e.Meta.RecordDigest])
						return
					}
					seen[e.Meta.RecordDigest] = true
				}
				if done == records {
					close(tl.reached)
				}
			}
		}()
	}
	appendConcurrently(t, l, recs, appenders)
	for k, tl := range tails {
		select {
		case <-tl.reached:
		case err := <-tl.err:
			t.Fatalf("tailer %d: %v", k, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("tailer %d has not seen entry %d 10s after it was appended: a head was missed", k, records-1)
		}
	}
	cancel()
	for k, tl := range tails {
		if err := <-tl.err; !errors.Is(err, context.Canceled) {
			t.Fatalf("tailer %d ended with %v, want its context's end", k, err)
		}
	}

	// A tailer waiting when the log closes ends with ErrClosed.
	closed := make(chan error, 1)
	go func() {
		_, err := l.Wait(context.Background(), records)
		closed <- err
	}()
	time.Sleep(10 * time.Millisecond) // let it block: Close must wake it, not find it late
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, ledger.ErrClosed) {
			t.Fatalf("Wait across Close: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a Wait")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before the tailers started, %d after they ended and the log closed", before, after)
	}
}

// Recent entries come from memory with the statement the record was posted
// with; they must be exactly what reading and decoding the stored leaf
// gives, for entries just appended and for those the memory no longer holds.
func TestRecentEntriesMatchStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openLog(t, dir, func(c *ledger.Config) { c.RecentEntries = 8 })
	recs := makeRecords(t, 0, 20)
	recs[3].Decision = &evidence.Policy{Result: "warn", Decisions: []evidence.Decision{{Result: "warn", RuleID: "r"}}}
	appendAll(t, l, recs)
	fromMemory := make([]*evidence.Entry, len(recs))
	for i := range recs {
		e, err := l.Entry(ctx, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		fromMemory[i] = e
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cold := openLog(t, dir, func(c *ledger.Config) { c.RecentEntries = -1 })
	for i, e := range fromMemory {
		stored, err := cold.Entry(ctx, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		sameEntry(t, e, stored)
	}
}

func sameEntry(t *testing.T, got, want *evidence.Entry) {
	t.Helper()
	gotLeaf, err := got.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	wantLeaf, err := want.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	if string(gotLeaf) != string(wantLeaf) {
		t.Fatalf("entry %d from memory:\n%s\nfrom storage:\n%s", want.Index, gotLeaf, wantLeaf)
	}
	gotSt, err := got.Statement()
	if err != nil {
		t.Fatal(err)
	}
	wantSt, err := want.Statement()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(gotSt)
	b, _ := json.Marshal(wantSt)
	if string(a) != string(b) {
		t.Fatalf("entry %d statement from memory:\n%s\nfrom storage:\n%s", want.Index, a, b)
	}
}
