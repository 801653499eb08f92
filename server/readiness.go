package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
)

// readiness answers GET /readyz: 200 once this server answers with the log
// as it is, 503 naming what is still catching up (a projection replaying
// the log after a start, a replica that has not synced the bucket lately).
// GET /healthz is liveness: the process serves.
type readiness struct {
	checks []func() string // each "" when ready, else why not
}

// maxProjectionLag is how far behind the log a projection may be and the
// server still be ready: under load the tails trail by a batch or two; a
// server replaying a large log after a start trails by far more.
const maxProjectionLag = 10_000

// maxSyncAge is how long a replica may go without a successful sync of the
// bucket and still be ready (it polls every 250 ms).
const maxSyncAge = 15 * time.Second

func (r *readiness) add(check func() string) { r.checks = append(r.checks, check) }

// projectionCaughtUp is ready when a projection of lg has applied all but
// maxProjectionLag of its entries.
func projectionCaughtUp(name string, lg *ledger.Log, applied func() uint64) func() string {
	return func() string {
		size, done := lg.Size(), applied()
		if size > done && size-done > maxProjectionLag {
			return fmt.Sprintf("the %s is %d entries behind the log (%d of %d)", name, size-done, done, size)
		}
		return ""
	}
}

// metricsCaughtUp is projectionCaughtUp for the metrics projection.
func metricsCaughtUp(lg *ledger.Log, mets *metrics.Metrics) func() string {
	return projectionCaughtUp("metrics projection", lg, mets.Projection().Applied)
}

// synced is ready when last (a follower's last successful sync) is recent.
func synced(last func() time.Time) func() string {
	return func() string {
		at := last()
		switch {
		case at.IsZero():
			return "the replica has not synced the bucket yet"
		case time.Since(at) > maxSyncAge:
			return fmt.Sprintf("the replica's last successful sync of the bucket was %s ago", time.Since(at).Truncate(time.Second))
		}
		return ""
	}
}

func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var why []string
	for _, c := range r.checks {
		if s := c(); s != "" {
			why = append(why, s)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if len(why) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %s\n", strings.Join(why, "; "))
		return
	}
	fmt.Fprintln(w, "ready")
}
