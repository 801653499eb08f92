package query_test

import (
	"encoding/json"
	"testing"

	"evident.dev/evident/query"
)

func TestSmokeAuditQueries(t *testing.T) {
	h := newHarness(t, query.AccessConfig{})
	h.loadDemo()
	for _, q := range query.AuditQueries() {
		r := h.query("", q.Query, nil)
		b, _ := json.MarshalIndent(r, "", "  ")
		t.Logf("%s\n%s", q.Name, b)
	}
}
