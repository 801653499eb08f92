package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/query"
)

func TestQueryLimitsAndErrors(t *testing.T) {
	h := newHarness(t, query.AccessConfig{})
	h.loadDemo()
	if r := h.query("", `{ change(id: "x") { timeline { decision { rules { ruleId } } } } }`, nil); len(r.Errors) != 0 {
		t.Fatalf("a normal query is refused: %v", r.Errors)
	}
	for name, c := range map[string]struct{ q, want string }{
		"too costly":     {`{ changes(first: 100) { nodes { timeline { findings { evidence { name } } plan { resourceChanges { address } } } } } }`, "the limit is"},
		"page too large": {`{ transitions(first: 1000) { nodes { index } } }`, "first must be between 1 and 100"},
		"syntax":         {`{ transitions( `, "Syntax Error"},
		"unknown field":  {`{ transitions { nodes { nope } } }`, `Cannot query field "nope"`},
		"bad kind":       {`{ transitions(filter: {kind: "apply.done"}) { nodes { index } } }`, `"apply.done" is not a kind`},
		"bad time":       {`{ transitions(filter: {from: "yesterday"}) { nodes { index } } }`, "from"},
		"forged cursor":  {`{ transitions(after: "AAAA") { nodes { index } } }`, "invalid cursor"},
		"negative size":  {`{ transition(index: 1) { inclusionProof(treeSize: -1) { treeSize } } }`, "treeSize must not be negative"},
		"future size":    {`{ transition(index: 1) { inclusionProof(treeSize: 100000) { treeSize } } }`, "beyond the latest signed checkpoint"},
	} {
		r := h.query("", c.q, nil)
		if len(r.Errors) == 0 || !strings.Contains(fmt.Sprint(r.Errors), c.want) {
			t.Errorf("%s: errors %v, want one saying %q", name, r.Errors, c.want)
		}
	}
	// Depth: a query nested past the limit is refused before it runs.
	g, err := query.NewGraphQL(query.GraphQLConfig{Store: h.log, Auth: mustAuth(t), MaxDepth: 4})
	if err != nil {
		t.Fatal(err)
	}
	res := g.Execute(t.Context(), &query.Identity{Subject: "t", Role: query.RoleAuditor}, query.Request{Query: `{ changes { nodes { timeline { decision { rules { ruleId } } } } } }`})
	if len(res.Errors) == 0 || !strings.Contains(fmt.Sprint(res.Errors), "levels deep") {
		t.Errorf("depth 6 with limit 4: %v", res.Errors)
	}
	// A query past its deadline says so.
	ctx, cancel := context.WithTimeout(t.Context(), -time.Second)
	defer cancel()
	res = g.Execute(ctx, &query.Identity{Subject: "t", Role: query.RoleAuditor}, query.Request{Query: `{ transitions { nodes { index } } }`})
	if len(res.Errors) == 0 || !strings.Contains(fmt.Sprint(res.Errors), "timed out") {
		t.Errorf("expired deadline: %v", res.Errors)
	}
}

func mustAuth(t *testing.T) *query.Authenticator {
	a, err := query.NewAuthenticator(query.AccessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPagingIsStableWhileAppending pages through a filter one node at a
// time while records keep arriving: no entry is shown twice or skipped, and
// entries appended after the first page do not join the walk.
func TestPagingIsStableWhileAppending(t *testing.T) {
	h := newHarness(t, query.AccessConfig{})
	h.loadDemo()
	before := h.log.Size()
	base := query.DemoStatements()[1] // a plan in prod
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			st := base
			st.Predicate.ChangeID = fmt.Sprintf("CHG-LATE-%d", i)
			h.postQuietly(st) // a post racing the end of the test may fail
		}
	})
	defer wg.Wait()
	defer close(stop)
	for _, order := range []string{"OLDEST_FIRST", "NEWEST_FIRST"} {
		seen := map[int]bool{}
		var after any
		var limit uint64 // log size once the first page is answered
		for pages := 0; ; pages++ {
			r := h.query("", `query($a: String) { transitions(filter: {environment: "prod", kind: "plan.created"}, first: 1, after: $a, order: `+order+`) { nodes { index changeId } pageInfo { hasNextPage endCursor } } }`, map[string]any{"a": after})
			if pages == 0 {
				limit = h.log.Size()
			}
			var d struct {
				Transitions struct {
					Nodes []struct {
						Index    int
						ChangeId string
					}
					PageInfo struct {
						HasNextPage bool
						EndCursor   string
					}
				}
			}
			if err := json.Unmarshal(r.Data, &d); err != nil || len(r.Errors) > 0 {
				t.Fatalf("%s: %s %v", order, r.Data, r.Errors)
			}
			for _, n := range d.Transitions.Nodes {
				if seen[n.Index] {
					t.Fatalf("%s: entry %d shown twice", order, n.Index)
				}
				if uint64(n.Index) >= limit {
					t.Fatalf("%s: entry %d, appended after the first page (log size %d), joined the walk", order, n.Index, limit)
				}
				seen[n.Index] = true
			}
			if !d.Transitions.PageInfo.HasNextPage {
				break
			}
			after = d.Transitions.PageInfo.EndCursor
		}
		for i, st := range query.DemoStatements() {
			idx := i + 1 // after the genesis entry
			if st.Predicate.Kind == evidence.KindPlanCreated && st.Predicate.Target.Environment == "prod" && !seen[idx] {
				t.Errorf("%s: entry %d (%s) was skipped", order, idx, st.Predicate.ChangeID)
			}
		}
		if uint64(len(seen)) > limit-before+6 {
			t.Errorf("%s: %d entries for %d demo plans and %d later entries", order, len(seen), 6, limit-before)
		}
	}
}
