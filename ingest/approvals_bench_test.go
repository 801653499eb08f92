package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// benchChanges is how many changes of seven records the benchmarks' log
// holds: EVIDENT_BENCH_CHANGES, default 2,000 (14,000 entries).
// EVIDENT_BENCH_CHANGES=143000 gives a 1,000,000-entry log.
func benchChanges(b *testing.B) int {
	if v := os.Getenv("EVIDENT_BENCH_CHANGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("EVIDENT_BENCH_CHANGES=%q", v)
		}
		return n
	}
	return 2000
}

// mix is the seven records of one change, a realistic mix: one apply per
// seven records.
func (s *approvalServer) mix(id string) []evidence.Transition {
	c := &change{s: s, id: id, risk: "high", target: evidence.Target{Environment: "prod", Stack: "prod/rds-orders"}}
	at := s.at(0)
	opened := c.base(evidence.KindChangeOpened, at, "ci")
	opened.Change = &evidence.Change{Author: alice}
	planA1 := c.base(evidence.KindPlanCreated, at.Add(time.Minute), "ci")
	planA1.Plan = &evidence.Plan{PlanSHA256: planA}
	appr := func(who string) evidence.Transition {
		p := c.base(evidence.KindApprovalGranted, at.Add(2*time.Minute), who)
		p.Approval = &evidence.Approval{CommitSHA: commitA, PlanSHA256: planA, Approver: who,
			ApprovedAt: at.Add(2 * time.Minute), ExpiresAt: at.Add(8 * time.Hour)}
		return p
	}
	gate := c.base(evidence.KindPolicyEvaluated, at.Add(3*time.Minute), "opa")
	gate.Policy = &evidence.Policy{Result: "allow"}
	apply := c.base(evidence.KindApplyCompleted, at.Add(4*time.Minute), "ci")
	apply.Apply = &evidence.Apply{PlanSHA256: planA}
	verify := c.base(evidence.KindVerificationCompleted, at.Add(5*time.Minute), "ci")
	verify.Verification = &evidence.Verification{Result: "pass"}
	return []evidence.Transition{opened, planA1, appr(carol), appr(bob), gate, apply, verify}
}

// signer of each record of the mix.
var mixSigners = []string{"ci", "ci", "carol", "bob", "ci", "ci", "ci"}

// fill appends n changes of seven records straight to the log, from many
// goroutines (group commit), with the approval findings a judge would add.
func (s *approvalServer) fill(b *testing.B, n int) {
	b.Helper()
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{
		{Name: "ci", PublicKey: s.keys["ci"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}}},
		{Name: "bob", PublicKey: s.keys["bob"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}}, Approver: bob},
		{Name: "carol", PublicKey: s.keys["carol"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}}, Approver: carol},
	}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || b.Failed() {
					return
				}
				for j, p := range s.mix(fmt.Sprintf("CHG-BENCH-%07d", i)) {
					ver, err := v.Verify(sign(b, s.keys[mixSigners[j]], s.statement(p)))
					if err != nil {
						b.Error(err)
						return
					}
					rec := ledger.Record{Envelope: sign(b, s.keys[mixSigners[j]], s.statement(p)), Digest: ver.Digest,
						Signer: ver.Signer, Terms: ledger.TermsFor(ver.Statement, evidence.EntryMeta{})}
					if _, err := s.log.Append(context.Background(), rec); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkApprovalJudge is the judge's cost per record at ingest, over the
// realistic mix (one apply per seven records): each op judges one record of
// a change whose seven records are in a log of EVIDENT_BENCH_CHANGES
// changes. Only the apply reads the change's entries from the ledger.
func BenchmarkApprovalJudge(b *testing.B) {
	s := newApprovalServer(b, defaultApprovalConfig())
	n := benchChanges(b)
	s.fill(b, n)
	v, err := verifier.New(verifier.TrustConfig{Runners: []verifier.Runner{
		{Name: "ci", PublicKey: s.keys["ci"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}}},
		{Name: "bob", PublicKey: s.keys["bob"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}}, Approver: bob},
		{Name: "carol", PublicKey: s.keys["carol"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}}, Approver: carol},
	}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Records of 64 changes already in the log, verified once.
	var records []*verifier.Verified
	for i := range 64 {
		for j, p := range s.mix(fmt.Sprintf("CHG-BENCH-%07d", i*n/64)) {
			ver, err := v.Verify(sign(b, s.keys[mixSigners[j]], s.statement(p)))
			if err != nil {
				b.Fatal(err)
			}
			records = append(records, ver)
		}
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.appr.Judge(ctx, records[i%len(records)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGateDecide is one gate decision from the ledger's state, without
// recording it: reading the change's entries and binding its approvals.
func BenchmarkGateDecide(b *testing.B) {
	s := newApprovalServer(b, defaultApprovalConfig())
	n := benchChanges(b)
	s.fill(b, n)
	ctx := context.Background()
	now := s.at(10 * time.Minute)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := approvals.GateRequest{ChangeID: fmt.Sprintf("CHG-BENCH-%07d", (i*7919)%n), CommitSHA: commitA, PlanSHA256: planA,
			Target: evidence.Target{Environment: "prod", Stack: "prod/rds-orders"}, Actor: "ci"}
		start := time.Now()
		d, err := s.appr.Decide(ctx, req, now)
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if d.Decision != approvals.Allow {
			b.Fatalf("decision %+v", d)
		}
	}
	reportP99(b, lat)
}

// BenchmarkGateApply is the whole POST /v1/gate/apply over HTTP on
// 127.0.0.1: decide, sign and append the gate.decided entry (fsync), answer.
// Sequential, so each op waits for its own group commit: the latency a
// runner sees.
func BenchmarkGateApply(b *testing.B) {
	s := newApprovalServer(b, defaultApprovalConfig())
	n := benchChanges(b)
	s.fill(b, n)
	s.setClock(s.at(10 * time.Minute))
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		body, _ := json.Marshal(approvals.GateRequest{ChangeID: fmt.Sprintf("CHG-BENCH-%07d", (i*7919)%n), CommitSHA: commitA, PlanSHA256: planA,
			Target: evidence.Target{Environment: "prod", Stack: "prod/rds-orders"}, Actor: "ci"})
		start := time.Now()
		resp, err := http.Post(s.url+"/v1/gate/apply", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var a struct{ Decision string }
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		if err != nil || resp.StatusCode != http.StatusOK || a.Decision != approvals.Allow {
			b.Fatalf("gate: %d %v %+v", resp.StatusCode, err, a)
		}
	}
	reportP99(b, lat)
}

func reportP99(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
