package ingest_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
)

// TestRateLimitPerSigner: a signer over its rate is refused with 429 and a
// Retry-After, while other signers go on; its bucket refills with time; and
// what was refused is not in the log.
func TestRateLimitPerSigner(t *testing.T) {
	var clock atomic.Int64
	clock.Store(serverNow.UnixNano())
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	s := newTestServer(t, func(_ *ledger.Config, ic *ingest.Config) {
		ic.RateLimit = ingest.RateLimit{PerSecond: 2, Burst: 3}
		ic.Clock = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	n := 0
	postAs := func(key string, want int) response {
		t.Helper()
		n++
		r := s.post(sign(t, s.keys[key], stackPlan(t, fmt.Sprintf("CHG-RATE-%d", n))), "application/json")
		if r.status != want {
			t.Fatalf("post %d as %s: status %d, want %d: %s", n, key, r.status, want, r.body)
		}
		return r
	}
	before := s.log.Size()
	for range 3 { // the burst
		postAs("ci", http.StatusCreated)
	}
	r := postAs("ci", http.StatusTooManyRequests)
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1 (half a second to the next token, rounded up)", got)
	}
	if e := errorBody(t, r); e.Code != "rate_limited" || !contains(e.Error, "ci") || !contains(e.Error, "retry after 1 s") {
		t.Errorf("refusal %+v, want code rate_limited naming the signer and the header's wait", e)
	}
	// Another signer has its own bucket.
	postAs("apply", http.StatusCreated)
	// Half a second refills one token: one more, then refused again.
	advance(500 * time.Millisecond)
	postAs("ci", http.StatusCreated)
	postAs("ci", http.StatusTooManyRequests)
	// A long rest refills the bucket to its burst, no more.
	advance(time.Hour)
	for range 3 {
		postAs("ci", http.StatusCreated)
	}
	postAs("ci", http.StatusTooManyRequests)
	if got, want := s.log.Size()-before, uint64(3+1+1+3); got != want {
		t.Fatalf("the log grew by %d entries, want %d (refused records must not be appended)", got, want)
	}
	// An unauthenticated post is refused as untrusted, not rate limited, and
	// does not spend a trusted signer's budget.
	advance(time.Hour)
	for range 5 {
		postAs("stranger", http.StatusForbidden)
	}
	postAs("ci", http.StatusCreated)
}

// TestRateLimitBoundedSigners: the buckets are bounded; a new signer when
// the table is full of busy signers is refused rather than growing memory,
// and admitted once a bucket has refilled.
func TestRateLimitBoundedSigners(t *testing.T) {
	var clock atomic.Int64
	clock.Store(serverNow.UnixNano())
	s := newTestServer(t, func(_ *ledger.Config, ic *ingest.Config) {
		ic.RateLimit = ingest.RateLimit{PerSecond: 1, Burst: 2, MaxSigners: 1}
		ic.Clock = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	post := func(key string, i int) int {
		return s.post(sign(t, s.keys[key], stackPlan(t, fmt.Sprintf("CHG-BOUND-%s-%d", key, i))), "application/json").status
	}
	if got := post("ci", 0); got != http.StatusCreated {
		t.Fatalf("ci: %d", got)
	}
	if got := post("apply", 0); got != http.StatusTooManyRequests {
		t.Fatalf("apply with the signer table full of a busy signer: status %d, want 429", got)
	}
	clock.Add(int64(2 * time.Second)) // ci's bucket is full again: it can be forgotten
	if got := post("apply", 1); got != http.StatusCreated {
		t.Fatalf("apply once ci is at rest: status %d, want 201", got)
	}
}

// stackPlan is a plan for prod stackA, in every trusted signer's scope.
func stackPlan(t *testing.T, changeID string) []byte {
	return payloadOf(t, transition(evidence.KindPlanCreated, changeID, evidence.Target{Environment: "prod", Stack: stackA}))
}
