package ledger_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

// TestSearch checks the conjunctive search against a brute-force filter of
// the same records: every driver, Must term, order, time bound, budget and
// resume position gives exactly the matching entries, once each, in order.
// TestSearch checks searches against the records, over a log of more than
// two chunks of postings (postings.go), before and after it reopens.
func TestSearch(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	const n = 9500
	var specs []spec
	for i := range n {
		s := spec{n: i, env: []string{"prod", "staging", "dev"}[i%3], stack: fmt.Sprintf("stack-%d", i%7),
			actor: fmt.Sprintf("actor-%d", i%5), at: baseTime.Add(time.Duration((i*37)%300) * time.Minute)}
		if i%4 == 0 {
			s.kind = evidence.KindApplyStarted
		}
		if i >= 5000 && i%11 == 0 {
			s.stack = "stack-late" // a term whose first chunk is not the log's first
		}
		specs = append(specs, s)
	}
	recs := make([]ledger.Record, len(specs))
	for i, s := range specs {
		recs[i] = makeRecord(t, s)
	}
	// Concurrent appends: batches of many records, some across a chunk's end.
	byIndex := make([]spec, n)
	for i, rc := range appendConcurrently(t, l, recs, 64) {
		byIndex[rc.Index] = specs[i]
	}
	checkSearches(t, l, byIndex)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	checkSearches(t, l, byIndex)

	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var want ledger.IndexDigest
	for i, s := range byIndex {
		want.AddTerms(uint64(i), snap.Indexed(uint64(i), recs[slices.IndexFunc(specs, func(x spec) bool { return x.n == s.n })].Terms))
	}
	have, err := snap.Indexes(t.Context())
	if err != nil || have != want {
		t.Fatalf("stored postings %d, the entries define %d (%v)", have.Count, want.Count, err)
	}
}

// checkSearches runs searches of every shape on l, whose entry i is
// specs[i], and compares them with the specs.
func checkSearches(t *testing.T, l *ledger.Log, specs []spec) {
	ctx := context.Background()
	kindOf := func(s spec) evidence.Kind {
		if s.kind == "" {
			return evidence.KindPlanCreated
		}
		return s.kind
	}
	type q struct {
		name   string
		s      ledger.Search
		match  func(s spec) bool
		byTime bool
	}
	from, to := baseTime.Add(50*time.Minute), baseTime.Add(200*time.Minute)
	qs := []q{
		{"one term", ledger.Search{Driver: ledger.Query{Name: ledger.TermStack, Value: "stack-3"}}, func(s spec) bool { return s.stack == "stack-3" }, false},
		{"a stack of later chunks only", ledger.Search{Driver: ledger.Query{Name: ledger.TermStack, Value: "stack-late"}}, func(s spec) bool { return s.stack == "stack-late" }, false},
		{"entry 0's stack", ledger.Search{Driver: ledger.Query{Name: ledger.TermStack, Value: specs[0].stack}}, func(s spec) bool { return s.stack == specs[0].stack }, false},
		{"three terms", ledger.Search{Driver: ledger.Query{Name: ledger.TermStack, Value: "stack-3"},
			Must: []ledger.Term{{Name: ledger.TermEnv, Value: "prod"}, {Name: ledger.TermKind, Value: string(evidence.KindApplyStarted)}}},
			func(s spec) bool {
				return s.stack == "stack-3" && s.env == "prod" && kindOf(s) == evidence.KindApplyStarted
			}, false},
		{"timed driver", ledger.Search{Driver: ledger.Query{Name: ledger.TermEnvironment, Value: "staging", From: from, To: to},
			Must: []ledger.Term{{Name: ledger.TermActor, Value: "actor-2"}}},
			func(s spec) bool {
				return s.env == "staging" && s.actor == "actor-2" && !s.at.Before(from) && s.at.Before(to)
			}, true},
		{"every entry by time", ledger.Search{Driver: ledger.Query{Name: ledger.TermTime}}, func(s spec) bool { return true }, true},
		{"nothing", ledger.Search{Driver: ledger.Query{Name: ledger.TermStack, Value: "stack-3"}, Must: []ledger.Term{{Name: ledger.TermEnv, Value: "nowhere"}}}, func(spec) bool { return false }, false},
	}
	for _, c := range qs {
		for _, reverse := range []bool{false, true} {
			for _, page := range []int{1, 7, 1000} {
				for _, budget := range []int{3, 50, 100000} {
					if page == 1 && budget == 3 && c.name == "every entry by time" {
						continue // thousands of pages, for nothing the others miss
					}
					var want []uint64
					var wantSpecs []spec
					for i, s := range specs {
						if c.match(s) {
							want = append(want, uint64(i+0))
							wantSpecs = append(wantSpecs, s)
						}
					}
					if c.byTime {
						idx := make([]int, len(want))
						for i := range idx {
							idx[i] = i
						}
						slices.SortStableFunc(idx, func(a, b int) int { return wantSpecs[a].at.Compare(wantSpecs[b].at) })
						sorted := make([]uint64, len(want))
						for i, j := range idx {
							sorted[i] = want[j]
						}
						want = sorted
					}
					if reverse {
						slices.Reverse(want)
					}
					s := c.s
					s.Reverse, s.Limit, s.Budget = reverse, page, budget
					var got []uint64
					for pages := 0; ; pages++ {
						if pages > len(specs)+1 {
							t.Fatalf("%s: no end", c.name)
						}
						res, err := l.Search(ctx, s)
						if err != nil {
							t.Fatal(err)
						}
						if len(res.Hits) > page {
							t.Fatalf("%s: %d hits on a page of %d", c.name, len(res.Hits), page)
						}
						for _, h := range res.Hits {
							got = append(got, h.Index)
						}
						if res.Resume == nil {
							break
						}
						s.After = res.Resume
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s reverse=%v page=%d budget=%d:\n got %v\nwant %v", c.name, reverse, page, budget, got, want)
					}
				}
			}
		}
	}
	// Postings Visible rejects do not count against the budget: a budget of
	// 1 still reaches the only visible match behind 100 invisible ones.
	res, err := l.Search(ctx, ledger.Search{Driver: ledger.Query{Name: ledger.TermStack, Value: specs[9000].stack}, Budget: 1, Limit: 1,
		Visible: func(i uint64) (bool, error) { return i == 9000, nil }})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Index != 9000 {
		t.Errorf("invisible postings counted: %+v %v", res, err)
	}
	// Scope terms are not counted either.
	firstDev := uint64(slices.IndexFunc(specs, func(s spec) bool { return s.env == "dev" && s.kind == "" }))
	res, err = l.Search(ctx, ledger.Search{Driver: ledger.Query{Name: ledger.TermKind, Value: string(evidence.KindPlanCreated)}, Budget: 1, Limit: 1,
		Scope: []ledger.Term{{Name: ledger.TermEnv, Value: "dev"}}})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Index != firstDev {
		t.Errorf("out-of-scope postings counted: %+v %v", res, err)
	}
	if _, err := l.Search(ctx, ledger.Search{Driver: ledger.Query{Name: ledger.TermTime}, After: []byte("short")}); err == nil {
		t.Error("a malformed position is accepted")
	}
}

// TestTermsForEntryMeta: findings and decisions are indexed, each posting once.
func TestTermsForEntryMeta(t *testing.T) {
	st := statement(spec{n: 1, pad: 3})
	st.Predicate.Plan.ResourceChanges = append(st.Predicate.Plan.ResourceChanges, st.Predicate.Plan.ResourceChanges[0])
	meta := evidence.EntryMeta{
		Findings: []evidence.Finding{{Code: "approval.missing"}, {Code: "approval.missing"}},
		Decision: &evidence.Policy{Result: "deny", Decisions: []evidence.Decision{{RuleID: "r1", Result: "deny"}}},
	}
	terms := ledger.TermsFor(&st, meta)
	seen := map[[2]string]bool{}
	for _, tm := range terms {
		k := [2]string{tm.Name, tm.Value}
		if seen[k] {
			t.Errorf("term %v listed twice", k)
		}
		seen[k] = true
	}
	for _, want := range [][2]string{{ledger.TermFinding, "approval.missing"}, {ledger.TermPolicy, "deny"}, {ledger.TermRule, "r1"},
		{ledger.TermResType, "aws_db_instance"}, {ledger.TermResAddress, "aws_db_instance.orders_002"}, {ledger.TermEnv, "prod"}} {
		if !seen[want] {
			t.Errorf("no term %v in %v", want, terms)
		}
	}
}
