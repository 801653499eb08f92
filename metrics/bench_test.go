package metrics_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/servertest"
	"evident.dev/evident/metrics"
	"evident.dev/evident/verifier"
)

// BenchmarkProjectionApply measures folding one entry into the projection
// (decode the statement, update the aggregates): how fast a restarted
// server or a replica rebuilds its metrics from the log. The mix is the
// change lifecycle of a plan, a policy decision, an apply and a sync.
func BenchmarkProjectionApply(b *testing.B) {
	entries := benchEntries(b)
	p := metrics.NewProjection()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := *entries[i%len(entries)]
		e.Index = uint64(i)
		p.Apply(&e)
	}
}

// benchEntries is a change lifecycle mix in three environments.
func benchEntries(b *testing.B) []*evidence.Entry {
	seed := sha256.Sum256([]byte("bench"))
	key := ed25519.NewKeyFromSeed(seed[:])
	var entries []*evidence.Entry
	kinds := []string{"plan.created", "policy.evaluated", "apply.completed", "sync.succeeded"}
	for i := range 4096 {
		payload := servertest.Example(b, kinds[i%len(kinds)], func(p *evidence.Transition) {
			p.ChangeID = fmt.Sprintf("CHG-%d", i/len(kinds))
			p.Target.Environment = []string{"prod", "staging", "dev"}[i%3]
		})
		env, err := verifier.SignEnvelope(key, payload)
		if err != nil {
			b.Fatal(err)
		}
		entries = append(entries, &evidence.Entry{Origin: "bench", ReceivedAt: time.Now(), Envelope: env,
			Meta: evidence.EntryMeta{Findings: []evidence.Finding{{Code: "approval.missing", Severity: "error"}}}})
	}
	return entries
}

// BenchmarkScrape measures one GET /metrics worth of gathering, with the
// projection holding the aggregates of 100,000 entries.
func BenchmarkScrape(b *testing.B) {
	entries := benchEntries(b)
	m := metrics.New(metrics.Config{})
	for i := range 100_000 {
		e := *entries[i%len(entries)]
		e.Index = uint64(i)
		m.Projection().Apply(&e)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := m.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// loadChange is the number of records per change of the load generator
// run with --apply-every 7: six plans and the apply of the first.
const loadChange = 7

// loadEntry is entry i of an `evident load --apply-every 7` run as the
// projection receives it: the statement decoded, every string fresh.
func loadEntry(i int) *evidence.Entry {
	st := &evidence.Statement{Predicate: evidence.Transition{
		Kind:       evidence.KindPlanCreated,
		ChangeID:   fmt.Sprintf("LOAD-t3k9x2m1qz-c%d", i/loadChange),
		OccurredAt: time.Date(2026, 7, 3, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		Target:     evidence.Target{Environment: strings.Clone("prod"), Stack: fmt.Sprintf("stack-%d", i%50)},
		RiskClass:  strings.Clone("high"),
		Plan:       &evidence.Plan{},
	}}
	if i%loadChange == loadChange-1 {
		st.Predicate.Kind, st.Predicate.Plan = evidence.KindApplyCompleted, nil
		st.Predicate.Apply = &evidence.Apply{}
	}
	e := &evidence.Entry{Index: uint64(i)}
	e.SetStatement(st)
	return e
}

// BenchmarkProjectionHeap is the projection's live memory after a million
// entries shaped like the load generator's: plans no approval follows, so
// the table of plans awaiting approval fills to its bound. It reports heap
// bytes and objects per change of the log. Run it with -benchtime=1x.
func BenchmarkProjectionHeap(b *testing.B) {
	const records = 1_000_000
	const changes = (records + loadChange - 1) / loadChange
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		p := metrics.NewProjection()
		for i := range records {
			p.Apply(loadEntry(i))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := p.Applied(); got != records {
			b.Fatalf("applied %d entries", got)
		}
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/changes, "heapB/change")
	b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/changes, "objects/change")
}
