package query_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"evident.dev/evident/query"
)

var update = flag.Bool("update", false, "rewrite the generated files: the generated part of docs/audit-queries.md and query/testdata/schema.graphql")

const (
	docPath  = "../docs/audit-queries.md"
	docBegin = "<!-- BEGIN GENERATED: go test ./query -run TestAuditQueriesDoc -update -->"
	docEnd   = "<!-- END GENERATED -->"
)

// TestAuditQueriesDoc runs every audit query against the demo data set, as
// an auditor, and checks docs/audit-queries.md shows exactly these queries
// and answers.
func TestAuditQueriesDoc(t *testing.T) {
	h := newHarness(t, query.AccessConfig{})
	h.loadDemo()
	var b strings.Builder
	for i, q := range query.AuditQueries() {
		r := h.query("", q.Query, nil)
		if len(r.Errors) > 0 {
			t.Fatalf("%s: %v", q.Name, r.Errors)
		}
		var out bytes.Buffer
		if err := json.Indent(&out, r.Data, "", "  "); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "### %d. %s\n\n```graphql\n%s\n```\n\nAnswer on the demo data set:\n\n```json\n%s\n```\n\n", i+1, q.Name, q.Query, out.String())
	}
	generated := b.String()
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(doc), docBegin+"\n")
	_, after, ok2 := strings.Cut(rest, docEnd)
	if !ok1 || !ok2 {
		t.Fatalf("%s must hold the markers %q and %q", docPath, docBegin, docEnd)
	}
	want := before + docBegin + "\n" + generated + docEnd + after
	if *update {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if string(doc) != want {
		t.Errorf("%s is out of date with the queries or their answers: run go test ./query -run TestAuditQueriesDoc -update and review the diff", docPath)
	}
}
