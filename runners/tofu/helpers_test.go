package tofu_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/internal/testenv"
	"evident.dev/evident/ledger"
	"evident.dev/evident/runners/tofu"
	"evident.dev/evident/verifier"
)

// ledgerServer is a real Evident write path (Badger log, DSSE verifier,
// ingest handler) over HTTP on 127.0.0.1, trusting one runner key.
type ledgerServer struct {
	t      *testing.T
	log    *ledger.Log
	url    string
	signer *client.Signer
}

func newLedgerServer(t *testing.T) *ledgerServer {
	t.Helper()
	_, logPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := checkpoint.NewSigner("evident.test/runner", logPriv)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: "evident.test/runner", Signer: ns, CacheMB: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	priv, pub, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	trust := verifier.TrustConfig{Runners: []verifier.Runner{{
		Name: "tofu-runner", PublicKey: string(pub), Scope: verifier.Scope{Environments: []string{"*"}},
	}}}
	err = ingest.EnsureTrust(context.Background(), lg, logPriv, trust, ingest.Genesis{
		Operator: "ops@example.com", Origin: "evident.test/runner", LogKey: ns.VerifierKey(), Now: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(trust, logPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ingest.New(ingest.Config{Log: lg, Verifier: v}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	signer, err := client.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &ledgerServer{t: t, log: lg, url: srv.URL, signer: signer}
}

func (s *ledgerServer) recorder() tofu.Recorder {
	return tofu.ClientRecorder{Client: client.New(s.url), Signer: s.signer}
}

// statements returns every record of the log after the genesis entries, in
// order, with the raw leaves (to look for secrets in).
func (s *ledgerServer) statements() ([]evidence.Statement, [][]byte) {
	s.t.Helper()
	var sts []evidence.Statement
	var leaves [][]byte
	for i := uint64(0); i < s.log.Size(); i++ {
		leaf, err := s.log.Leaf(context.Background(), i)
		if err != nil {
			s.t.Fatal(err)
		}
		e, err := evidence.ParseLeaf(leaf)
		if err != nil {
			s.t.Fatal(err)
		}
		var env struct {
			Payload []byte `json:"payload"`
		}
		if err := json.Unmarshal(e.Envelope, &env); err != nil {
			s.t.Fatal(err)
		}
		st, err := evidence.Decode(env.Payload)
		if err != nil {
			s.t.Fatal(err)
		}
		leaves = append(leaves, leaf, env.Payload)
		if st.Predicate.Kind.LogWide() {
			continue
		}
		sts = append(sts, *st)
	}
	return sts, leaves
}

// kinds lists the kinds of records from index from on.
func kinds(sts []evidence.Statement) []evidence.Kind {
	out := make([]evidence.Kind, len(sts))
	for i, st := range sts {
		out[i] = st.Predicate.Kind
	}
	return out
}

// fakeGate stands in for the server's apply gate in unit tests only (the
// real gate is exercised by the e2e tests): it answers
// what it is told and remembers the requests.
type fakeGate struct {
	mu       sync.Mutex
	decision tofu.GateDecision
	asked    []tofu.GateRequest
}

func (g *fakeGate) AskGate(_ context.Context, req tofu.GateRequest) (*tofu.GateDecision, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = append(g.asked, req)
	d := g.decision
	return &d, nil
}

func (g *fakeGate) set(decision string, reasons ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decision = tofu.GateDecision{Decision: decision, Reasons: reasons}
}

// stack writes a test stack under root/stacks/<env>/<cloud>/<account>/<region>/<name>
// using only terraform_data resources and the local backend.
func writeStack(t *testing.T, root string) string {
	t.Helper()
	dir := filepath.Join(root, "stacks", "prod", "aws", "account-payments-prod", "eu-west-1", "orders")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "main.tf"), stackConfig)
	setVars(t, dir, map[string]string{})
	return dir
}

const stackConfig = `
terraform {
  backend "local" {}
}

variable "db_password" {
  type      = string
  sensitive = true
}
variable "size" {
  type    = string
  default = "small"
}
variable "generation" {
  type    = string
  default = "1"
}
variable "extra_count" {
  type    = number
  default = 1
}
variable "fail" {
  type    = bool
  default = false
}

resource "terraform_data" "config" {
  input = var.size
}

resource "terraform_data" "db" {
  input = {
    password = var.db_password
    size     = var.size
  }
  triggers_replace = [var.generation]
}

resource "terraform_data" "extra" {
  count = var.extra_count
  input = "extra-${count.index}"
}

resource "terraform_data" "migration" {
  count = var.fail ? 1 : 0
  input = var.size
  provisioner "local-exec" {
    command = "echo migration failed >&2; exit 1"
  }
}

output "db_password" {
  value     = var.db_password
  sensitive = true
}
output "size" {
  value = var.size
}
`

// setVars writes the stack's non-secret variables, as a commit would.
func setVars(t *testing.T, dir string, vars map[string]string) {
	t.Helper()
	var b bytes.Buffer
	for k, v := range vars {
		b.WriteString(k + " = " + v + "\n")
	}
	writeFile(t, filepath.Join(dir, "terraform.tfvars"), b.String())
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tofuBinary(t *testing.T) string {
	return testenv.Tool(t, "tofu")
}
