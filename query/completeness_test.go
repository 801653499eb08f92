package query_test

import (
	"encoding/json"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/query"
)

// demoStatement returns the demo data set's first statement of kind k of
// change id.
func demoStatement(t *testing.T, id string, k evidence.Kind) evidence.Statement {
	t.Helper()
	for _, st := range query.DemoStatements() {
		if st.Predicate.ChangeID == id && st.Predicate.Kind == k {
			return st
		}
	}
	t.Fatalf("the demo data set has no %s of %s", k, id)
	return evidence.Statement{}
}

// TestCompletenessFromTheTracker asks the completeness fields of the
// harness's server, which reads the policies' real Tracker as serve wires
// it: the answers follow the log as records arrive, and come only where
// the caller sees everything (query/schema.go's tenant rule).
func TestCompletenessFromTheTracker(t *testing.T) {
	// The policies are off: the staging change lacks its policy evidence
	// until a policy.evaluated record arrives.
	h := newHarnessPolicies(t, tenancyConfig(), false)
	h.loadDemo()
	const q = `{ prod: completeness(environment: "prod") { changes closed complete }
		staging: completeness(environment: "staging") { changes closed complete rate missing classes { class changes closed complete rate } }
		c: change(id: "CHG-2026-06-30-0909") { completeness { class closed missing complete } } }`
	const before = `{"c":{"completeness":{"class":"non-production-infra-change","closed":true,"complete":false,"missing":["policy.evaluated"]}},` +
		`"prod":{"changes":8,"closed":3,"complete":0},` +
		`"staging":{"changes":1,"classes":[{"changes":1,"class":"non-production-infra-change","closed":1,"complete":0,"rate":0}],"closed":1,"complete":0,"missing":["policy.evaluated"],"rate":0}}`
	for _, c := range []struct{ token, want string }{
		{auditorToken, before},
		// The staging team sees all of staging, and the whole staging change.
		{stagingToken, `{"c":{"completeness":{"class":"non-production-infra-change","closed":true,"complete":false,"missing":["policy.evaluated"]}},"prod":null,` +
			`"staging":{"changes":1,"classes":[{"changes":1,"class":"non-production-infra-change","closed":1,"complete":0,"rate":0}],"closed":1,"complete":0,"missing":["policy.evaluated"],"rate":0}}`},
		// The web team sees prod only in namespace web: no prod-wide count,
		// and the staging change does not exist for it.
		{webToken, `{"c":null,"prod":null,"staging":null}`},
	} {
		r := h.query(c.token, q, nil)
		if string(r.Data) != c.want || len(r.Errors) > 0 {
			t.Errorf("%s: %s %v\nwant %s", c.token, r.Data, r.Errors, c.want)
		}
	}

	// The missing policy evaluation arrives: the staging change is
	// complete, at once for the next query.
	pe := demoStatement(t, "CHG-2026-06-24-0101", evidence.KindPolicyEvaluated)
	pe.Predicate.ChangeID = "CHG-2026-06-30-0909"
	pe.Predicate.Target = demoStatement(t, "CHG-2026-06-30-0909", evidence.KindPlanCreated).Predicate.Target
	pe.Predicate.RiskClass = "medium"
	h.post(pe)
	r := h.query(auditorToken, q, nil)
	const after = `{"c":{"completeness":{"class":"non-production-infra-change","closed":true,"complete":true,"missing":[]}},` +
		`"prod":{"changes":8,"closed":3,"complete":0},` +
		`"staging":{"changes":1,"classes":[{"changes":1,"class":"non-production-infra-change","closed":1,"complete":1,"rate":1}],"closed":1,"complete":1,"missing":[],"rate":1}}`
	if string(r.Data) != after || len(r.Errors) > 0 {
		t.Errorf("after the policy evaluation: %s %v\nwant %s", r.Data, r.Errors, after)
	}
}

// TestExpiringExceptionsInForce: expiringExceptions lists what the
// Tracker holds in force, so an exception ended early by an
// exception.expired record drops out (the log's expiry index still holds
// its grant), and a tenant sees only exceptions of its scope.
func TestExpiringExceptionsInForce(t *testing.T) {
	h := newHarness(t, tenancyConfig())
	h.loadDemo()
	const q = `{ expiringExceptions(withinDays: 120) { nodes { id } } }`
	for _, c := range []struct{ token, want string }{
		{auditorToken, `{"expiringExceptions":{"nodes":[{"id":"EXC-12"},{"id":"EXC-13"}]}}`},
		{stagingToken, `{"expiringExceptions":{"nodes":[]}}`}, // both are prod's
	} {
		if r := h.query(c.token, q, nil); string(r.Data) != c.want || len(r.Errors) > 0 {
			t.Errorf("%s: %s %v, want %s", c.token, r.Data, r.Errors, c.want)
		}
	}
	// Paging walks the same list one at a time.
	r := h.query(auditorToken, `{ expiringExceptions(withinDays: 120, first: 1) { nodes { id } pageInfo { hasNextPage endCursor } } }`, nil)
	if want := `{"expiringExceptions":{"nodes":[{"id":"EXC-12"}],"pageInfo":{"endCursor":`; len(r.Errors) > 0 || len(r.Data) < len(want) || string(r.Data[:len(want)]) != want {
		t.Fatalf("first page: %s %v", r.Data, r.Errors)
	}
	var page struct {
		ExpiringExceptions struct {
			PageInfo struct {
				HasNextPage bool   `json:"hasNextPage"`
				EndCursor   string `json:"endCursor"`
			} `json:"pageInfo"`
		} `json:"expiringExceptions"`
	}
	if err := json.Unmarshal(r.Data, &page); err != nil {
		t.Fatal(err)
	}
	if !page.ExpiringExceptions.PageInfo.HasNextPage {
		t.Fatalf("first page says there is no next: %s", r.Data)
	}
	r = h.query(auditorToken, `query($after: String) { expiringExceptions(withinDays: 120, first: 1, after: $after) { nodes { id } pageInfo { hasNextPage } } }`,
		map[string]any{"after": page.ExpiringExceptions.PageInfo.EndCursor})
	if want := `{"expiringExceptions":{"nodes":[{"id":"EXC-13"}],"pageInfo":{"hasNextPage":false}}}`; string(r.Data) != want || len(r.Errors) > 0 {
		t.Errorf("second page: %s %v, want %s", r.Data, r.Errors, want)
	}

	// EXC-12 is ended early.
	ended := demoStatement(t, "CHG-2026-06-29-0808", evidence.KindExceptionGranted)
	ended.Predicate.Kind = evidence.KindExceptionExpired
	ended.Predicate.OccurredAt = query.DemoClock.Add(-time.Hour)
	h.post(ended)
	if r := h.query(auditorToken, q, nil); string(r.Data) != `{"expiringExceptions":{"nodes":[{"id":"EXC-13"}]}}` || len(r.Errors) > 0 {
		t.Errorf("after EXC-12 ended: %s %v", r.Data, r.Errors)
	}
}
