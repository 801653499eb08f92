package query_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"evident.dev/evident/evidence"
	"evident.dev/evident/query"
)

const (
	auditorToken = "auditor-secret-token"
	stagingToken = "staging-team-token"
	webToken     = "web-team-token"
	runnerToken  = "runner-token"
)

func tenancyConfig() query.AccessConfig {
	return query.AccessConfig{Tokens: []query.TokenGrant{
		{Name: "audit", SHA256: tokenHash(auditorToken), Role: query.RoleAuditor},
		{Name: "staging-team", SHA256: tokenHash(stagingToken), Role: query.RoleTenant, Scope: query.Scope{Environments: []string{"staging"}}},
		{Name: "web-team", SHA256: tokenHash(webToken), Role: query.RoleTenant, Scope: query.Scope{Environments: []string{"prod"}, Namespaces: []string{"web"}}},
		{Name: "ci", SHA256: tokenHash(runnerToken), Role: query.RoleRunner},
	}}
}

// visibleChanges lists the demo changes a scope sees and those it does not.
func visibleChanges(sees func(evidence.Target) bool) (in, out []string) {
	for _, st := range query.DemoStatements() {
		id := st.Predicate.ChangeID
		if sees(st.Predicate.Target) {
			if !slices.Contains(in, id) {
				in = append(in, id)
			}
		} else if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return in, out
}

// TestTenantSeesOnlyItsScope runs every audit query, every filter value of
// the other tenants, every entry index, a change lookup and a pack download
// as tenants, and checks that nothing of another tenant's changes appears:
// not its change id, stack, approver or plan hash, and not a count.
func TestTenantSeesOnlyItsScope(t *testing.T) {
	h := newHarness(t, tenancyConfig())
	h.loadDemo()
	tenants := []struct {
		token string
		sees  func(evidence.Target) bool
	}{
		{stagingToken, func(tg evidence.Target) bool { return tg.Environment == "staging" }},
		{webToken, func(tg evidence.Target) bool { return tg.Environment == "prod" && tg.Namespace == "web" }},
	}
	for _, tn := range tenants {
		in, out := visibleChanges(tn.sees)
		if len(in) == 0 || len(out) == 0 {
			t.Fatalf("the demo data set must give each tenant something to see and something not to (%v / %v)", in, out)
		}
		// Secrets: values only other tenants' records hold.
		var secrets []string
		mine := map[string]bool{}
		for _, st := range query.DemoStatements() {
			if tn.sees(st.Predicate.Target) {
				b, _ := json.Marshal(st)
				for _, w := range strings.FieldsFunc(string(b), func(r rune) bool { return r == '"' }) {
					mine[w] = true
				}
			}
		}
		for _, st := range query.DemoStatements() {
			p := st.Predicate
			if tn.sees(p.Target) {
				continue
			}
			for _, v := range []string{p.ChangeID, p.Target.Stack, p.Target.Account, p.Actor} {
				if v != "" && !mine[v] {
					secrets = append(secrets, v)
				}
			}
			if p.Approval != nil && !mine[p.Approval.Approver] {
				secrets = append(secrets, p.Approval.Approver)
			}
			if p.Plan != nil {
				secrets = append(secrets, p.Plan.PlanSHA256)
			}
		}
		check := func(what string, body []byte) {
			t.Helper()
			for _, s := range secrets {
				if strings.Contains(string(body), s) {
					t.Errorf("tenant %s: %s leaks %q: %s", tn.token, what, s, body)
				}
			}
		}
		for _, q := range query.AuditQueries() {
			r := h.query(tn.token, q.Query, nil)
			b, _ := json.Marshal(r)
			check(q.Name, b)
		}
		// Filtering on another tenant's values finds nothing, and says
		// nothing more than filtering on a value that does not exist.
		nothing := h.query(tn.token, `{ transitions(filter: {approver: "nobody@example.com"}) { nodes { index } pageInfo { hasNextPage } } }`, nil)
		for _, s := range secrets {
			for _, field := range []string{"changeId", "stack", "account", "actor", "approver"} {
				r := h.query(tn.token, fmt.Sprintf(`{ transitions(filter: {%s: %q}) { nodes { index } pageInfo { hasNextPage } } }`, field, s), nil)
				if string(r.Data) != string(nothing.Data) || len(r.Errors) > 0 {
					t.Errorf("tenant %s: filter %s=%q answers %s, a value that does not exist answers %s", tn.token, field, s, r.Data, nothing.Data)
				}
			}
		}
		for _, id := range out {
			r := h.query(tn.token, fmt.Sprintf(`{ change(id: %q) { id } }`, id), nil)
			if string(r.Data) != `{"change":null}` {
				t.Errorf("tenant %s: change %s answers %s", tn.token, id, r.Data)
			}
			got, status := h.get(tn.token, "/v1/packs/"+id)
			want, wantStatus := h.get(tn.token, "/v1/packs/CHG-does-not-exist")
			if status != wantStatus || string(got) != string(want) {
				t.Errorf("tenant %s: pack of %s: %d %s; of a change that does not exist: %d %s", tn.token, id, status, got, wantStatus, want)
			}
		}
		for _, id := range in {
			r := h.query(tn.token, fmt.Sprintf(`{ change(id: %q) { id timeline { index } } }`, id), nil)
			if !strings.Contains(string(r.Data), id) {
				t.Errorf("tenant %s: its own change %s answers %s", tn.token, id, r.Data)
			}
		}
		// Every index: another tenant's entry looks exactly like one past
		// the end of the log.
		size := int(h.log.Size())
		beyond := h.query(tn.token, fmt.Sprintf(`{ transition(index: %d) { index changeId } }`, size+7), nil)
		seen := 0
		for i := 0; i < size; i++ {
			r := h.query(tn.token, fmt.Sprintf(`{ transition(index: %d) { index changeId target { environment namespace } inclusionProof { treeSize } } }`, i), nil)
			if string(r.Data) == string(beyond.Data) {
				continue
			}
			seen++
			b, _ := json.Marshal(r)
			check(fmt.Sprintf("transition(%d)", i), b)
		}
		if seen == 0 {
			t.Errorf("tenant %s saw no entry at all", tn.token)
		}
		// Paging with a huge budget or tiny pages never shows others' entries.
		var after string
		for pages := 0; pages < 100; pages++ {
			q := `query($after: String) { transitions(first: 1, after: $after) { nodes { changeId } pageInfo { hasNextPage endCursor } } }`
			vars := map[string]any{}
			if after != "" {
				vars["after"] = after
			}
			r := h.query(tn.token, q, vars)
			b, _ := json.Marshal(r)
			check("paging", b)
			var d struct {
				Transitions struct {
					PageInfo struct {
						HasNextPage bool
						EndCursor   string
					}
				}
			}
			_ = json.Unmarshal(r.Data, &d)
			if !d.Transitions.PageInfo.HasNextPage {
				break
			}
			after = d.Transitions.PageInfo.EndCursor
		}
	}
}

func TestRolesAndCredentials(t *testing.T) {
	h := newHarness(t, tenancyConfig())
	h.loadDemo()
	for _, c := range []struct {
		token  string
		status int
	}{{"", 401}, {"wrong-token", 401}, {runnerToken, 403}, {auditorToken, 200}, {stagingToken, 200}} {
		r := h.query(c.token, `{ whoami { subject role } }`, nil)
		if r.Status != c.status {
			t.Errorf("token %q: status %d, want %d (%v)", c.token, r.Status, c.status, r.Errors)
		}
	}
	// A cursor is bound to its caller: another tenant's cursor is refused.
	r := h.query(auditorToken, `{ transitions(first: 1) { pageInfo { endCursor } } }`, nil)
	var d struct {
		Transitions struct{ PageInfo struct{ EndCursor string } }
	}
	if err := json.Unmarshal(r.Data, &d); err != nil || d.Transitions.PageInfo.EndCursor == "" {
		t.Fatalf("no cursor: %s", r.Data)
	}
	stolen := h.query(stagingToken, `query($a: String) { transitions(first: 1, after: $a) { nodes { changeId } } }`, map[string]any{"a": d.Transitions.PageInfo.EndCursor})
	if len(stolen.Errors) == 0 || !strings.Contains(fmt.Sprint(stolen.Errors), "invalid cursor") {
		t.Errorf("a cursor of the auditor used by a tenant: %s %v", stolen.Data, stolen.Errors)
	}
	// Every query is in the access log with its caller, chained.
	f, err := openFile(h.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, who := range []string{"token:audit", "token:staging-team"} {
		if !strings.Contains(string(b), `"subject":"`+who+`"`) {
			t.Errorf("access log has no query by %s", who)
		}
	}
	for _, want := range []string{`"subject":"unauthenticated","status":"refused: missing or invalid credentials"`, `"subject":"token:ci","role":"runner","status":"refused: this role may not read evidence"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("access log lacks the refused attempt %s", want)
		}
	}
	if n, err := query.CheckAccessLog(bytes.NewReader(b)); err != nil || n < 5 {
		t.Errorf("access log chain: %d lines, %v", n, err)
	}
	if strings.Contains(string(b), auditorToken) || strings.Contains(string(b), stagingToken) || strings.Contains(string(b), "wrong-token") {
		t.Error("the access log holds a bearer token")
	}
	_ = http.StatusOK
}
