// Package servertest runs a real Evident write path for tests of the read
// side: a log in a temporary directory, its genesis, the verifier and the
// approval judge behind the real ingest handler, with the metrics
// projection tailing the log, all over HTTP on 127.0.0.1. Records are the
// committed examples of evidence/testdata/kinds, edited and signed by a
// trusted runner key.
package servertest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
	"evident.dev/evident/verifier"
)

const testOrigin = "evident.test/metrics"

// Server is the running fixture. Mux is where read handlers are added
// (before the first request).
type Server struct {
	t      testing.TB
	dir    string
	logKey ed25519.PrivateKey
	// CI is trusted for every environment; Stray is not trusted.
	CI, Stray ed25519.PrivateKey
	trust     verifier.TrustConfig
	Log       *ledger.Log
	Metrics   *metrics.Metrics
	Mux       *http.ServeMux
	URL       string
	srv       *httptest.Server
	cancel    context.CancelFunc
	tailed    chan error
}

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubPEM(t testing.TB, k ed25519.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Start runs a server on a log in dir (reopening the log there, if any).
func Start(t testing.TB, dir string) *Server {
	t.Helper()
	f := &Server{t: t, dir: dir, logKey: key("log"), CI: key("ci"), Stray: key("stranger")}
	f.trust = verifier.TrustConfig{Runners: []verifier.Runner{
		// The CI runner also relays the approvals of the scenarios (a review
		// webhook relay), so they count.
		{Name: "ci", PublicKey: pubPEM(t, f.CI), Scope: verifier.Scope{Environments: []string{"*"}, RelayApprovals: true}},
	}}
	f.start()
	return f
}

func (f *Server) start() {
	t := f.t
	signer, err := checkpoint.NewSigner(testOrigin, f.logKey)
	if err != nil {
		t.Fatal(err)
	}
	// The metrics exist before the log so the log's commit hook can feed them.
	m := metrics.New(metrics.Config{})
	lg, err := ledger.Open(ledger.Config{Dir: f.dir, Origin: testOrigin, Signer: signer, CacheMB: 8,
		CheckpointInterval: 10 * time.Millisecond,
		OnCommit:           m.BatchCommitted})
	if err != nil {
		t.Fatal(err)
	}
	m.SetLog(lg)
	f.Log, f.Metrics = lg, m
	if err := ingest.EnsureTrust(context.Background(), lg, f.logKey, f.trust, ingest.Genesis{
		Operator: "ops@example.com", Origin: testOrigin, LogKey: signer.VerifierKey(), Now: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC),
	}); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(f.trust, f.logKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	approvalJudge, err := approvals.New(ingest.ChangeLog(lg), approvals.Config{
		// dev needs no approval, so its applies are complete evidence.
		Rules: []approvals.Rule{{Environment: "dev", MinApprovals: new(0)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	f.Mux = mux
	ingest.New(ingest.Config{Log: lg, Verifier: v, Judges: []ingest.Judge{ingest.ApprovalJudge{Approvals: approvalJudge}}, Observer: m}).Register(mux)
	m.Register(mux)
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.tailed = cancel, make(chan error, 1)
	go func() { f.tailed <- m.Tail(ctx) }()
	t.Cleanup(f.Stop)
}

// Stop closes the server, the tail and the log; safe to call twice.
func (f *Server) Stop() {
	if f.srv == nil {
		return
	}
	f.srv.Close()
	f.cancel()
	if err := <-f.tailed; err != nil && err != context.Canceled {
		f.t.Errorf("Tail: %v", err)
	}
	if err := f.Log.Close(); err != nil {
		f.t.Errorf("close log: %v", err)
	}
	f.srv = nil
}

// Example loads the committed example of kind and lets edit change it.
func Example(t testing.TB, kind string, edit func(*evidence.Transition)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "evidence", "testdata", "kinds", kind+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var st evidence.Statement
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&st.Predicate)
	}
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Post signs payload with k and posts it; it returns the HTTP status.
func (f *Server) Post(k ed25519.PrivateKey, payload []byte) int {
	f.t.Helper()
	env, err := verifier.SignEnvelope(k, payload)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.Post(f.srv.URL+"/v1/records", "application/json", bytes.NewReader(env))
	if err != nil {
		f.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		f.t.Fatalf("post: %d %s", resp.StatusCode, body)
	}
	return resp.StatusCode
}

// WaitProjected waits until the projection has applied the whole log.
func (f *Server) WaitProjected() {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.Metrics.Projection().Applied() < f.Log.Size() {
		if time.Now().After(deadline) {
			f.t.Fatalf("projection at %d of %d entries", f.Metrics.Projection().Applied(), f.Log.Size())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Scrape returns GET /metrics.
func (f *Server) Scrape() []byte {
	f.t.Helper()
	resp, err := http.Get(f.srv.URL + "/metrics")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		f.t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return b
}

// repoRoot is the module's root directory (tests run in their package's).
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
