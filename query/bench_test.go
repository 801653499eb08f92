package query_test

import (
	"context"
	"testing"

	"evident.dev/evident/evidence"
	"evident.dev/evident/query"
)

// BenchmarkAuditQueries runs each audit query against the demo data set in
// process (no HTTP), as an auditor: the per-query CPU cost that bounds how
// many queries a core answers.
func BenchmarkAuditQueries(b *testing.B) {
	h := newHarness(b, query.AccessConfig{})
	h.loadDemo()
	id := &query.Identity{Subject: "bench", Role: query.RoleAuditor}
	for _, q := range query.AuditQueries() {
		b.Run(q.Name, func(b *testing.B) {
			for b.Loop() {
				if r := h.gql.Execute(context.Background(), id, query.Request{Query: q.Query}); len(r.Errors) > 0 {
					b.Fatal(r.Errors)
				}
			}
		})
	}
}

// BenchmarkParseEntry is the cost of reading one entry for a query.
func BenchmarkParseEntry(b *testing.B) {
	h := newHarness(b, query.AccessConfig{})
	h.loadDemo()
	leaf, err := h.log.Leaf(context.Background(), 2)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Statement(); err != nil {
			b.Fatal(err)
		}
	}
}
