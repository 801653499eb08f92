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
	p := metrics.NewProjection()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := *entries[i%len(entries)]
		e.Index = uint64(i)
		p.Apply(&e)
	}
}
