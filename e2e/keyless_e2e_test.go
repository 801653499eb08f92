package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/keylesstest"
)

// TestServeKeyless configures keyless identities and a Sigstore trusted
// root in YAML, posts Sigstore bundles to the real server (with its
// bundled policies on: the plan's decision names the group that must
// approve, and the keyless approval binds that decision), and re-verifies
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
    platform-infra: [carol@example.com]
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
		Target: evidence.Target{Environment: "prod"}, RiskClass: "medium",
		Plan: &evidence.Plan{PlanSHA256: "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"}}
	post := func(identity, issuer string, p evidence.Transition, status int) []byte {
		t.Helper()
		b, err := s.Bundle(identity, issuer, statement(p), keylesstest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+"/v1/records", verifier.BundleMediaType, bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("bundle by %s: %d %s, want %d", identity, resp.StatusCode, body, status)
		}
		return body
	}
	body := post(workflow, "https://token.actions.githubusercontent.com", plan, http.StatusCreated)
	mustContain(t, "receipt", string(body), `"name":"`+workflow+`"`, `"issuer":"https://token.actions.githubusercontent.com"`)
	var receipt api.Receipt
	if err := json.Unmarshal(body, &receipt); err != nil {
		t.Fatal(err)
	}
	if len(receipt.PolicyDecisionSHA256) != 64 || receipt.Decision == nil {
		t.Fatalf("the plan's receipt has no policy decision: %s", body)
	}
	post("https://github.com/example/other/.github/workflows/plan.yml@refs/heads/main", "https://token.actions.githubusercontent.com", plan, http.StatusForbidden)

	gate := func(want string, approvals int) {
		t.Helper()
		d, err := client.New(srv.URL).AskGate(t.Context(), client.GateRequest{ChangeID: "CHG-K", CommitSHA: plan.Source.CommitSHA,
			PlanSHA256: plan.Plan.PlanSHA256, Target: plan.Target, Actor: "ci"})
		if err != nil {
			t.Fatal(err)
		}
		// The policy decision, not approvals.rules, names the group.
		if d.Decision != want || len(d.Approvals) != approvals || len(d.RequiredApprovers) != 1 || d.RequiredApprovers[0] != "platform-infra" {
			t.Errorf("gate: %+v, want %s with %d approvals required from platform-infra", d, want, approvals)
		}
	}
	gate(client.Deny, 0) // nobody approved

	// Carol approves keyless (her e-mail certificate), binding the plan and
	// the decision the plan's receipt returned.
	approve := func(decision string) evidence.Transition {
		return evidence.Transition{Kind: evidence.KindApprovalGranted, ChangeID: "CHG-K", OccurredAt: now, Actor: "carol@example.com",
			Source: plan.Source, Target: plan.Target, RiskClass: plan.RiskClass,
			Approval: &evidence.Approval{CommitSHA: plan.Source.CommitSHA, PlanSHA256: plan.Plan.PlanSHA256, PolicyDecisionSHA256: decision,
				Approver: "carol@example.com", ApprovedAt: now, ExpiresAt: now.Add(4 * time.Hour)}}
	}
	// An approval of another decision does not count.
	body = post("carol@example.com", "https://accounts.google.com", approve(plan.Plan.PlanSHA256), http.StatusCreated)
	mustContain(t, "approval of another decision", string(body), `"name":"carol@example.com"`)
	gate(client.Deny, 0)
	post("carol@example.com", "https://accounts.google.com", approve(receipt.PolicyDecisionSHA256), http.StatusCreated)
	gate(client.Allow, 1)

	srv.stop()
	r := evident(t, work, "verify", "--data", "data", "--log-key", srv.LogKey)
	// genesis, plan, three gate decisions, two approvals
	mustContain(t, "verify", r.stdout, "7 signatures re-verified")
}
