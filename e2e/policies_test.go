package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/evidence"
)

// TestPoliciesWalkthrough runs docs/policies.md with the real binary: a
// production plan that makes a bucket public is denied; the exception
// that allows it waives the rule, named in the decision; once the
// exception expires the rule applies again.
func TestPoliciesWalkthrough(t *testing.T) {
	work := t.TempDir()
	// No configuration: the policies are on by default.
	srv := startServe(t, work, "--listen", "127.0.0.1:0")
	key := filepath.Join(work, "evident-data", "dev-runner.key")
	plan, err := filepath.Abs("../docs/policies/public-bucket-plan.json")
	if err != nil {
		t.Fatal(err)
	}
	const rule = "iac.storage.public-bucket.requires-exception"
	post := func(file string) api.Receipt {
		t.Helper()
		return recordPost(t, work, srv, key, file)
	}
	verdict := func(rc api.Receipt) (result, exception string, evidence []string) {
		t.Helper()
		if rc.Decision == nil {
			t.Fatalf("entry %d has no decision", rc.Index)
		}
		for _, d := range rc.Decision.Decisions {
			if d.RuleID == rule {
				return d.Result, d.ExceptionID, d.Evidence
			}
		}
		t.Fatalf("entry %d: no %s decision: %+v", rc.Index, rule, rc.Decision)
		return
	}
	// occurredAt is filled in to the second: records of one second would be
	// the same record.
	nextSecond := func() {
		// Real time: `record post` stamps occurredAt from the clock.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	}

	// 1. Denied.
	rc := post(plan)
	if res, _, _ := verdict(rc); res != "deny" || rc.Decision.Result != "deny" {
		t.Fatalf("the public bucket plan: %+v", rc.Decision)
	}

	// 2. The exception, expiring in a few seconds.
	expires := time.Now().UTC().Truncate(time.Second).Add(4 * time.Second)
	tmpl, err := os.ReadFile("../docs/policies/exception.json")
	if err != nil {
		t.Fatal(err)
	}
	exc := filepath.Join(work, "exception.json")
	writeFile(t, exc, strings.Replace(string(tmpl), "EXPIRES_AT", expires.Format(time.RFC3339), 1))
	if rc := post(exc); rc.Kind != "exception.granted" {
		t.Fatalf("exception receipt %+v", rc)
	}
	nextSecond()
	rc = post(plan)
	if res, id, _ := verdict(rc); res != "warn" || id != "EXC-2026-071" {
		t.Fatalf("with the exception: %+v", rc.Decision)
	}

	// 3. Expired: the rule applies again, naming the expired exception.
	// Real time: the plan is judged at its occurredAt, stamped from the clock.
	time.Sleep(time.Until(expires.Add(200 * time.Millisecond)))
	rc = post(plan)
	if res, id, ev := verdict(rc); res != "deny" || id != "" || !slices.Contains(ev, "exception.expired.EXC-2026-071") {
		t.Fatalf("after expiry: %+v", rc.Decision)
	}
	if !slices.ContainsFunc(rc.Findings, func(f evidence.Finding) bool { return f.Code == "policy.exception-expired" }) {
		t.Fatalf("after expiry, findings %+v", rc.Findings)
	}
}

// TestServePoliciesOff: `policies: {enabled: false}` turns the default
// policies off: a production plan that the bundled rules deny is appended
// with no decision, and completeness, which the policies' tracker
// answers, is null.
func TestServePoliciesOff(t *testing.T) {
	work := t.TempDir()
	writeFile(t, filepath.Join(work, "evident.yaml"), "policies:\n  enabled: false\n")
	srv := startServe(t, work, "--config", "evident.yaml", "--listen", "127.0.0.1:0")
	plan, err := filepath.Abs("../docs/policies/public-bucket-plan.json")
	if err != nil {
		t.Fatal(err)
	}
	r := evident(t, work, "record", "post", "--key", filepath.Join(work, "evident-data", "dev-runner.key"), "--file", plan, "--server", srv.URL)
	var rc api.Receipt
	if err := json.Unmarshal([]byte(r.stdout), &rc); err != nil {
		t.Fatalf("receipt %s: %v", r.stdout, err)
	}
	if rc.Decision != nil || rc.PolicyDecisionSHA256 != "" || len(rc.Findings) != 0 {
		t.Errorf("with the policies off the plan was judged: %s", r.stdout)
	}
	_, body := graphqlPost(t, srv.URL, "", `{ completeness(environment: "prod") { changes } }`)
	if body != `{"data":{"completeness":null}}`+"\n" {
		t.Errorf("completeness with the policies off: %s", body)
	}
}

// TestGateRechecksExpiredException: a production plan that an exception
// waives to warn, approved by a directory member: the gate allows it while
// the exception is in force and denies it, naming the expired exception,
// once it has expired, without any new record of the plan. An approval
// relayed by a signer not allowed to relay, and one whose approver only
// claims a group, count neither for the gate nor for the policies.
func TestGateRechecksExpiredException(t *testing.T) {
	work := t.TempDir()
	evident(t, work, "keys", "generate", "--name", "ci", "--dir", ".")
	evident(t, work, "keys", "generate", "--name", "other", "--dir", ".")
	writeFile(t, filepath.Join(work, "evident.yaml"), `data: data
trust:
  runners:
    - {name: ci, publicKey: ci.pub, scope: {environments: ["*"], relayApprovals: true}}
    - {name: other, publicKey: other.pub, scope: {environments: ["*"]}}
  groups:
    platform-infra: [bob@example.com]
approvals:
  rules:
    - {environment: prod, groups: [platform-infra]}
`)
	srv := startServe(t, work, "--config", filepath.Join(work, "evident.yaml"), "--listen", "127.0.0.1:0")
	post := func(key, file string) api.Receipt {
		t.Helper()
		return recordPost(t, work, srv, key, file)
	}
	planFile, err := filepath.Abs("../docs/policies/public-bucket-plan.json")
	if err != nil {
		t.Fatal(err)
	}
	var plan evidence.Transition
	b, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().UTC().Truncate(time.Second).Add(5 * time.Second)
	tmpl, err := os.ReadFile("../docs/policies/exception.json")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(work, "exception.json"), strings.Replace(string(tmpl), "EXPIRES_AT", expires.Format(time.RFC3339), 1))
	post("ci.key", "exception.json")
	rc := post("ci.key", planFile)
	if rc.Decision == nil || rc.Decision.Result != "warn" {
		t.Fatalf("the waived plan: %+v", rc.Decision)
	}
	approval := func(approver string, groups ...string) string {
		now := time.Now().UTC().Truncate(time.Second)
		a := evidence.Transition{Kind: evidence.KindApprovalGranted, ChangeID: plan.ChangeID, OccurredAt: now, Actor: approver,
			Source: plan.Source, Target: plan.Target,
			Approval: &evidence.Approval{PullRequest: plan.Source.PullRequest, CommitSHA: plan.Source.CommitSHA,
				PlanSHA256: plan.Plan.PlanSHA256, PolicyDecisionSHA256: rc.PolicyDecisionSHA256,
				Approver: approver, Groups: groups, ApprovedAt: now, ExpiresAt: now.Add(time.Hour)}}
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(work, approver+".json")
		writeFile(t, f, string(b))
		return f
	}
	gate := func() (int, string) {
		r := runIn(t, work, time.Minute, "gate", "check", "--server", srv.URL, "--change", plan.ChangeID,
			"--commit", plan.Source.CommitSHA, "--plan-sha256", plan.Plan.PlanSHA256, "--env", "prod",
			"--stack", plan.Target.Stack, "--actor", "ci", "--json")
		return r.code, r.stdout + r.stderr
	}
	// Relayed by a signer that may not relay, and claimed groups: neither counts.
	post("other.key", approval("bob@example.com", "platform-infra"))
	post("ci.key", approval("mallory@example.com", "platform-infra"))
	if code, out := gate(); code != 1 || !strings.Contains(out, "approval.group-missing") {
		t.Fatalf("gate with an unauthorized relay and a claimed group: exit %d\n%s", code, out)
	}
	post("ci.key", approval("bob@example.com"))
	if code, out := gate(); code != 0 {
		t.Fatalf("gate while the exception is in force: exit %d\n%s", code, out)
	}
	// Real time: the gate judges the plan again at the server's now.
	time.Sleep(time.Until(expires.Add(200 * time.Millisecond)))
	code, out := gate()
	if code != 1 || !strings.Contains(out, "policy.exception-expired") {
		t.Fatalf("gate after the exception expired: exit %d, want 1 naming policy.exception-expired\n%s", code, out)
	}
}

// recordPost is `evident record post` of a file signed with key, and its
// receipt.
func recordPost(t *testing.T, work string, srv *testServer, key, file string) api.Receipt {
	t.Helper()
	r := evident(t, work, "record", "post", "--key", key, "--file", file, "--server", srv.URL)
	var rc api.Receipt
	if err := json.Unmarshal([]byte(r.stdout), &rc); err != nil {
		t.Fatalf("receipt %s: %v", r.stdout, err)
	}
	return rc
}
