package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"evident.dev/evident/checkpoint"
)

// poster posts signed records beside the queries. It has connections of
// its own, as runners do: sharing the query clients' pool, a post waited
// for a connection held by a query queued at the server, and the rate
// offered depended on how fast queries were answered.
type poster struct {
	base    string
	posters int
	client  *http.Client
	sign    func(i int) ([]byte, error)
}

func newPoster(base string, posters int, sign func(i int) ([]byte, error)) *poster {
	return &poster{base: base, posters: posters, sign: sign,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: posters, MaxConnsPerHost: posters}, Timeout: time.Minute}}
}

// post posts one record, again while the server answers 503.
func (p *poster) post(ctx context.Context, body []byte) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/v1/records", bytes.NewReader(body))
		resp, err := p.client.Do(req)
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

// seed posts records 0..n-1 from 32 clients.
func (p *poster) seed(ctx context.Context, n int, stderr io.Writer) {
	fmt.Fprintf(stderr, "seeding %d records...\n", n)
	start := time.Now()
	var idx, errs atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(idx.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				b, err := p.sign(i)
				if err == nil {
					err = p.post(ctx, b)
				}
				if err != nil && errs.Add(1) == 1 {
					fmt.Fprintln(stderr, "seed:", err)
				}
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(stderr, "seeded %d records in %s (%d errors)\n", n, time.Since(start).Round(time.Millisecond), errs.Load())
}

// ingestRun is the ingest beside the queries.
type ingestRun struct {
	wg                     sync.WaitGroup
	ingested, errs, behind atomic.Int64
	mu                     sync.Mutex
	acks                   []time.Duration
}

// ingest posts records from first on at rate a second until ctx ends:
// tickets are issued at the rate, and every record issued is then awaited
// (until postCtx ends), so the rate reported is the rate acknowledged, not
// cut short by the run's end. A ticket no poster was free to take is
// counted as behind. Wait on the run's wg for its end.
func (p *poster) ingest(ctx, postCtx context.Context, rate, first int) *ingestRun {
	r := &ingestRun{}
	tickets := make(chan int, rate)
	r.wg.Go(func() {
		defer close(tickets)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		began, issued := time.Now(), 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				due := int(time.Since(began).Seconds() * float64(rate))
				for ; issued < due; issued++ {
					select {
					case tickets <- first + issued:
					default:
						r.behind.Add(1)
					}
				}
			}
		}
	})
	for range p.posters {
		r.wg.Go(func() {
			for i := range tickets {
				b, err := p.sign(i)
				t0 := time.Now()
				if err == nil {
					err = p.post(postCtx, b)
				}
				if err != nil {
					r.errs.Add(1)
					continue
				}
				r.ingested.Add(1)
				r.mu.Lock()
				r.acks = append(r.acks, time.Since(t0))
				r.mu.Unlock()
			}
		})
	}
	return r
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
