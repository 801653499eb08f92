package query

import (
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"runtime"
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

	// The slot frees while the next query waits for it: long enough a
	// timeout that only the slot can end the wait.
	g.cfg.Timeout = time.Minute
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() { answered <- ask() }()
	waitParked(t, "evident.dev/evident/query.(*GraphQL).serveQuery")
	<-g.running
	if w := <-answered; w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"role"`) {
		t.Fatalf("once the slot is free: %d %s", w.Code, w.Body)
	}
	if len(g.running) != 0 {
		t.Fatalf("%d slots still taken after the query", len(g.running))
	}
}

// waitParked waits until a goroutine is blocked in a select in function fn
// (by its full name, as a stack trace gives it): nothing else shows that a
// query has reached its wait for a slot.
func waitParked(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
			header, frames, _ := strings.Cut(g, "\n")
			if !strings.Contains(header, "[select") {
				continue
			}
			// Frames come in pairs (function, then file:line); the first
			// outside the runtime is the one that selects.
			lines := strings.Split(frames, "\n")
			for i := 0; i < len(lines); i += 2 {
				if !strings.HasPrefix(lines[i], "runtime.") {
					if strings.HasPrefix(lines[i], fn+"(") {
						return
					}
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine is waiting in a select in %s after 10s", fn)
		}
		time.Sleep(time.Millisecond)
	}
}
