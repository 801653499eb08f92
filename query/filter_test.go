package query_test

import (
	"fmt"
	"strings"
	"testing"

	"evident.dev/evident/query"
)

// A filter field given several values matches entries with any of them; a
// fact names what a resource type alone cannot tell.
func TestFilterOneOfAndFacts(t *testing.T) {
	h := newHarness(t, query.AccessConfig{})
	h.loadDemo()
	ids := func(q string) string {
		t.Helper()
		r := h.query("", q, nil)
		if len(r.Errors) > 0 {
			t.Fatalf("%s: %v", q, r.Errors)
		}
		return string(r.Data)
	}
	db := ids(`{ changes(filter: {resourceType: "aws_db_instance"}) { nodes { id } } }`)
	lb := ids(`{ changes(filter: {resourceType: ["aws_lb_listener"]}) { nodes { id } } }`)
	both := ids(`{ changes(filter: {resourceType: ["aws_db_instance", "aws_lb_listener"]}) { nodes { id } } }`)
	for _, id := range []string{"CHG-2026-06-24-0101", "CHG-2026-06-27-0313"} {
		if !strings.Contains(both, id) {
			t.Errorf("one of two resource types misses %s: %s", id, both)
		}
	}
	if strings.Count(both, `"id"`) != strings.Count(db, `"id"`)+strings.Count(lb, `"id"`) {
		t.Errorf("one of two types %s is not the union of %s and %s", both, db, lb)
	}
	// The edge change opens 443 to the internet; its 10.40.0.0/16 rule
	// alone would not be public. Databases are one fact, whatever the type.
	if got := ids(`{ changes(filter: {fact: "public-exposure"}) { nodes { id } } }`); got != `{"changes":{"nodes":[{"id":"CHG-2026-06-27-0313"}]}}` {
		t.Errorf("public exposure: %s", got)
	}
	if got := ids(`{ changes(filter: {environment: "prod", fact: "database", kind: "plan.created"}) { nodes { id } } }`); !strings.Contains(got, "CHG-2026-06-24-0101") || strings.Contains(got, "0313") {
		t.Errorf("production database changes: %s", got)
	}
	r := h.query("", `{ changes(filter: {fact: "public"}) { nodes { id } } }`, nil)
	if len(r.Errors) == 0 || !strings.Contains(fmt.Sprint(r.Errors), "is not a fact") {
		t.Errorf("an unknown fact: %v", r.Errors)
	}
}
