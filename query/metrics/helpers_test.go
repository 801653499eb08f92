package metrics_test

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

	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/query/metrics"
	"evident.dev/evident/verifier"
)

const testOrigin = "evident.test/metrics"

// fixture is a real log behind the real ingest handler, with the approval
// judge, and the metrics over real HTTP on 127.0.0.1.
type fixture struct {
	t       *testing.T
	dir     string
	logKey  ed25519.PrivateKey
	ci      ed25519.PrivateKey
	stray   ed25519.PrivateKey
	trust   verifier.TrustConfig
	log     *ledger.Log
	metrics *metrics.Metrics
	srv     *httptest.Server
	cancel  context.CancelFunc
	tailed  chan error
}

func key(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubPEM(t *testing.T, k ed25519.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func newFixture(t *testing.T, dir string) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: dir, logKey: key("log"), ci: key("ci"), stray: key("stranger")}
	f.trust = verifier.TrustConfig{Runners: []verifier.Runner{
		{Name: "ci", PublicKey: pubPEM(t, f.ci), Scope: verifier.Scope{Environments: []string{"*"}}},
	}}
	f.start()
	return f
}

func (f *fixture) start() {
	t := f.t
	signer, err := ledger.NewNoteSigner(testOrigin, f.logKey)
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
	f.log, f.metrics = lg, m
	if err := ingest.EnsureTrust(context.Background(), lg, f.logKey, f.trust, ingest.Genesis{
		Operator: "ops@example.com", Origin: testOrigin, LogKey: signer.VerifierKey(), Now: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC),
	}); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(f.trust, f.logKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	approvals, err := verifier.NewApprovals(ingest.ChangeLog(lg), verifier.ApprovalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ingest.New(ingest.Config{Log: lg, Verifier: v, Judges: []ingest.Judge{ingest.ApprovalJudge{Approvals: approvals}}, Observer: m}).Register(mux)
	m.Register(mux)
	f.srv = httptest.NewServer(mux)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.tailed = cancel, make(chan error, 1)
	go func() { f.tailed <- m.Tail(ctx) }()
	t.Cleanup(f.stop)
}

// stop closes the server, the tail and the log; safe to call twice.
func (f *fixture) stop() {
	if f.srv == nil {
		return
	}
	f.srv.Close()
	f.cancel()
	if err := <-f.tailed; err != nil && err != context.Canceled {
		f.t.Errorf("Tail: %v", err)
	}
	if err := f.log.Close(); err != nil {
		f.t.Errorf("close log: %v", err)
	}
	f.srv = nil
}

// example loads the committed example of kind and lets edit change it.
func example(t *testing.T, kind string, edit func(*evidence.Transition)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "evidence", "testdata", "kinds", kind+".json"))
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

// post signs payload with k and posts it; it returns the HTTP status.
func (f *fixture) post(k ed25519.PrivateKey, payload []byte) int {
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

// waitProjected waits until the projection has applied the whole log.
func (f *fixture) waitProjected() {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.metrics.Projection().Applied() < f.log.Size() {
		if time.Now().After(deadline) {
			f.t.Fatalf("projection at %d of %d entries", f.metrics.Projection().Applied(), f.log.Size())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) scrape() []byte {
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
