package query_test

import (
	"fmt"
	"strings"
	"testing"

	"evident.dev/evident/query"
)

// TestManySelectionsRefused: graphql-go validates fields pairwise, so a
// query of many repeated fields would cost seconds of CPU; it is refused
// before validation.
func TestManySelectionsRefused(t *testing.T) {
	h := newHarness(t, query.AccessConfig{})
	q := "{" + strings.Repeat(" whoami { role }", 800) + "}"
	r := h.query("", q, nil)
	if len(r.Errors) == 0 || !strings.Contains(fmt.Sprint(r.Errors), "field selections") {
		t.Errorf("800 repeated fields: %v", r.Errors)
	}
	for _, a := range query.AuditQueries() {
		if r := h.query("", a.Query, nil); len(r.Errors) > 0 {
			t.Errorf("%s is refused: %v", a.Name, r.Errors)
		}
	}
}
