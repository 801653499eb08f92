package query

import (
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ledger"
)

// While MaxConcurrent queries run, the next waits its turn, and is told to
// retry once it has waited its whole timeout: a crowd of auditors never
// takes more than those slots of the CPU from ingest.
func TestQueriesWaitForARunningSlot(t *testing.T) {
	signer, err := checkpoint.NewSigner("evident.test/busy", ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: "evident.test/busy", Signer: signer, CacheMB: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lg.Close(); err != nil {
			t.Error(err)
		}
	})
	auth, err := NewAuthenticator(AccessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGraphQL(GraphQLConfig{Store: lg, Auth: auth, MaxConcurrent: 1, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ask := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		g.serveQuery(w, httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`{"query":"{ whoami { role } }"}`)))
		return w
	}

	g.running <- struct{}{} // a query is running
	start := time.Now()
	w := ask()
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "BUSY") {
		t.Fatalf("with the only slot taken: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("refused after %s, before its timeout", waited)
	}

	released := make(chan struct{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		<-g.running
		close(released)
	}()
	if w := ask(); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"role"`) {
		t.Fatalf("once the slot is free: %d %s", w.Code, w.Body)
	}
	<-released
	if len(g.running) != 0 {
		t.Fatalf("%d slots still taken after the query", len(g.running))
	}
}
