package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// lagSampler measures how far read replicas trail the writer while load
// runs: it samples every server's size (GET /healthz) every few milliseconds,
// and a replica's lag for a writer sample (t, n) is the time from t until a
// replica sample first shows n entries.
type lagSampler struct {
	writer   string
	replicas []string
	every    time.Duration
	client   *http.Client

	mu      sync.Mutex
	samples [][]sizeSample // [0] the writer's, then each replica's
}

type sizeSample struct {
	at   time.Time
	size uint64
}

func newLagSampler(writer string, replicas []string) *lagSampler {
	return &lagSampler{
		writer: writer, replicas: replicas, every: 20 * time.Millisecond,
		client:  &http.Client{Timeout: 5 * time.Second},
		samples: make([][]sizeSample, 1+len(replicas)),
	}
}

func (s *lagSampler) size(ctx context.Context, base string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 128))
	if err != nil {
		return 0, err
	}
	var n uint64
	if _, err := fmt.Sscanf(string(b), "ok %d", &n); err != nil {
		return 0, fmt.Errorf("%s/healthz: %q", base, b)
	}
	return n, nil
}

// run samples until ctx ends.
func (s *lagSampler) run(ctx context.Context) {
	servers := append([]string{s.writer}, s.replicas...)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		for i, base := range servers {
			n, err := s.size(ctx, base)
			if err != nil {
				continue // a missed sample only coarsens the measure
			}
			s.mu.Lock()
			s.samples[i] = append(s.samples[i], sizeSample{time.Now(), n})
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitCaughtUp waits until every replica has the writer's size, or timeout.
func (s *lagSampler) waitCaughtUp(ctx context.Context, timeout time.Duration) error {
	want, err := s.size(ctx, s.writer)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for _, r := range s.replicas {
		for {
			n, err := s.size(ctx, r)
			if err == nil && n >= want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("replica %s has %d entries, the writer %d, after %s", r, n, want, timeout)
			}
			time.Sleep(s.every)
		}
	}
	return nil
}

// report prints each replica's lag percentiles.
func (s *lagSampler) report(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ri, r := range s.replicas {
		rs := s.samples[ri+1]
		var lags []time.Duration
		j := 0
		for _, ws := range s.samples[0] {
			for j < len(rs) && (rs[j].size < ws.size || rs[j].at.Before(ws.at)) {
				j++
			}
			if j == len(rs) {
				break
			}
			lags = append(lags, rs[j].at.Sub(ws.at))
		}
		slices.Sort(lags)
		if len(lags) == 0 {
			fmt.Fprintf(w, "replica %s: no samples\n", r)
			continue
		}
		fmt.Fprintf(w, "replica lag %s: p50 %s p90 %s p99 %s max %s over %d samples\n",
			strings.TrimPrefix(r, "http://"), pct(lags, 50), pct(lags, 90), pct(lags, 99), lags[len(lags)-1].Round(time.Millisecond), len(lags))
	}
}
