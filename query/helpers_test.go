package query_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/approvals"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/policies"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

const testOrigin = "evident.test/query"

// harness is the real read and write path: a Badger-backed log in a
// temporary directory, the ingest handler and the GraphQL handler on one
// HTTP server on 127.0.0.1.
type harness struct {
	t         testing.TB
	log       *ledger.Log
	gql       *query.GraphQL
	srv       *httptest.Server
	runner    crypto.Signer
	logKey    string // note verifier key
	access    *query.AccessLog
	accessLog string
}

func seededKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubPEM(t testing.TB, k crypto.Signer) string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func newHarness(t testing.TB, access query.AccessConfig) *harness {
	t.Helper()
	return newHarnessPolicies(t, access, true)
}

// newHarnessPolicies is newHarness with the bundled policies on or off (a
// server's policies: {enabled: false}).
func newHarnessPolicies(t testing.TB, access query.AccessConfig, withPolicies bool) *harness {
	t.Helper()
	dir := t.TempDir()
	logPriv := seededKey("log")
	signer, err := checkpoint.NewSigner(testOrigin, logPriv)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: dir, Origin: testOrigin, Signer: signer, CheckpointInterval: 5 * time.Millisecond, CacheMB: 16,
		Clock: func() time.Time { return query.DemoClock }})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, log: lg, runner: seededKey("runner"), logKey: signer.VerifierKey()}
	// As on a server with no configuration: the development key (here the
	// harness's runner) relays approvals, and the directory is the demo's.
	trust := verifier.TrustConfig{
		Runners: []verifier.Runner{{Name: "ci", PublicKey: pubPEM(t, h.runner), Scope: verifier.Scope{Environments: []string{"*"}, RelayApprovals: true}}},
		Groups:  query.DemoGroups(),
	}
	if err := ingest.EnsureTrust(context.Background(), lg, logPriv, trust, ingest.Genesis{
		Operator: "test", Origin: testOrigin, LogKey: signer.VerifierKey(), Now: query.DemoClock.Add(-60 * 24 * time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(trust, logPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	auth, err := query.NewAuthenticator(access)
	if err != nil {
		t.Fatal(err)
	}
	h.accessLog = filepath.Join(dir, "access.jsonl")
	if h.access, err = query.OpenAccessLog(h.accessLog); err != nil {
		t.Fatal(err)
	}
	// The policies' completeness tracker, as the server wires it; it stops
	// when the log closes.
	tracker := policies.NewTracker(lg, nil, nil)
	go func() {
		if err := tracker.Run(context.Background()); err != nil {
			t.Errorf("tracker: %v", err)
		}
	}()
	projection := query.PolicyCompleteness{Tracker: tracker, Log: lg}
	// The approval judge of the real server, with the demo's directory:
	// entries carry the findings it computes at append time, and GraphQL
	// says of each approval whether it counts.
	approvalJudge, err := approvals.New(ingest.ChangeLog(lg), approvals.Config{Groups: trust.Groups})
	if err != nil {
		t.Fatal(err)
	}
	h.gql, err = query.NewGraphQL(query.GraphQLConfig{Store: lg, Auth: auth, Access: h.access, Clock: func() time.Time { return query.DemoClock },
		Completeness: projection, Exceptions: projection, Approvals: approvalJudge})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	// The bundled policies judge every record, as on a server with its
	// default configuration.
	judges := []ingest.Judge{ingest.ApprovalJudge{Approvals: approvalJudge}}
	if withPolicies {
		set, err := policies.Load(context.Background(), policies.Source{})
		if err != nil {
			t.Fatal(err)
		}
		judge, err := policies.NewJudge(policies.JudgeConfig{Set: set, Log: lg, Exceptions: tracker, Approvals: approvalJudge,
			Clock: func() time.Time { return query.DemoClock }})
		if err != nil {
			t.Fatal(err)
		}
		judges = append(judges, policyJudge{judge})
	}
	ingest.New(ingest.Config{Log: lg, Verifier: v, Clock: func() time.Time { return query.DemoClock },
		Judges: judges}).Register(mux)
	h.gql.Register(mux)
	h.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		h.srv.Close()
		if err := h.access.Close(); err != nil {
			t.Error(err)
		}
		if err := lg.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// post signs a statement with the runner key and posts it.
func (h *harness) post(st evidence.Statement) uint64 {
	h.t.Helper()
	return h.postReceipt(st).Index
}

// postReceipt is post, returning the receipt.
func (h *harness) postReceipt(st evidence.Statement) api.Receipt {
	h.t.Helper()
	payload, err := json.Marshal(st)
	if err != nil {
		h.t.Fatal(err)
	}
	env, err := verifier.SignEnvelope(h.runner, payload)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.Post(h.srv.URL+"/v1/records", "application/json", bytes.NewReader(env))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		h.t.Fatalf("post %s of %s: %s %s", st.Predicate.Kind, st.Predicate.ChangeID, resp.Status, body)
	}
	var rc api.Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		h.t.Fatal(err)
	}
	return rc
}

// postQuietly posts from a goroutine that is not the test's: it reports
// nothing.
func (h *harness) postQuietly(st evidence.Statement) {
	payload, _ := json.Marshal(st)
	env, err := verifier.SignEnvelope(h.runner, payload)
	if err != nil {
		return
	}
	if resp, err := http.Post(h.srv.URL+"/v1/records", "application/json", bytes.NewReader(env)); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func (h *harness) loadDemo() {
	h.t.Helper()
	decisions := query.DemoDecisions{}
	for _, st := range query.DemoStatements() {
		decisions.Bind(&st)
		rc := h.postReceipt(st)
		decisions.Posted(st, rc.PolicyDecisionSHA256)
	}
	h.waitCheckpoint()
}

// waitCheckpoint waits until a signed checkpoint covers every entry.
func (h *harness) waitCheckpoint() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.log.CheckpointSize() < h.log.Size() {
		if time.Now().After(deadline) {
			h.t.Fatalf("no checkpoint covers %d entries", h.log.Size())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type gqlResult struct {
	Data   json.RawMessage  `json:"data"`
	Errors []map[string]any `json:"errors"`
	Status int              `json:"-"`
}

// query posts a GraphQL query with an optional bearer token.
func (h *harness) query(token, q string, vars map[string]any) gqlResult {
	h.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": q, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out gqlResult
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		h.t.Fatalf("response %s: %v", b, err)
	}
	out.Status = resp.StatusCode
	return out
}

func tokenHash(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// get fetches a path with an optional bearer token.
func (h *harness) get(token, path string) ([]byte, int) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b, resp.StatusCode
}

func openFile(path string) (*os.File, error) { return os.Open(path) }
