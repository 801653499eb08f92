package loadgen

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

// Queries is the read-side load: many concurrent clients run the audit
// queries of docs/audit-queries.md and one change's timeline for a while,
// optionally while records are ingested at a fixed rate. Seed first posts a
// data set of that many records (the demo changes, repeated under new
// change ids) so the figures are measured at scale.
type Queries struct {
	Server   string
	Token    string // an auditor's bearer token; "" for none
	Clients  int
	Duration time.Duration
	// Seed and IngestRate (records per second while querying) post records
	// signed with Key, a runner key trusted for prod and staging.
	Seed, IngestRate int
	Key              crypto.Signer
	TimelineChange   string // the change whose timeline is timed
}

type namedQuery struct{ name, query string }

// queryStats is what the query clients measured, by query.
type queryStats struct {
	mu       sync.Mutex
	lat      [][]time.Duration
	errs     []int64
	firstErr error
}

// Run seeds, then queries for q.Duration, and reports each query's latency
// on stdout (progress on stderr).
func (q Queries) Run(ctx context.Context, stdout, stderr io.Writer) error {
	base := strings.TrimRight(q.Server, "/")
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: q.Clients + 16, MaxConnsPerHost: q.Clients + 16}, Timeout: time.Minute}
	// Enough posters that the ingest rate holds while each waits up to
	// 250 ms for its acknowledgment: a server busy answering queries is
	// slower to acknowledge, and runners do not post one at a time.
	posters := max(64, q.IngestRate/4)
	p := newPoster(base, posters, q.signer())
	next := 0
	if q.Seed > 0 {
		p.seed(ctx, q.Seed, stderr)
		next = q.Seed
	}
	// Proofs need a signed checkpoint covering the entries queried.
	if err := waitCovered(ctx, httpc, base); err != nil {
		return err
	}
	queries := []namedQuery{{"timeline of one change", fmt.Sprintf(`{ change(id: %q) { timeline { index kind occurredAt actor signer { name } findings { code } decision { result } approval { approver } } } }`, q.TimelineChange)}}
	for _, aq := range query.AuditQueries() {
		queries = append(queries, namedQuery{aq.Name, aq.Query})
	}
	// Posts outlive the run's duration by up to a minute: a record offered
	// and not acknowledged by then (a server that keeps answering 503) is
	// an ingest error, not a hang.
	postCtx, cancelPosts := context.WithTimeout(ctx, q.Duration+time.Minute)
	defer cancelPosts()
	ctx, cancel := context.WithTimeout(ctx, q.Duration)
	defer cancel()
	var ing *ingestRun
	if q.IngestRate > 0 {
		ing = p.ingest(ctx, postCtx, q.IngestRate, next)
	}
	fmt.Fprintf(stderr, "querying with %d clients for %s...\n", q.Clients, q.Duration)
	start := time.Now()
	st := q.query(ctx, httpc, base, queries)
	elapsed := time.Since(start)
	if ing != nil {
		ing.wg.Wait()
	}
	return q.report(stdout, queries, st, ing, elapsed)
}

// signer signs the i-th record posted: a demo record under a change id of
// its own.
func (q Queries) signer() func(i int) ([]byte, error) {
	if q.Key == nil {
		return nil
	}
	demo := query.DemoStatementsAt(time.Now())
	run := time.Now().UnixNano()
	return func(i int) ([]byte, error) {
		st := demo[i%len(demo)]
		st.Predicate.ChangeID = fmt.Sprintf("%s-L%x-%d", st.Predicate.ChangeID, run, i/len(demo))
		b, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		return verifier.SignEnvelope(q.Key, b)
	}
}

// query runs the queries round-robin from q.Clients clients until ctx ends.
func (q Queries) query(ctx context.Context, httpc *http.Client, base string, queries []namedQuery) *queryStats {
	st := &queryStats{lat: make([][]time.Duration, len(queries)), errs: make([]int64, len(queries))}
	var wg sync.WaitGroup
	for c := range q.Clients {
		wg.Go(func() {
			for i := c; ctx.Err() == nil; i++ {
				qi := i % len(queries)
				t0 := time.Now()
				err := q.ask(ctx, httpc, base, queries[qi])
				d := time.Since(t0)
				if ctx.Err() != nil {
					return // cut off by the end of the run, not a failure
				}
				st.add(qi, d, err)
			}
		})
	}
	wg.Wait()
	return st
}

// ask posts one GraphQL query; an answer with errors is an error.
func (q Queries) ask(ctx context.Context, httpc *http.Client, base string, nq namedQuery) error {
	body, _ := json.Marshal(map[string]string{"query": nq.query})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if q.Token != "" {
		req.Header.Set("Authorization", "Bearer "+q.Token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	var out struct{ Errors []map[string]any }
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err == nil && (resp.StatusCode != http.StatusOK || len(out.Errors) > 0) {
		err = fmt.Errorf("%s: %s %v", nq.name, resp.Status, out.Errors)
	}
	return err
}

func (s *queryStats) add(qi int, d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs[qi]++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.lat[qi] = append(s.lat[qi], d)
}

// report prints each query's latency and the ingest's, if any.
func (q Queries) report(stdout io.Writer, queries []namedQuery, st *queryStats, ing *ingestRun, elapsed time.Duration) error {
	total := 0
	fmt.Fprintf(stdout, "%-58s %7s %8s %8s %8s %8s %6s\n", "query", "n", "p50", "p95", "p99", "max", "errors")
	for i, nq := range queries {
		l := st.lat[i]
		slices.Sort(l)
		total += len(l)
		fmt.Fprintf(stdout, "%-58s %7d %8s %8s %8s %8s %6d\n", trunc(nq.name, 58), len(l), ms(pct(l, 50)), ms(pct(l, 95)), ms(pct(l, 99)), ms(pct(l, 100)), st.errs[i])
	}
	fmt.Fprintf(stdout, "%d queries in %s (%.0f/s) by %d clients\n", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), q.Clients)
	if ing != nil {
		acks := ing.acks
		slices.Sort(acks)
		fmt.Fprintf(stdout, "ingest meanwhile: %d records acknowledged (%.0f/s, target %d/s), ack p50 %s p99 %s max %s; %d not offered (all posters waiting), %d errors\n",
			ing.ingested.Load(), float64(ing.ingested.Load())/elapsed.Seconds(), q.IngestRate, ms(pct(acks, 50)), ms(pct(acks, 99)), ms(pct(acks, 100)), ing.behind.Load(), ing.errs.Load())
	}
	if st.firstErr != nil {
		return fmt.Errorf("query errors (first: %w)", st.firstErr)
	}
	if ing != nil && ing.errs.Load() > 0 {
		return errors.New("ingest errors while querying")
	}
	return nil
}
