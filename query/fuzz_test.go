package query_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"evident.dev/evident/query"
)

// FuzzGraphQLRequest posts arbitrary bodies to POST /graphql as a tenant:
// every answer is JSON with status 200 or 400, and nothing panics or shows
// another tenant's changes.
func FuzzGraphQLRequest(f *testing.F) {
	h := newHarness(f, tenancyConfig())
	h.loadDemo()
	mux := http.NewServeMux()
	h.gql.Register(mux)
	for _, q := range query.AuditQueries() {
		b, _ := json.Marshal(map[string]string{"query": q.Query})
		f.Add(b)
	}
	f.Add([]byte(`{"query":"{ transition(index: 3) { changeId } }"}`))
	f.Add([]byte(`{"query":"query($a: String) { transitions(after: $a) { nodes { index } } }","variables":{"a":"AAAA"}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+stagingToken)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %s", rec.Body)
		}
		if bytes.Contains(rec.Body.Bytes(), []byte("CHG-2026-06-24-0101")) && !bytes.Contains(body, []byte("CHG-2026-06-24-0101")) {
			t.Fatalf("a staging tenant was shown a production change: %s", rec.Body)
		}
	})
}
