package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/client"
)

// gates times n apply-gate decisions from concurrency clients.
func gates(ctx context.Context, base string, n, concurrency int, stdout io.Writer, request func() approvals.GateRequest) error {
	c := client.New(base)
	lat := make([]time.Duration, n)
	var next, failures, allowed atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				d, err := c.AskGate(ctx, request())
				lat[i] = time.Since(t0)
				switch {
				case err != nil:
					failures.Add(1)
				case d.Decision == approvals.Allow:
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	_, err := fmt.Fprintf(stdout, "gate decisions: %d from %d clients (%d allowed), each recorded as a gate.decided entry; round trip p50 %s p99 %s max %s; %d failed\n",
		n, concurrency, allowed.Load(), pct(lat, 50), pct(lat, 99), lat[n-1].Round(time.Microsecond), failures.Load())
	return err
}

// proofs times n inclusion proofs of random entries from concurrency clients.
func proofs(ctx context.Context, c *http.Client, base string, n, concurrency int, stdout io.Writer) error {
	cp, err := client.New(base).Checkpoint(ctx)
	if err != nil {
		return err
	}
	size, err := strconv.ParseUint(strings.Split(string(cp), "\n")[1], 10, 64)
	if err != nil {
		return fmt.Errorf("checkpoint size: %w", err)
	}
	server := make([]time.Duration, n)
	total := make([]time.Duration, n)
	var next atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				idx := rand.Uint64N(size)
				t0 := time.Now()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/proofs/inclusion?index=%d&size=%d", base, idx, size), nil)
				var resp *http.Response
				if err == nil {
					resp, err = c.Do(req) // c keeps a connection per client alive
				}
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
					if err == nil {
						resp.Body.Close()
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				total[i] = time.Since(t0)
				server[i] = serverTiming(resp.Header.Get("Server-Timing"))
			}
		})
	}
	wg.Wait()
	slices.Sort(server)
	slices.Sort(total)
	_, err = fmt.Fprintf(stdout, "inclusion proofs: %d from %d clients in a tree of %d; server time p50 %s p99 %s max %s; round trip p50 %s p99 %s; %d failed\n",
		n, concurrency, size, pct(server, 50), pct(server, 99), server[n-1], pct(total, 50), pct(total, 99), failures.Load())
	return err
}

// serverTiming reads "proof;dur=<ms>" from a Server-Timing header.
func serverTiming(h string) time.Duration {
	_, v, ok := strings.Cut(h, "dur=")
	if !ok {
		return 0
	}
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0
	}
	return time.Duration(ms * float64(time.Millisecond))
}
