package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/secret"
)

// runLoad is the ingest load generator: it posts realistic signed plan.created
// records from many concurrent clients over HTTP and reports throughput and
// acknowledgment latency; with --proofs it then times inclusion proofs.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("load", stderr)
	server := fs.String("server", defaultServer(), "server URL")
	keyFile := fs.String("key", "", "runner private key trusted by the server for --env (a file only its owner may read, or env:VAR)")
	records := fs.Int("records", 20000, "records to post")
	concurrency := fs.Int("concurrency", 64, "concurrent clients")
	size := fs.Int("size", 1500, "approximate envelope size in bytes")
	env := fs.String("env", "prod", "target environment of the records")
	presign := fs.Int("presign", 200000, "sign up to this many records before the clock starts; beyond it, sign while posting")
	proofs := fs.Int("proofs", 0, "after posting, request this many inclusion proofs of random entries")
	proofClients := fs.Int("proof-concurrency", 4, "concurrent clients requesting proofs")
	gates := fs.Int("gates", 0, "after posting, ask the apply gate this many times about random changes of the run (each answer appends a gate.decided entry)")
	applyEvery := fs.Int("apply-every", 0, "make every Nth record an apply.completed of the plans before it (one change per N records), so the approval judge works as in production; 0: plans only")
	rate := fs.Int("rate", 0, "post at most this many records per second (0: as fast as the server takes them)")
	replicas := fs.String("replicas", "", "comma-separated read replica URLs: report how far they trail the writer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyFile == "" {
		return usageErrorf("load: --key is required")
	}
	if *records < 1 || *concurrency < 1 || *proofs < 0 || *proofClients < 1 {
		return usageErrorf("load: --records, --concurrency and --proof-concurrency must be at least 1, --proofs not negative")
	}
	keyPEM, err := secret.ReadPrivateKey(*keyFile)
	if err != nil {
		return err
	}
	signer, err := client.NewSigner(keyPEM)
	if err != nil {
		return err
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	gen := func(i int) ([]byte, error) { return signer.Sign(loadRecord(run, i, *env, *size, *applyEvery)) }
	var signed [][]byte
	if *records <= *presign {
		fmt.Fprintf(stderr, "signing %d records...\n", *records)
		if signed, err = presignAll(*records, gen); err != nil {
			return err
		}
	}
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency, MaxConnsPerHost: *concurrency}, Timeout: time.Minute}
	base := strings.TrimRight(*server, "/")
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" {
		return usageErrorf("load: --server must be an http:// URL")
	}
	lat := make([]time.Duration, *records)
	var next, failed, retried atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	fmt.Fprintf(stderr, "posting %d records (~%d bytes) with %d clients...\n", *records, *size, *concurrency)
	var lag *lagSampler
	stopLag := func() {}
	if *replicas != "" {
		lag = newLagSampler(base, strings.Split(*replicas, ","))
		lagCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { lag.run(lagCtx); close(done) }()
		stopLag = func() { cancel(); <-done }
	}
	start := time.Now()
	for range *concurrency {
		wg.Go(func() {
			conn := &rawConn{addr: u.Host}
			defer conn.close()
			for {
				i := int(next.Add(1)) - 1
				if i >= *records || ctx.Err() != nil {
					return
				}
				if *rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(*rate))))
				}
				var body []byte
				if signed != nil {
					body = signed[i]
				} else {
					var genErr error
					if body, genErr = gen(i); genErr != nil {
						errOnce.Do(func() { firstErr = genErr })
						failed.Add(1)
						continue
					}
				}
				t0 := time.Now()
				for {
					status, err := conn.post("/v1/records", body)
					if status == http.StatusServiceUnavailable {
						retried.Add(1)
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if err != nil || (status != http.StatusCreated && status != http.StatusOK) {
						errOnce.Do(func() { firstErr = fmt.Errorf("record %d: status %d: %v", i, status, err) })
						failed.Add(1)
					}
					break
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	fmt.Fprintf(stdout, "ingest: %d records in %s = %.0f records/s; ack latency p50 %s p90 %s p99 %s max %s; %d failed, %d retried after 503\n",
		*records, elapsed.Round(time.Millisecond), float64(*records)/elapsed.Seconds(),
		pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[len(lat)-1].Round(time.Microsecond), failed.Load(), retried.Load())
	if lag != nil {
		err := lag.waitCaughtUp(ctx, time.Minute)
		stopLag()
		lag.report(stdout)
		if err != nil {
			return err
		}
	}
	if firstErr != nil {
		return fmt.Errorf("first failure: %w", firstErr)
	}
	if *proofs > 0 {
		if err := loadProofs(ctx, httpc, base, *proofs, *proofClients, stdout); err != nil {
			return err
		}
	}
	if *gates > 0 {
		return loadGates(ctx, base, *gates, *proofClients, stdout, func() approvals.GateRequest {
			t := loadRecord(run, rand.IntN(*records), *env, *size, *applyEvery)
			if t.Plan == nil { // an apply: ask about the plan it applied
				return approvals.GateRequest{ChangeID: t.ChangeID, CommitSHA: t.Source.CommitSHA, PlanSHA256: t.Apply.PlanSHA256, Target: t.Target, Actor: "deployer@example.com"}
			}
			return approvals.GateRequest{ChangeID: t.ChangeID, CommitSHA: t.Source.CommitSHA, PlanSHA256: t.Plan.PlanSHA256, Target: t.Target, Actor: "deployer@example.com"}
		})
	}
	return nil
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

// loadGates times n apply-gate decisions from concurrency clients.
func loadGates(ctx context.Context, base string, n, concurrency int, stdout io.Writer, request func() approvals.GateRequest) error {
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

// loadRecord is a plan.created record padded with resource changes to about
// size bytes once signed.
func loadRecord(run string, i int, env string, size, applyEvery int) evidence.Transition {
	sum := sha256.Sum256([]byte(run + strconv.Itoa(i)))
	changeID := fmt.Sprintf("LOAD-%s-%d", run, i)
	if applyEvery > 0 {
		changeID = fmt.Sprintf("LOAD-%s-c%d", run, i/applyEvery)
	}
	t := evidence.Transition{
		Kind:       evidence.KindPlanCreated,
		ChangeID:   changeID,
		OccurredAt: time.Now().UTC(),
		Actor:      "ci@example.com",
		Source:     evidence.Source{Repository: "infra-live", PullRequest: 4812 + i, CommitSHA: fmt.Sprintf("%x", sum[:20]), Branch: "main"},
		Target: evidence.Target{Environment: env, Cloud: "aws", Account: "account-payments-" + env, Region: "ap-southeast-1",
			Stack: fmt.Sprintf("stack-%d", i%50)},
		RiskClass: "high",
		Plan: &evidence.Plan{PlanSHA256: fmt.Sprintf("%x", sum), Engine: "opentofu",
			Actions: evidence.ActionCounts{Update: 2, Replace: 1}, RequiresManualApproval: true},
	}
	// The record above signs to about 1,500 bytes; each resource change adds
	// about 130.
	for n := 0; 1500+(n+1)*130 <= size; n++ {
		t.Plan.ResourceChanges = append(t.Plan.ResourceChanges, evidence.ResourceChange{
			Address: fmt.Sprintf("aws_db_parameter_group.orders_%d", n), Type: "aws_db_parameter_group", Actions: []string{"update"}})
	}
	if applyEvery > 0 && i%applyEvery == applyEvery-1 {
		// The change's first plan, applied: the judge reads the change.
		first := sha256.Sum256([]byte(run + strconv.Itoa(i-applyEvery+1)))
		t.Kind, t.Source.CommitSHA = evidence.KindApplyCompleted, fmt.Sprintf("%x", first[:20])
		t.Apply = &evidence.Apply{PlanSHA256: fmt.Sprintf("%x", first), Engine: "opentofu", ResourcesChanged: []string{"aws_db_parameter_group.orders"}}
		t.Plan = nil
	}
	return t
}

// rawConn is a minimal HTTP/1.1 keep-alive client for posting: the load
// generator shares the machine with the server, so it spends as little CPU
// per request as it can (about a third of net/http's client).
type rawConn struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
	head []byte
}

func (rc *rawConn) post(path string, body []byte) (int, error) {
	if rc.c == nil {
		c, err := net.Dial("tcp", rc.addr)
		if err != nil {
			return 0, err
		}
		rc.c, rc.r = c, bufio.NewReaderSize(c, 16<<10)
	}
	rc.head = fmt.Appendf(rc.head[:0], "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, rc.addr, len(body))
	bufs := net.Buffers{rc.head, body}
	if _, err := bufs.WriteTo(rc.c); err != nil {
		rc.close()
		return 0, err
	}
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.close()
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if err = errors.Join(err, resp.Body.Close()); err != nil || resp.Close {
		rc.close()
	}
	return resp.StatusCode, err
}

func (rc *rawConn) close() {
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
}

func loadProofs(ctx context.Context, c *http.Client, base string, n, concurrency int, stdout io.Writer) error {
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

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100].Round(time.Microsecond)
}

func httpGet(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return (&http.Client{Timeout: time.Minute}).Do(req)
}
