package ingest

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"evident.dev/evident/evidence"
)

// RateLimit bounds how fast each verified signer may post, so that one
// runner in a retry storm cannot take the whole queue from the others. A
// signer over its limit is answered 429 with Retry-After. The limit is a
// token bucket per signer (name and key), checked after the signature is
// verified: an unauthenticated caller cannot spend someone else's budget.
type RateLimit struct {
	// PerSecond is the sustained records per second one signer may post;
	// zero or less means no limit.
	PerSecond float64
	// Burst is how many records a signer may post at once after a quiet
	// spell. Default max(1, PerSecond).
	Burst int
	// MaxSigners bounds the buckets kept in memory; when it is reached,
	// buckets that have refilled (signers at rest) are dropped first, and
	// if none has, the record is refused as if its signer were over its
	// limit rather than growing memory. Default 10000.
	MaxSigners int
}

// errRateLimited is a signer over its rate limit.
type errRateLimited struct {
	signer     string
	retryAfter time.Duration
}

// Error says what the Retry-After header says: a client that reads either
// waits the same.
func (e *errRateLimited) Error() string {
	return fmt.Sprintf("signer %s is over its rate limit; retry after %s s", e.signer, e.retryAfterSeconds())
}

// retryAfterSeconds is the Retry-After header value: whole seconds, at
// least one.
func (e *errRateLimited) retryAfterSeconds() string {
	return fmt.Sprint(max(1, int(math.Ceil(e.retryAfter.Seconds()))))
}

// limiter holds one token bucket (golang.org/x/time/rate) per signer. Safe
// for concurrent use.
type limiter struct {
	cfg   RateLimit
	clock func() time.Time

	mu      sync.Mutex // guards buckets
	buckets map[string]*rate.Limiter
}

func newLimiter(cfg RateLimit, clock func() time.Time) *limiter {
	if cfg.PerSecond <= 0 {
		return nil
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(cfg.PerSecond))
	}
	if cfg.MaxSigners <= 0 {
		cfg.MaxSigners = 10000
	}
	return &limiter{cfg: cfg, clock: clock, buckets: map[string]*rate.Limiter{}}
}

// admit takes a token from the signer's bucket, or says how long until one
// is there. A nil limiter admits everything.
func (l *limiter) admit(s evidence.Signer) error {
	if l == nil {
		return nil
	}
	key := s.Name + "\x00" + s.KeyID + "\x00" + s.Issuer
	now := l.clock()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.cfg.MaxSigners && !l.sweep(now) {
			return &errRateLimited{signer: s.Name, retryAfter: time.Second}
		}
		b = rate.NewLimiter(rate.Limit(l.cfg.PerSecond), l.cfg.Burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now) // refused: the token is not spent
		return &errRateLimited{signer: s.Name, retryAfter: wait}
	}
	return nil
}

// sweep drops the buckets that have refilled: forgetting them changes
// nothing, since a new bucket starts full. It reports whether any was
// dropped. Called with mu held.
func (l *limiter) sweep(now time.Time) bool {
	dropped := false
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.cfg.Burst) {
			delete(l.buckets, k)
			dropped = true
		}
	}
	return dropped
}
