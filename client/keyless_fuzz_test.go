package client

import (
	"strings"
	"testing"
)

// FuzzGitHubTokenAnswer feeds the decoder of GitHub's token answer (outside
// input) anything: it never panics, returns a token or an error, and its
// error is always the same sentence, so it cannot quote the answer.
func FuzzGitHubTokenAnswer(f *testing.F) {
	f.Add([]byte(`{"count":1,"value":"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}`))
	f.Add([]byte(`{"value":""}`))
	f.Add([]byte(`{"value":7}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"value":"  secret-token  ","value":"other"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseGitHubTokenAnswer(body)
		switch {
		case err != nil && tok != "":
			t.Fatalf("both a token and an error: %q, %v", tok, err)
		case err == nil && (tok == "" || tok != strings.TrimSpace(tok)):
			t.Fatalf("token %q accepted", tok)
		case err != nil && err.Error() != `github actions oidc: the answer holds no token (want {"value": ...})`:
			t.Fatalf("the error depends on the answer: %v", err)
		}
	})
}
