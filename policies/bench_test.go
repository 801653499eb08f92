package policies

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// benchRecord is the plan.created example (a production database
// replacement: four rules fire) as a verified record.
func benchRecord(b testing.TB) *verifier.Verified {
	raw, err := os.ReadFile("../evidence/testdata/kinds/plan.created.json")
	if err != nil {
		b.Fatal(err)
	}
	st, err := evidence.Decode(raw)
	if err != nil {
		b.Fatal(err)
	}
	return &verifier.Verified{Statement: st}
}

// BenchmarkEval is the policy cost of one record whose input the memo has
// not seen: building the enriched input and evaluating the bundled rules'
// prepared query.
func BenchmarkEval(b *testing.B) {
	benchmarkEval(b, (*Set).eval)
}

// BenchmarkEvalMemo is the same record answered from the memo: what a
// record costs whose input, as far as the rules read it, was seen before
// (another record of the change, or a change of the same shape).
func BenchmarkEvalMemo(b *testing.B) {
	benchmarkEval(b, (*Set).Eval)
}

// benchmarkEval builds the plan's enriched input and evaluates it with eval
// once per iteration.
func benchmarkEval(b *testing.B, eval func(*Set, context.Context, ast.Value) ([]evidence.Decision, error)) {
	ctx := context.Background()
	set, err := Load(ctx, Source{})
	if err != nil {
		b.Fatal(err)
	}
	j, err := NewJudge(JudgeConfig{Set: set, Log: noHistory{}})
	if err != nil {
		b.Fatal(err)
	}
	v := benchRecord(b)
	now := time.Date(2026, 7, 3, 9, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		ds, err := eval(set, ctx, mustInput(j, v.Statement, "plan", now))
		if err != nil || len(ds) != 2 {
			b.Fatalf("%d decisions, %v", len(ds), err)
		}
	}
}

// BenchmarkJudge is the whole judge on a record of a new change against a
// real log: the change's history lookup in Badger, input, evaluation,
// decision and findings.
func BenchmarkJudge(b *testing.B) {
	ctx := context.Background()
	set, err := Load(ctx, Source{})
	if err != nil {
		b.Fatal(err)
	}
	seed := sha256.Sum256([]byte("bench"))
	signer, err := checkpoint.NewSigner("evident.bench/policies", ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		b.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: b.TempDir(), Origin: "evident.bench/policies", Signer: signer, CacheMB: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer lg.Close()
	j, err := NewJudge(JudgeConfig{Set: set, Log: lg})
	if err != nil {
		b.Fatal(err)
	}
	v := benchRecord(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		v.Statement.Predicate.ChangeID = fmt.Sprintf("CHG-%d", i)
		got, err := j.Judge(ctx, v)
		if err != nil || got.Decision == nil || got.Decision.Result != "deny" {
			b.Fatalf("judgement %+v, %v", got, err)
		}
	}
}

// noHistory is a log without entries.
type noHistory struct{}

func (noHistory) Lookup(context.Context, ledger.Query) ([]uint64, error) { return nil, nil }

func (noHistory) Entry(context.Context, uint64) (*evidence.Entry, error) {
	return nil, errors.New("no entries")
}

func decisionEqual(a, b evidence.Decision) bool {
	return a.Result == b.Result && a.RuleID == b.RuleID && a.Message == b.Message && a.ExceptionID == b.ExceptionID &&
		slices.Equal(a.Evidence, b.Evidence) && slices.Equal(a.RequiredApprovers, b.RequiredApprovers)
}
