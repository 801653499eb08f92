package query_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"evident.dev/evident/query"
)

// fakeCompleteness stands in for the policies projection (issue 4), which
// does not exist yet: the test checks only who is asked what.
type fakeCompleteness struct{}

func (fakeCompleteness) Environment(_ context.Context, env string) (*query.Completeness, error) {
	return &query.Completeness{Environment: env, Changes: 7, Complete: 5, Missing: []string{"verification"}}, nil
}

func (fakeCompleteness) Change(_ context.Context, id string) (*query.ChangeCompleteness, error) {
	return &query.ChangeCompleteness{Required: []string{"plan", "approval"}, Present: []string{"plan"}, Missing: []string{"approval"}}, nil
}

func TestCompletenessOnlyWhereTheCallerSeesEverything(t *testing.T) {
	h := newHarness(t, tenancyConfig())
	h.loadDemo()
	auth, err := query.NewAuthenticator(tenancyConfig())
	if err != nil {
		t.Fatal(err)
	}
	g, err := query.NewGraphQL(query.GraphQLConfig{Store: h.log, Auth: auth, Completeness: fakeCompleteness{}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	g.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h2 := *h
	h2.srv = srv
	const q = `{ prod: completeness(environment: "prod") { changes } staging: completeness(environment: "staging") { changes }
		c: change(id: "CHG-2026-06-30-0909") { completeness { missing complete } } }`
	for _, c := range []struct{ token, want string }{
		{auditorToken, `{"c":{"completeness":{"complete":false,"missing":["approval"]}},"prod":{"changes":7},"staging":{"changes":7}}`},
		{stagingToken, `{"c":{"completeness":{"complete":false,"missing":["approval"]}},"prod":null,"staging":{"changes":7}}`},
		// The web team sees prod only in namespace web: no prod-wide count.
		{webToken, `{"c":null,"prod":null,"staging":null}`},
	} {
		r := h2.query(c.token, q, nil)
		if string(r.Data) != c.want || len(r.Errors) > 0 {
			t.Errorf("%s: %s %v, want %s", c.token, r.Data, r.Errors, c.want)
		}
	}
}
