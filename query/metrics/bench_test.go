package metrics_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/servertest"
	"evident.dev/evident/query/metrics"
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
