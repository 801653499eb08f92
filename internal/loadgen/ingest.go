// Package loadgen is the load generators of the evident command: ingest
// (signed records posted by many concurrent clients, then inclusion proofs
// and apply-gate decisions), how far read replicas trail the writer meanwhile,
// and the audit queries under load. Each reports latency percentiles.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/client"
)

// ErrNotHTTP refuses a server URL the raw posting client cannot reach.
var ErrNotHTTP = errors.New("load: --server must be an http:// URL")

// Ingest is the ingest load: realistic signed plan.created records posted
// over HTTP by many concurrent clients.
type Ingest struct {
	Server      string         // the writer's base URL, http://
	Signer      *client.Signer // a runner key trusted for Env
	Records     int            // records to post
	Concurrency int            // concurrent clients
	Size        int            // approximate envelope size in bytes
	Env         string         // target environment of the records
	// Presign: sign up to this many records before the clock starts;
	// beyond it, sign while posting.
	Presign int
	// ApplyEvery makes every Nth record an apply.completed of the plans
	// before it (one change per N records), so the approval judge works
	// as in production; 0: plans only.
	ApplyEvery int
	Rate       int // records per second at most; 0: as fast as the server takes them
	// Afterwards: Proofs inclusion proofs of random entries, and Gates
	// apply-gate decisions about random changes of the run, each by
	// ProofConcurrency clients.
	Proofs, Gates, ProofConcurrency int
	// Replicas are read replicas' base URLs: report how far they trail
	// the writer.
	Replicas []string
}

// Run posts the records and reports throughput and acknowledgment latency
// on stdout (progress on stderr), then times the proofs and gate decisions.
func (l Ingest) Run(ctx context.Context, stdout, stderr io.Writer) error {
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	gen := func(i int) ([]byte, error) { return l.Signer.Sign(record(run, i, l.Env, l.Size, l.ApplyEvery)) }
	var signed [][]byte
	if l.Records <= l.Presign {
		fmt.Fprintf(stderr, "signing %d records...\n", l.Records)
		var err error
		if signed, err = presignAll(l.Records, gen); err != nil {
			return err
		}
	}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: l.Concurrency, MaxConnsPerHost: l.Concurrency}, Timeout: time.Minute}
	base := strings.TrimRight(l.Server, "/")
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" {
		return ErrNotHTTP
	}
	fmt.Fprintf(stderr, "posting %d records (~%d bytes) with %d clients...\n", l.Records, l.Size, l.Concurrency)
	var lag *lagSampler
	stopLag := func() {}
	if len(l.Replicas) > 0 {
		lag = newLagSampler(base, l.Replicas)
		lagCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { lag.run(lagCtx); close(done) }()
		stopLag = func() { cancel(); <-done }
	}
	cpu0 := processCPU()
	p := l.post(ctx, u.Host, signed, gen)
	own := processCPU() - cpu0
	fmt.Fprintf(stdout, "ingest: %d records in %s = %.0f records/s; ack latency p50 %s p90 %s p99 %s max %s; %d failed, %d retried after 503\n",
		l.Records, p.elapsed.Round(time.Millisecond), float64(l.Records)/p.elapsed.Seconds(),
		pct(p.lat, 50), pct(p.lat, 90), pct(p.lat, 99), p.lat[len(p.lat)-1].Round(time.Microsecond), p.failed.Load(), p.retried.Load())
	if own > 0 {
		// What the generator itself cost, so that a figure of the server's
		// CPU per record can be read against what shared its cores.
		what := "posting presigned records"
		if signed == nil {
			what = "signing and posting"
		}
		fmt.Fprintf(stdout, "load generator CPU while %s: %.0f µs per record\n", what, float64(own.Microseconds())/float64(l.Records))
	}
	if lag != nil {
		err := lag.waitCaughtUp(ctx, time.Minute)
		stopLag()
		lag.report(stdout)
		if err != nil {
			return err
		}
	}
	if p.firstErr != nil {
		return fmt.Errorf("first failure: %w", p.firstErr)
	}
	if l.Proofs > 0 {
		if err := proofs(ctx, httpc, base, l.Proofs, l.ProofConcurrency, stdout); err != nil {
			return err
		}
	}
	if l.Gates > 0 {
		return gates(ctx, base, l.Gates, l.ProofConcurrency, stdout, func() approvals.GateRequest { return l.gateRequest(run) })
	}
	return nil
}

// gateRequest asks about a random change of the run.
func (l Ingest) gateRequest(run string) approvals.GateRequest {
	t := record(run, rand.IntN(l.Records), l.Env, l.Size, l.ApplyEvery)
	if t.Plan == nil { // an apply: ask about the plan it applied
		return approvals.GateRequest{ChangeID: t.ChangeID, CommitSHA: t.Source.CommitSHA, PlanSHA256: t.Apply.PlanSHA256, Target: t.Target, Actor: "deployer@example.com"}
	}
	return approvals.GateRequest{ChangeID: t.ChangeID, CommitSHA: t.Source.CommitSHA, PlanSHA256: t.Plan.PlanSHA256, Target: t.Target, Actor: "deployer@example.com"}
}

// posted is what the posting clients measured.
type posted struct {
	lat             []time.Duration // sorted
	elapsed         time.Duration
	failed, retried atomic.Int64
	errOnce         sync.Once
	firstErr        error
}

func (p *posted) fail(err error) {
	p.errOnce.Do(func() { p.firstErr = err })
	p.failed.Add(1)
}

// post posts the records (signed, else made by gen) from l.Concurrency
// clients of host, each on its own keep-alive connection.
func (l Ingest) post(ctx context.Context, host string, signed [][]byte, gen func(int) ([]byte, error)) *posted {
	p := &posted{lat: make([]time.Duration, l.Records)}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range l.Concurrency {
		wg.Go(func() {
			conn := &rawConn{addr: host}
			defer conn.close()
			for {
				i := int(next.Add(1)) - 1
				if i >= l.Records || ctx.Err() != nil {
					return
				}
				if l.Rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(l.Rate))))
				}
				var body []byte
				if signed != nil {
					body = signed[i]
				} else {
					var err error
					if body, err = gen(i); err != nil {
						p.fail(err)
						continue
					}
				}
				t0 := time.Now()
				p.postOne(conn, i, body)
				p.lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	slices.Sort(p.lat)
	return p
}

// postOne posts record i, again while the server answers 503.
func (p *posted) postOne(conn *rawConn, i int, body []byte) {
	for {
		status, err := conn.post("/v1/records", body)
		if status == http.StatusServiceUnavailable {
			p.retried.Add(1)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil || (status != http.StatusCreated && status != http.StatusOK) {
			p.fail(fmt.Errorf("record %d: status %d: %v", i, status, err))
		}
		return
	}
}

// presignAll signs records 0..n-1 on every CPU: signing a million records
// one at a time took most of a minute before the clock started.
func presignAll(n int, gen func(int) ([]byte, error)) ([][]byte, error) {
	signed := make([][]byte, n)
	var next atomic.Int64
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				var err error
				if signed[i], err = gen(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return signed, errors.Join(errs...)
}
