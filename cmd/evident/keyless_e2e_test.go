package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/keylesstest"
)

// TestServeKeyless configures keyless identities and a Sigstore trusted
// root in YAML, posts Sigstore bundles to the real server, and re-verifies
// the stopped log offline. The virtual Sigstore stands in for Fulcio and
// Rekor, which cannot run here.
func TestServeKeyless(t *testing.T) {
	work := t.TempDir()
	s, err := keylesstest.New()
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.TrustedRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "trusted_root.json"), root, 0o644); err != nil {
		t.Fatal(err)
	}
	const workflow = "https://github.com/example/infra-live/.github/workflows/plan.yml@refs/heads/main"
	cfg := `
trust:
  identities:
    - {name: plan-workflow, sanRegexp: 'https://github\.com/example/infra-live/\.github/workflows/[a-z]+\.yml@refs/heads/main',
       issuer: https://token.actions.githubusercontent.com, scope: {environments: [prod]}}
    - {name: carol, san: carol@example.com, issuer: https://accounts.google.com, scope: {environments: ["*"], relayApprovals: false}}
  sigstore:
    trustedRoot: trusted_root.json
  groups:
    database-owners: [carol@example.com]
  artifacts:
    signers: [{repository: github.com/example/orders, san: ci@example.com, issuer: https://accounts.google.com}]
    builders: [https://builder.example]
    protectedBranches: [main]
approvals:
  rules: [{environment: prod, groups: [database-owners]}]
  maxPlanAge: 1h
`
	if err := os.WriteFile(filepath.Join(work, "evident.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, work, "--config", "evident.yaml", "--data", "data", "--listen", "127.0.0.1:0")

	statement := func(p evidence.Transition) []byte {
		b, err := json.Marshal(evidence.Statement{Type: evidence.StatementType, PredicateType: evidence.PredicateType,
			Subject: client.DefaultSubjects(p), Predicate: p})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	now := time.Now().UTC().Truncate(time.Second)
	plan := evidence.Transition{Kind: evidence.KindPlanCreated, ChangeID: "CHG-K", OccurredAt: now, Actor: workflow,
		Source: evidence.Source{Repository: "infra-live", CommitSHA: "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"},
		Target: evidence.Target{Environment: "prod"},
		Plan:   &evidence.Plan{PlanSHA256: "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"}}
	for _, tc := range []struct {
		identity, issuer string
		p                evidence.Transition
		status           int
	}{
		{workflow, "https://token.actions.githubusercontent.com", plan, http.StatusCreated},
		{"https://github.com/example/other/.github/workflows/plan.yml@refs/heads/main", "https://token.actions.githubusercontent.com", plan, http.StatusForbidden},
	} {
		b, err := s.Bundle(tc.identity, tc.issuer, statement(tc.p), keylesstest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+"/v1/records", verifier.BundleMediaType, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("bundle by %s: %d %s, want %d", tc.identity, resp.StatusCode, body, tc.status)
		}
		if tc.status == http.StatusCreated {
			mustContain(t, "receipt", string(body), `"name":"`+workflow+`"`, `"issuer":"https://token.actions.githubusercontent.com"`)
		}
	}
	// The gate answers from the keyless plan: nobody approved.
	d, err := client.New(srv.URL).AskGate(t.Context(), client.GateRequest{ChangeID: "CHG-K", CommitSHA: plan.Source.CommitSHA,
		PlanSHA256: plan.Plan.PlanSHA256, Target: plan.Target, Actor: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != client.Deny || len(d.RequiredApprovers) != 1 || d.RequiredApprovers[0] != "database-owners" {
		t.Errorf("gate: %+v", d)
	}
	srv.stop()
	r := evident(t, work, "verify", "--data", "data", "--log-key", srv.LogKey)
	mustContain(t, "verify", r.stdout, "3 signatures re-verified")
}
