package ingest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

const testOrigin = "evident.test/ingest"

var (
	testTime = time.Date(2026, 7, 3, 8, 52, 31, 0, time.UTC)
	// serverNow is the server's clock: records happened an hour before.
	serverNow = testTime.Add(time.Hour)
)

const (
	testCommit = "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"
	testPlan   = "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"
	stackA     = "prod/aws/payments/rds-orders"
)

type testKey struct {
	priv   crypto.Signer
	pubPEM string
	id     string
}

// fixedKey derives a key from a name, so every fuzz worker has the same.
func fixedKey(t testing.TB, alg, name string) testKey {
	t.Helper()
	seed := sha256.Sum256([]byte(name))
	var priv crypto.Signer
	switch alg {
	case "ed25519":
		priv = ed25519.NewKeyFromSeed(seed[:])
	case "ecdsa-p256":
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:])
		if err != nil {
			t.Fatal(err)
		}
		priv = k
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return testKey{priv: priv, pubPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), id: hex.EncodeToString(sum[:])}
}

// testServer is the ingest handler over real HTTP on 127.0.0.1, with a real
// log in a temporary directory whose genesis EnsureTrust wrote.
type testServer struct {
	t      testing.TB
	dir    string
	logKey testKey
	signer *checkpoint.Signer
	keys   map[string]testKey
	trust  verifier.TrustConfig
	log    *ledger.Log
	h      *ingest.Handler
	srv    *httptest.Server
	client *http.Client
	clock  atomic.Int64
}

type serverOption func(*ledger.Config, *ingest.Config)

// newTestServer starts a server trusting ci (ed25519, every environment)
// and apply (ECDSA P-256, prod, one stack). Keys named stranger are not
// trusted.
func newTestServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	s := &testServer{t: t, dir: t.TempDir(), keys: map[string]testKey{}}
	s.logKey = fixedKey(t, "ed25519", "log")
	var err error
	if s.signer, err = checkpoint.NewSigner(testOrigin, s.logKey.priv.(ed25519.PrivateKey)); err != nil {
		t.Fatal(err)
	}
	s.keys["ci"] = fixedKey(t, "ed25519", "ci")
	s.keys["apply"] = fixedKey(t, "ecdsa-p256", "apply")
	s.keys["stranger"] = fixedKey(t, "ed25519", "stranger")
	s.keys["newcomer"] = fixedKey(t, "ecdsa-p256", "newcomer")
	s.trust = verifier.TrustConfig{Runners: []verifier.Runner{
		{Name: "ci", PublicKey: s.keys["ci"].pubPEM, Scope: verifier.Scope{Environments: []string{"*"}}},
		{Name: "apply", PublicKey: s.keys["apply"].pubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Stacks: []string{stackA}}},
	}}
	s.clock.Store(serverNow.UnixNano())
	s.openLog(opts...)
	s.ensureTrust(s.trust)
	s.serve(s.trust, opts...)
	return s
}

func (s *testServer) now() time.Time {
	return time.Unix(0, s.clock.Add(int64(time.Microsecond))).UTC()
}

func (s *testServer) openLog(opts ...serverOption) {
	s.t.Helper()
	cfg := ledger.Config{Dir: s.dir, Origin: testOrigin, Signer: s.signer, Clock: s.now, CacheMB: 8}
	for _, o := range opts {
		o(&cfg, &ingest.Config{})
	}
	lg, err := ledger.Open(cfg)
	if err != nil {
		s.t.Fatalf("ledger.Open: %v", err)
	}
	s.log = lg
	s.t.Cleanup(func() {
		if s.log == lg {
			s.closeLog()
		}
	})
}

func (s *testServer) closeLog() {
	s.t.Helper()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
	if err := s.log.Close(); err != nil {
		s.t.Fatalf("close log: %v", err)
	}
	s.log = nil
}

func (s *testServer) genesis() ingest.Genesis {
	return ingest.Genesis{Operator: "erin@example.com", Origin: testOrigin, LogKey: s.signer.VerifierKey(),
		Versions: map[string]string{"evident": "test"}, Now: s.now()}
}

func (s *testServer) ensureTrust(trust verifier.TrustConfig) {
	s.t.Helper()
	if err := ingest.EnsureTrust(context.Background(), s.log, s.logKey.priv, trust, s.genesis()); err != nil {
		s.t.Fatalf("EnsureTrust: %v", err)
	}
}

// serve starts the HTTP server with a verifier for trust, as evident serve
// does.
func (s *testServer) serve(trust verifier.TrustConfig, opts ...serverOption) {
	s.t.Helper()
	v, err := verifier.New(trust, s.logKey.priv.Public())
	if err != nil {
		s.t.Fatal(err)
	}
	cfg := ingest.Config{Log: s.log, Verifier: v, Clock: func() time.Time { return serverNow }}
	for _, o := range opts {
		o(&ledger.Config{}, &cfg)
	}
	s.h = ingest.New(cfg)
	mux := http.NewServeMux()
	s.h.Register(mux)
	s.srv = httptest.NewServer(mux) // listens on 127.0.0.1
	s.client = s.srv.Client()
	s.t.Cleanup(func() {
		if s.srv != nil {
			s.srv.Close()
		}
	})
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (s *testServer) post(body []byte, contentType string) response {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+"/v1/records", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("read response: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// receipt decodes a success answer strictly.
func receipt(t testing.TB, r response) api.Receipt {
	t.Helper()
	var rc api.Receipt
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		t.Fatalf("receipt %s: %v", r.body, err)
	}
	return rc
}

// errorBody decodes a refusal strictly.
func errorBody(t testing.TB, r response) api.ErrorBody {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("refusal Content-Type %q", ct)
	}
	var e api.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("refusal %q is not an error body: %v", r.body, err)
	}
	if e.Code == "" || e.Error == "" {
		t.Errorf("refusal without code or message: %s", r.body)
	}
	return e
}

// transition returns a valid predicate of the kind.
func transition(kind evidence.Kind, changeID string, tg evidence.Target) evidence.Transition {
	p := evidence.Transition{
		Kind: kind, ChangeID: changeID, OccurredAt: testTime, Actor: "repo:example/infra-live:pull_request",
		Source: evidence.Source{Repository: "infra-live", CommitSHA: testCommit},
		Target: tg,
	}
	switch kind {
	case evidence.KindPlanCreated:
		p.Plan = &evidence.Plan{PlanSHA256: testPlan}
	case evidence.KindApplyCompleted:
		p.Apply = &evidence.Apply{PlanSHA256: testPlan}
	case evidence.KindBootstrap:
		p.Source, p.Target = evidence.Source{}, evidence.Target{}
		p.Bootstrap = &evidence.Bootstrap{Operator: "x", LogOrigin: testOrigin, LogKey: "k", TrustDigest: testPlan, Trust: json.RawMessage(`{}`)}
	default:
		panic("no block for " + kind)
	}
	return p
}

func payloadOf(t testing.TB, p evidence.Transition) []byte {
	t.Helper()
	b, err := json.Marshal(evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       []evidence.Subject{{Name: "plan", Digest: map[string]string{"sha256": testPlan}}},
		PredicateType: evidence.PredicateType,
		Predicate:     p,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func plan(t testing.TB, changeID, env string) []byte {
	return payloadOf(t, transition(evidence.KindPlanCreated, changeID, evidence.Target{Environment: env}))
}

func sign(t testing.TB, k testKey, payload []byte) []byte {
	t.Helper()
	env, err := verifier.SignEnvelope(k.priv, payload)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// signedPlan is a valid record by ci.
func (s *testServer) signedPlan(changeID string) []byte {
	return sign(s.t, s.keys["ci"], plan(s.t, changeID, "prod"))
}

// checkLog verifies the whole log offline, records and all.
func (s *testServer) checkLog(onRecord func(uint64, *verifier.Verified)) *audit.CheckReport {
	s.t.Helper()
	snap, err := s.log.Snapshot()
	if err != nil {
		s.t.Fatal(err)
	}
	defer snap.Close()
	rep, err := audit.CheckLog(context.Background(), snap, audit.CheckOptions{
		Origin: testOrigin, LogKey: s.signer.VerifierKey(), Signatures: true, OnRecord: onRecord,
	})
	if err != nil {
		s.t.Fatalf("CheckLog: %v", err)
	}
	return rep
}

// entry returns the parsed entry at index.
func (s *testServer) entry(index uint64) (*evidence.Entry, []byte) {
	s.t.Helper()
	leaf, err := s.log.Leaf(context.Background(), index)
	if err != nil {
		s.t.Fatalf("leaf %d: %v", index, err)
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		s.t.Fatalf("leaf %d: %v", index, err)
	}
	return e, leaf
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// newHTTPServer serves h on 127.0.0.1 until the test ends.
func newHTTPServer(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
