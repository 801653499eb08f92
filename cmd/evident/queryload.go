package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

// runQueryLoad measures the read side: many concurrent clients run the audit
// queries of docs/audit-queries.md and one change's timeline for a while,
// optionally while records are ingested at a fixed rate, and it reports the
// latency of each query. --seed first posts a data set of that many records
// (the demo changes, repeated under new change ids) so the figures are
// measured at scale.
func runQueryLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("query-load", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	token := fs.String("token", "", "bearer token of an auditor (default: $EVIDENT_TOKEN)")
	clients := fs.Int("clients", 100, "concurrent query clients")
	duration := fs.Duration("duration", 20*time.Second, "how long to query")
	seed := fs.Int("seed", 0, "first post this many records (needs --key)")
	keyFile := fs.String("key", "", "runner key trusted for prod and staging, for --seed and --ingest-rate (a file only its owner may read, or env:VAR)")
	ingestRate := fs.Int("ingest-rate", 0, "records per second to post while querying (needs --key)")
	timeline := fs.String("timeline-change", "CHG-2026-06-24-0101", "change whose timeline is timed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *clients < 1 || *duration <= 0 || *seed < 0 || *ingestRate < 0 {
		return usageErrorf("query-load: --clients and --duration must be positive, --seed and --ingest-rate not negative")
	}
	var sign func(i int) ([]byte, error)
	if *seed > 0 || *ingestRate > 0 {
		if *keyFile == "" {
			return errors.New("query-load: --seed and --ingest-rate need --key")
		}
		pemBytes, err := secret.ReadPrivateKey(*keyFile)
		if err != nil {
			return err
		}
		k, err := verifier.ParsePrivateKey(pemBytes)
		if err != nil {
			return err
		}
		demo := query.DemoStatementsAt(time.Now())
		run := time.Now().UnixNano()
		sign = func(i int) ([]byte, error) {
			st := demo[i%len(demo)]
			st.Predicate.ChangeID = fmt.Sprintf("%s-L%x-%d", st.Predicate.ChangeID, run, i/len(demo))
			b, err := json.Marshal(st)
			if err != nil {
				return nil, err
			}
			return verifier.SignEnvelope(k, b)
		}
	}
	base := strings.TrimRight(*server, "/")
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients + 16, MaxConnsPerHost: *clients + 16}, Timeout: time.Minute}
	// Enough posters that the ingest rate holds while each waits up to
	// 250 ms for its acknowledgment: a server busy answering queries is
	// slower to acknowledge, and runners do not post one at a time. They
	// have connections of their own, as runners do: sharing the query
	// clients' pool, a post waited for a connection held by a query queued
	// at the server, and the rate offered depended on how fast queries were
	// answered.
	posters := max(64, *ingestRate/4)
	postc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: posters, MaxConnsPerHost: posters}, Timeout: time.Minute}
	post := func(ctx context.Context, body []byte) error {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/records", bytes.NewReader(body))
			resp, err := postc.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusCreated, http.StatusOK:
				return nil
			case http.StatusServiceUnavailable:
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return fmt.Errorf("post: %s", resp.Status)
		}
	}
	next := 0
	if *seed > 0 {
		fmt.Fprintf(stderr, "seeding %d records...\n", *seed)
		start := time.Now()
		var idx atomic.Int64
		var wg sync.WaitGroup
		var errs atomic.Int64
		for range 32 {
			wg.Go(func() {
				for {
					i := int(idx.Add(1)) - 1
					if i >= *seed || ctx.Err() != nil {
						return
					}
					b, err := sign(i)
					if err == nil {
						err = post(ctx, b)
					}
					if err != nil && errs.Add(1) == 1 {
						fmt.Fprintln(stderr, "seed:", err)
					}
				}
			})
		}
		wg.Wait()
		next = *seed
		fmt.Fprintf(stderr, "seeded %d records in %s (%d errors)\n", *seed, time.Since(start).Round(time.Millisecond), errs.Load())
	}

	// Proofs need a signed checkpoint covering the entries queried.
	if err := waitCovered(ctx, httpc, base); err != nil {
		return err
	}

	type namedQuery struct{ name, query string }
	queries := []namedQuery{{"timeline of one change", fmt.Sprintf(`{ change(id: %q) { timeline { index kind occurredAt actor signer { name } findings { code } decision { result } approval { approver } } } }`, *timeline)}}
	for _, q := range query.AuditQueries() {
		queries = append(queries, namedQuery{q.Name, q.Query})
	}
	tok := firstOf(*token, os.Getenv("EVIDENT_TOKEN"))
	lat := make([][]time.Duration, len(queries))
	errCount := make([]int64, len(queries))
	var mu sync.Mutex
	var firstErr error
	// Posts outlive the run's duration by up to a minute: a record offered
	// and not acknowledged by then (a server that keeps answering 503) is
	// an ingest error, not a hang.
	postCtx, cancelPosts := context.WithTimeout(ctx, *duration+time.Minute)
	defer cancelPosts()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	var wg sync.WaitGroup

	// Ingest runs beside the queries: tickets are issued at the target rate
	// for the run's duration, and every record issued is then awaited, so
	// the rate reported is the rate acknowledged, not cut short by the
	// run's end. A ticket no poster was free to take is counted as behind.
	var ingestWG sync.WaitGroup
	var ingested, ingestErrs, behind atomic.Int64
	var ackMu sync.Mutex
	var acks []time.Duration
	if *ingestRate > 0 {
		tickets := make(chan int, *ingestRate)
		ingestWG.Go(func() {
			defer close(tickets)
			t := time.NewTicker(10 * time.Millisecond)
			defer t.Stop()
			began, issued := time.Now(), 0
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					due := int(time.Since(began).Seconds() * float64(*ingestRate))
					for ; issued < due; issued++ {
						select {
						case tickets <- next + issued:
						default:
							behind.Add(1)
						}
					}
				}
			}
		})
		for range posters {
			ingestWG.Go(func() {
				for i := range tickets {
					b, err := sign(i)
					t0 := time.Now()
					if err == nil {
						err = post(postCtx, b)
					}
					if err != nil {
						ingestErrs.Add(1)
						continue
					}
					ingested.Add(1)
					ackMu.Lock()
					acks = append(acks, time.Since(t0))
					ackMu.Unlock()
				}
			})
		}
	}
	fmt.Fprintf(stderr, "querying with %d clients for %s...\n", *clients, *duration)
	start := time.Now()
	for c := range *clients {
		wg.Go(func() {
			for i := c; ctx.Err() == nil; i++ {
				qi := i % len(queries)
				body, _ := json.Marshal(map[string]string{"query": queries[qi].query})
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				t0 := time.Now()
				resp, err := httpc.Do(req)
				var out struct{ Errors []map[string]any }
				if err == nil {
					err = json.NewDecoder(resp.Body).Decode(&out)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != http.StatusOK || len(out.Errors) > 0) {
						err = fmt.Errorf("%s: %s %v", queries[qi].name, resp.Status, out.Errors)
					}
				}
				d := time.Since(t0)
				if ctx.Err() != nil {
					return // cut off by the end of the run, not a failure
				}
				mu.Lock()
				if err != nil {
					errCount[qi]++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat[qi] = append(lat[qi], d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	ingestWG.Wait()
	total := 0
	fmt.Fprintf(stdout, "%-58s %7s %8s %8s %8s %8s %6s\n", "query", "n", "p50", "p95", "p99", "max", "errors")
	for i, q := range queries {
		l := lat[i]
		slices.Sort(l)
		total += len(l)
		fmt.Fprintf(stdout, "%-58s %7d %8s %8s %8s %8s %6d\n", trunc(q.name, 58), len(l), ms(pct(l, 50)), ms(pct(l, 95)), ms(pct(l, 99)), ms(pct(l, 100)), errCount[i])
	}
	fmt.Fprintf(stdout, "%d queries in %s (%.0f/s) by %d clients\n", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), *clients)
	if *ingestRate > 0 {
		slices.Sort(acks)
		fmt.Fprintf(stdout, "ingest meanwhile: %d records acknowledged (%.0f/s, target %d/s), ack p50 %s p99 %s max %s; %d not offered (all posters waiting), %d errors\n",
			ingested.Load(), float64(ingested.Load())/elapsed.Seconds(), *ingestRate, ms(pct(acks, 50)), ms(pct(acks, 99)), ms(pct(acks, 100)), behind.Load(), ingestErrs.Load())
	}
	if firstErr != nil {
		return fmt.Errorf("query errors (first: %w)", firstErr)
	}
	if ingestErrs.Load() > 0 {
		return errors.New("ingest errors while querying")
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// waitCovered waits until a signed checkpoint covers every entry the server
// holds now.
func waitCovered(ctx context.Context, c *http.Client, base string) error {
	get := func(path string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	health, err := get("/healthz")
	if err != nil {
		return err
	}
	var size uint64
	if _, err := fmt.Sscanf(health, "ok %d", &size); err != nil {
		return fmt.Errorf("healthz: %q", health)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp, err := get("/v1/checkpoint")
		if err != nil {
			return err
		}
		origin, _, _ := strings.Cut(cp, "\n")
		if c, err := checkpoint.Parse([]byte(cp), origin); err == nil && c.Size >= size {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("no signed checkpoint covers the log after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
