package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"evident.dev/evident/runners/spool"
)

func rec(i int) []byte { return fmt.Appendf(nil, `{"record":%d}`, i) }

// collector is a Post that records what it was given, and can fail on demand.
// The real ledger is posted to in the e2e tests; here the
// spool's own ordering, retry and durability rules are under test.
type collector struct {
	mu     sync.Mutex
	got    [][]byte
	failN  int // fail this many attempts first
	reject func([]byte) bool
	stopAt int // cancel after this many deliveries
	cancel context.CancelFunc
}

func (c *collector) post(_ context.Context, r []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failN > 0 {
		c.failN--
		return errors.New("connection refused")
	}
	if c.reject != nil && c.reject(r) {
		return fmt.Errorf("%w: 403 out of scope", spool.ErrRejected)
	}
	c.got = append(c.got, bytes.Clone(r))
	if c.stopAt > 0 && len(c.got) == c.stopAt {
		c.cancel()
	}
	return nil
}

func (c *collector) records() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slicesClone(c.got)
}

func slicesClone(in [][]byte) [][]byte { return append([][]byte(nil), in...) }

// deliverUntil runs Deliver until the spool is empty (or 10s pass).
func deliverUntil(t *testing.T, s *spool.Spool, c *collector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, c.post) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver: %v", err)
	}
	if n := s.Pending(); n != 0 {
		t.Fatalf("%d records still pending after 10s", n)
	}
}

func metricValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func slogTo(w *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func open(t *testing.T, dir string, opts spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wantOrder(t *testing.T, got [][]byte, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("delivered %d records, want %d", len(got), to-from)
	}
	for i, g := range got {
		if !bytes.Equal(g, rec(from+i)) {
			t.Fatalf("delivery %d is %s, want %s", i, g, rec(from+i))
		}
	}
}

func TestDeliversInOrderAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, spool.Options{SegmentBytes: 64}) // a few records per segment
	for i := range 20 {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Deliver 7, then stop as a crash would.
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{stopAt: 7, cancel: cancel}
	if err := s.Deliver(ctx, c.post); !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver: %v", err)
	}
	wantOrder(t, c.records(), 0, 7)
	s.Close()

	s = open(t, dir, spool.Options{SegmentBytes: 64})
	if n := s.Pending(); n != 13 {
		t.Fatalf("after reopening, %d records pending, want 13", n)
	}
	if err := s.Append(rec(20), rec(21)); err != nil {
		t.Fatal(err)
	}
	c2 := &collector{}
	deliverUntil(t, s, c2)
	wantOrder(t, c2.records(), 7, 22)
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Errorf("delivered segments are not removed: %v", segs)
	}
}

func TestRetriesUntilTheLedgerAnswers(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := open(t, t.TempDir(), spool.Options{Registerer: reg, RetryMax: 20 * time.Millisecond})
	for i := range 5 {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	c := &collector{failN: 4}
	deliverUntil(t, s, c)
	wantOrder(t, c.records(), 0, 5)
	if err := testutil.GatherAndCompare(reg, bytes.NewBufferString(`
# HELP evident_watch_delivery_failures_total Delivery attempts that failed and will be retried.
# TYPE evident_watch_delivery_failures_total counter
evident_watch_delivery_failures_total 4
# HELP evident_watch_delivered_total Records the ledger acknowledged (new or duplicate).
# TYPE evident_watch_delivered_total counter
evident_watch_delivered_total 5
# HELP evident_watch_spool_pending_records Signed records on disk not yet acknowledged by the ledger.
# TYPE evident_watch_spool_pending_records gauge
evident_watch_spool_pending_records 0
`), "evident_watch_delivery_failures_total", "evident_watch_delivered_total", "evident_watch_spool_pending_records"); err != nil {
		t.Error(err)
	}
}

func TestFullSpoolRefusesLoudlyAndLosesNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	dir := t.TempDir()
	s := open(t, dir, spool.Options{MaxBytes: 100, Registerer: reg, Logger: slogTo(&logs)})
	if err := s.Append(rec(0), rec(1), rec(2), rec(3)); err != nil { // 4 × (8+12) = 80 bytes
		t.Fatal(err)
	}
	err := s.Append(rec(4), rec(5))
	if !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Append beyond the budget: %v, want ErrFull", err)
	}
	if got := metricValue(t, reg, "evident_watch_spool_full_total"); got != 1 {
		t.Errorf("full counter = %v, want 1", got)
	}
	if !bytes.Contains(logs.Bytes(), []byte("spool full")) {
		t.Errorf("a full spool logged nothing: %s", logs.String())
	}
	if n := s.Pending(); n != 4 {
		t.Fatalf("a refused batch changed the spool: %d pending", n)
	}
	c := &collector{}
	deliverUntil(t, s, c)
	if err := s.Append(rec(4), rec(5)); err != nil {
		t.Fatalf("Append after delivery made room: %v", err)
	}
	deliverUntil(t, s, c)
	wantOrder(t, c.records(), 0, 6)
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, spool.Options{})
	if err := s.Append(rec(0), rec(1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.OpenFile(segs[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0, 40, 1, 2, 3, 4, '{'}) // a frame cut short by a crash
	f.Close()
	s = open(t, dir, spool.Options{})
	if n := s.Pending(); n != 2 {
		t.Fatalf("%d pending after a torn append, want 2", n)
	}
	if err := s.Append(rec(2)); err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	deliverUntil(t, s, c)
	wantOrder(t, c.records(), 0, 3)
}

func TestDamageBeforeTheTailIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, spool.Options{SegmentBytes: 30})
	for i := range 4 {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) < 2 {
		t.Fatalf("want several segments, got %v", segs)
	}
	b, _ := os.ReadFile(segs[0])
	b[len(b)-1] ^= 0xff
	os.WriteFile(segs[0], b, 0o600)
	if _, err := spool.Open(dir, spool.Options{SegmentBytes: 30}); err == nil {
		t.Fatal("Open accepted a damaged segment that is not the last")
	}
}

func TestRejectedRecordsAreKept(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	s := open(t, dir, spool.Options{Registerer: reg})
	for i := range 3 {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	c := &collector{reject: func(r []byte) bool { return bytes.Equal(r, rec(1)) }}
	deliverUntil(t, s, c)
	got := c.records()
	if len(got) != 2 || !bytes.Equal(got[0], rec(0)) || !bytes.Equal(got[1], rec(2)) {
		t.Fatalf("delivered %q", got)
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "rejected", "*.json"))
	if len(kept) != 1 {
		t.Fatalf("rejected/ holds %v", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, rec(1)) {
		t.Errorf("rejected record is %s", b)
	}
	if got := metricValue(t, reg, "evident_watch_rejected_total"); got != 1 {
		t.Errorf("rejected counter = %v", got)
	}
}

func TestConcurrentAppendAndDeliver(t *testing.T) {
	s := open(t, t.TempDir(), spool.Options{SegmentBytes: 256})
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{stopAt: 500, cancel: cancel}
	done := make(chan error, 1)
	go func() { done <- s.Deliver(ctx, c.post) }()
	for i := range 500 {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("500 records not delivered in 20s")
	}
	wantOrder(t, c.records(), 0, 500)
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 0x9b, 0x0b, 0x12, 0x4a, '{', '}'})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, seg []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := spool.Open(dir, spool.Options{})
		if err != nil {
			t.Fatalf("Open of a damaged last segment must cut it, not fail: %v", err)
		}
		defer s.Close()
		if err := s.Append([]byte("x")); err != nil {
			t.Fatalf("Append after Open of a fuzzed segment: %v", err)
		}
	})
}
