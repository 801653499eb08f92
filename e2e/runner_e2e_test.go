package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"evident.dev/evident/artifacts"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/testenv"
)

const (
	e2eSecret  = "pg-Sup3r-s3cret-for-orders-0042"
	e2eCommit  = "4f1c2d3e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d"
	e2eTfStack = `
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
resource "terraform_data" "db" {
  input = {
    password = var.db_password
    size     = var.size
  }
}
resource "terraform_data" "alarm" {
  input = "connections-over-800"
}
output "db_password" {
  value     = var.db_password
  sensitive = true
}
`
)

// runnerEnv is the environment of one `evident runner` process: the CI
// variables of the change, the engine, the secrets (from the CI secret
// store in real life) and the object store's credentials.
type runnerEnv struct {
	t   *testing.T
	dir string
	env []string
}

func (r runnerEnv) run(want int, args ...string) result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, evidentBin, append([]string{"runner"}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = r.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.t.Fatalf("evident runner %s: still running after 5m\n%s", strings.Join(args, " "), res)
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	case err != nil:
		r.t.Fatal(err)
	}
	if res.code != want {
		r.t.Fatalf("evident runner %s: want exit %d, got %s", strings.Join(args, " "), want, res)
	}
	return res
}

// TestRunnerEndToEnd takes a stack from plan through a gate-refused apply,
// an approval, a gate-allowed apply, verification and drift, against a
// running `evident serve`, the real OpenTofu and a real MinIO with object
// lock; then checks the change's evidence in the log and that the secret
// variable and output appear nowhere the runner writes.
func TestRunnerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs OpenTofu, MinIO and the server")
	}
	tofuBin := testenv.Tool(t, "tofu")
	m := testenv.StartMinIO(t)
	dir := t.TempDir()
	for _, k := range []string{"ci", "alice", "carol"} {
		evident(t, dir, "keys", "generate", "--name", k, "--dir", "keys")
	}
	writeFile(t, filepath.Join(dir, "evident.yaml"), fmt.Sprintf(`
log:
  origin: evident.test/runner-e2e
trust:
  runners:
    - {name: ci, publicKey: keys/ci.pub, scope: {environments: ["*"]}}
    - {name: alice, publicKey: keys/alice.pub, approver: alice@example.com, scope: {environments: ["*"]}}
    - {name: carol, publicKey: keys/carol.pub, approver: carol@example.com, scope: {environments: ["*"]}}
  groups:
    database-owners: [carol@example.com]
    platform-infra: [carol@example.com]
    security: [carol@example.com]
approvals:
  rules:
    - {environment: prod, groups: [database-owners]}
artifacts:
  s3: {endpoint: %q, insecure: true, bucket: evidence, prefix: infra-live, retention: 1h}
`, m.Endpoint))
	t.Setenv("EVIDENT_S3_ACCESS_KEY", m.AccessKey) // the server inherits them
	t.Setenv("EVIDENT_S3_SECRET_KEY", m.SecretKey)
	srv := startServe(t, dir, "--config", "evident.yaml", "--data", "data", "--listen", "127.0.0.1:0")

	stack := filepath.Join(dir, "infra-live", "stacks", "prod", "aws", "account-payments-prod", "eu-west-1", "orders")
	writeFile(t, filepath.Join(stack, "main.tf"), e2eTfStack)
	writeFile(t, filepath.Join(dir, "catalog.yaml"), "riskyResourceTypes: [terraform_data]\n")
	tofurc := filepath.Join(dir, "tofurc")
	writeFile(t, tofurc, "")
	r := runnerEnv{t: t, dir: dir, env: append(os.Environ(),
		"PATH="+filepath.Dir(tofuBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"TF_CLI_CONFIG_FILE="+tofurc, "TF_IN_AUTOMATION=1",
		"TF_VAR_db_password="+e2eSecret,
		"EVIDENT_PLAN_PASSPHRASE=correct horse battery staple",
		"GITHUB_REPOSITORY=example/infra-live", "GITHUB_REF=refs/pull/4812/merge", "GITHUB_SHA="+e2eCommit,
		"GITHUB_ACTOR=alice@example.com", "GITHUB_BASE_REF=main",
	)}
	// The stack as docs/runner.md names it: relative to where the runner
	// runs (the engine itself runs inside the stack).
	relStack, err := filepath.Rel(dir, stack)
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--stack", relStack, "--server", srv.URL, "--key", "keys/ci.key", "--catalog", "catalog.yaml",
		"--s3-endpoint", m.Endpoint, "--s3-insecure", "--s3-bucket", "evidence", "--s3-prefix", "infra-live", "--s3-retention", "1h"}
	changeID := "infra-live#4812/prod/aws/account-payments-prod/eu-west-1/orders"

	// Plan.
	out := r.run(0, append([]string{"plan"}, common...)...)
	mustContain(t, "plan output", out.stdout, "actions: create 2, update 0, delete 0, replace 0",
		"sensitive changes (values withheld): terraform_data.db.input.password, output.db_password")
	// The engine's own output streams to stderr as it runs, apart from the
	// summary on stdout; neither holds the secret.
	mustContain(t, "the engine's plan output", out.stderr, "will perform the following actions")
	var printed []string
	printed = append(printed, out.stdout, out.stderr)
	var ref struct {
		PlanSHA256           string `json:"planSha256"`
		PlanArtifact         string `json:"planArtifact"`
		PolicyDecisionSHA256 string `json:"policyDecisionSha256"`
		EntryIndex           uint64 `json:"entryIndex"`
	}
	b, err := os.ReadFile(filepath.Join(stack, ".evident", "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}

	// The gate refuses: nobody approved. The server's bundled policies (on
	// by default) judged the plan: the groups come from their decision.
	out = r.run(3, append([]string{"apply"}, common...)...)
	mustContain(t, "refused apply", out.stdout+out.stderr, "denied", "(required approvers: platform-infra, security)")
	if _, err := os.Stat(filepath.Join(stack, "terraform.tfstate")); err == nil {
		t.Fatal("a refused apply wrote state")
	}

	// Carol, a database owner, approves exactly this commit and plan.
	now := time.Now().UTC().Truncate(time.Second)
	approval := map[string]any{
		"kind": "approval.granted", "changeId": changeID, "occurredAt": now, "actor": "carol@example.com",
		"source": map[string]any{"repository": "example/infra-live", "pullRequest": 4812, "commitSha": e2eCommit},
		"target": map[string]any{"environment": "prod", "stack": "prod/aws/account-payments-prod/eu-west-1/orders"},
		"approval": map[string]any{
			"pullRequest": 4812, "commitSha": e2eCommit, "planSha256": ref.PlanSHA256,
			"policyDecisionSha256": ref.PolicyDecisionSHA256, "approver": "carol@example.com",
			"groups": []string{"database-owners", "platform-infra", "security"}, "approvedAt": now, "expiresAt": now.Add(time.Hour),
		},
	}
	if ref.PolicyDecisionSHA256 == "" {
		delete(approval["approval"].(map[string]any), "policyDecisionSha256")
	}
	ab, _ := json.Marshal(approval)
	writeFile(t, filepath.Join(dir, "approval.json"), string(ab))
	evident(t, dir, "record", "post", "--key", "keys/carol.key", "--file", "approval.json", "--server", srv.URL)

	// The gate allows: apply, verification.
	out = r.run(0, append([]string{"apply"}, common...)...)
	mustContain(t, "apply output", out.stdout, "the gate allowed", "applied, 2 resources changed", "verification pass")
	mustContain(t, "the engine's apply output", out.stderr, "Apply complete!")
	if strings.Contains(out.stdout, "Apply complete!") {
		t.Error("the engine's output is mixed into the summary on stdout")
	}
	printed = append(printed, out.stdout, out.stderr)

	// Drift made out of band, then reverted.
	statePath := filepath.Join(stack, "terraform.tfstate")
	clean, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, statePath, strings.Replace(string(clean), "connections-over-800", "connections-over-9000", 2))
	if string(clean) == mustRead(t, statePath) {
		t.Fatal("the state edit changed nothing")
	}
	out = r.run(2, append([]string{"drift"}, common...)...) // 2: drift, as -detailed-exitcode
	mustContain(t, "drift output", out.stdout, "drift detected: terraform_data.alarm")
	writeFile(t, statePath, string(clean))
	out = r.run(0, append([]string{"drift"}, common...)...)
	mustContain(t, "drift output", out.stdout, "drift reconciled (revert): terraform_data.alarm")

	// The change's evidence, in the log.
	var kinds []string
	byKind := map[string]entry{}
	for i := uint64(0); i < srv.size(); i++ {
		e := srv.entry(i)
		st := statementOf(t, e.Envelope)
		pred := st["predicate"].(map[string]any)
		if pred["changeId"] != changeID {
			continue
		}
		k := pred["kind"].(string)
		kinds = append(kinds, k)
		byKind[k] = e
		for _, f := range e.Findings {
			var fd evidence.Finding
			json.Unmarshal(f, &fd)
			if fd.Code == "artifact.missing" {
				t.Errorf("%s entry %d: %s", k, i, f)
			}
		}
	}
	want := []string{"change.opened", "plan.created", "gate.decided", "approval.granted", "gate.decided",
		"apply.started", "apply.completed", "verification.completed", "drift.detected", "drift.reconciled"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("the change's entries are %v, want %v", kinds, want)
	}
	if f := byKind["apply.completed"].Findings; len(f) != 0 {
		t.Errorf("the approved apply has findings %s", f)
	}

	// The auditor's questions about this change, in GraphQL.
	var gq struct {
		Data struct {
			Change struct {
				Contract  struct{ Author string }
				Plans     []struct{ Plan struct{ PlanSHA256 string } }
				Approvals []struct {
					Approver, CommitSha, PlanSha256 string
					ByAuthor                        bool
				}
				GateDecisions []struct{ Gate struct{ Decision string } }
				Applies       []struct {
					Kind  string
					Apply struct {
						PlanSha256                        string
						ResourcesChanged, ResourcesFailed []string
					}
				}
				AppliesWithoutFreshApproval []struct{ Index int }
				Verifications               []struct{ Verification struct{ Result string } }
				Drift                       []struct {
					Kind  string
					Drift struct {
						Resources []string
						Method    *string
					}
				}
				Findings []struct{ Code string }
			}
		}
		Errors []json.RawMessage
	}
	graphqlQuery(t, srv.URL, `query($id: String!) { change(id: $id) {
		contract { author }
		plans { plan { planSha256 } }
		approvals { approver commitSha planSha256 byAuthor }
		gateDecisions { gate { decision } }
		applies { kind apply { planSha256 resourcesChanged resourcesFailed } }
		appliesWithoutFreshApproval { index }
		verifications { verification { result } }
		drift { kind drift { resources method } }
		findings { code }
	} }`, map[string]any{"id": changeID}, &gq)
	c := gq.Data.Change
	switch {
	case len(gq.Errors) > 0:
		t.Fatalf("GraphQL errors: %s", gq.Errors)
	case c.Contract.Author != "alice@example.com" || len(c.Plans) != 1 || c.Plans[0].Plan.PlanSHA256 != ref.PlanSHA256:
		t.Fatalf("GraphQL contract and plans: %+v", c)
	case len(c.Approvals) != 1 || c.Approvals[0].Approver != "carol@example.com" || c.Approvals[0].ByAuthor ||
		c.Approvals[0].CommitSha != e2eCommit || c.Approvals[0].PlanSha256 != ref.PlanSHA256:
		t.Fatalf("GraphQL: who allowed this exact change? %+v", c.Approvals)
	case len(c.GateDecisions) != 2 || c.GateDecisions[0].Gate.Decision != "deny" || c.GateDecisions[1].Gate.Decision != "allow":
		t.Fatalf("GraphQL gate decisions %+v", c.GateDecisions)
	case len(c.Applies) != 2 || c.Applies[1].Kind != "apply.completed" || c.Applies[1].Apply.PlanSha256 != ref.PlanSHA256 ||
		len(c.Applies[1].Apply.ResourcesChanged) != 2 || len(c.Applies[1].Apply.ResourcesFailed) != 0 ||
		len(c.AppliesWithoutFreshApproval) != 0:
		t.Fatalf("GraphQL applies %+v, without fresh approval %+v", c.Applies, c.AppliesWithoutFreshApproval)
	case len(c.Verifications) != 1 || c.Verifications[0].Verification.Result != "pass":
		t.Fatalf("GraphQL verifications %+v", c.Verifications)
	case len(c.Drift) != 2 || c.Drift[1].Kind != "drift.reconciled" || c.Drift[1].Drift.Method == nil || *c.Drift[1].Drift.Method != "revert" ||
		!slices.Equal(c.Drift[0].Drift.Resources, []string{"terraform_data.alarm"}):
		t.Fatalf("GraphQL drift %+v", c.Drift)
	}
	// Complete evidence: no entry of the change was flagged (no missing
	// artifact, no apply without a fresh approval by the required group).
	// The one finding is the plan's: the policies' decision naming the
	// groups that must approve (info).
	if len(c.Findings) != 1 || c.Findings[0].Code != "policy.approval-required" {
		t.Errorf("findings on the change: %+v, want only the plan's policy.approval-required", c.Findings)
	}

	// The artifacts are in MinIO under COMPLIANCE retention, and the server
	// flags a record naming one that is not.
	store, err := artifacts.NewS3(artifacts.S3Config{Endpoint: m.Endpoint, Insecure: true, Bucket: "evidence", Prefix: "infra-live",
		AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if mode, until, err := store.Retention(context.Background(), ref.PlanArtifact); err != nil || mode != "COMPLIANCE" || until.Before(time.Now()) {
		t.Fatalf("plan artifact retention = %s until %v, %v", mode, until, err)
	}
	if err := store.Delete(context.Background(), ref.PlanArtifact); !errors.Is(err, artifacts.ErrRetained) {
		t.Fatalf("deleting the plan artifact = %v, want ErrRetained", err)
	}
	signer := newSigner(t, filepath.Join(dir, "keys", "ci.key"))
	tr := planRecord("CHG-MISSING-ARTIFACT", "prod", 1)
	tr.Artifacts = []evidence.Artifact{{Name: "plan", Digest: artifacts.Digest([]byte("never uploaded"))}}
	rc, _ := srv.postRecord(sign(t, signer, tr), 201)
	mustContain(t, "entry of a record with a missing artifact", fmt.Sprint(srv.entryFindings(rc.Index)), "artifact.missing")

	// The secret appears nowhere: not in any object, entry or output.
	raw, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	objects := 0
	for info := range raw.ListObjects(context.Background(), "evidence", minio.ListObjectsOptions{Recursive: true}) {
		if info.Err != nil {
			t.Fatal(info.Err)
		}
		obj, err := raw.GetObject(context.Background(), "evidence", info.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(obj); err != nil {
			t.Fatal(err)
		}
		obj.Close()
		objects++
		if bytes.Contains(buf.Bytes(), []byte(e2eSecret)) {
			t.Errorf("object %s holds the secret", info.Key)
		}
	}
	if objects < 3 {
		t.Fatalf("only %d objects in the store, want the plan, the redacted plan and the apply log", objects)
	}
	for i := uint64(0); i < srv.size(); i++ {
		if e := srv.entry(i); bytes.Contains(e.Leaf, []byte(e2eSecret)) {
			t.Errorf("entry %d holds the secret", i)
		}
	}
	if strings.Contains(strings.Join(printed, "")+out.stdout+out.stderr+srv.stdout.String()+srv.stderr.String(), e2eSecret) {
		t.Error("a process printed the secret")
	}
	// The engine does hold it, so the searches above could have found it.
	show := exec.Command(tofuBin, "output", "-raw", "db_password")
	show.Dir, show.Env = stack, r.env
	if got, err := show.Output(); err != nil || string(got) != e2eSecret {
		t.Fatalf("tofu output db_password = %q, %v", got, err)
	}

	// The change id the runner made ('#' and slashes) works in the pages
	// and in the commands that take one: its page opens at its escaped
	// link, and its evidence pack downloads and verifies.
	page := string(srv.get("/", http.StatusOK))
	link := "/changes/" + evidence.EscapeChangeID(changeID)
	if !strings.Contains(page, `href="`+link+`"`) {
		t.Errorf("the home page does not link %s as %s", changeID, link)
	}
	mustContain(t, "the change's page", string(srv.get(link, http.StatusOK)), "apply.completed")
	srv.waitCheckpoint(srv.size())
	evident(t, dir, "pack", "--server", srv.URL, "--change", changeID, "--out", "pack.json", "--log-key", srv.LogKey)
	res := evident(t, dir, "verify", "--pack", "pack.json", "--log-key", srv.LogKey)
	mustContain(t, "verify --pack", res.stdout, "OK: evidence pack of "+changeID)
}

// entryFindings returns the codes of an entry's findings.
func (s *testServer) entryFindings(index uint64) []string {
	s.t.Helper()
	var codes []string
	for _, f := range s.entry(index).Findings {
		var fd evidence.Finding
		if err := json.Unmarshal(f, &fd); err != nil {
			s.t.Fatal(err)
		}
		codes = append(codes, fd.Code)
	}
	return codes
}

// graphqlQuery posts a query to the server's GraphQL endpoint and decodes the
// answer into out.
func graphqlQuery(t *testing.T, url, query string, vars map[string]any, out any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Post(url+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("POST /graphql: %d %s", resp.StatusCode, buf.Bytes())
	}
	if err := json.Unmarshal(buf.Bytes(), out); err != nil {
		t.Fatalf("POST /graphql: %v: %s", err, buf.Bytes())
	}
}
