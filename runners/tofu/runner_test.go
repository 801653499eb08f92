package tofu_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"evident.dev/evident/artifacts"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/testenv"
	"evident.dev/evident/runners/tofu"
)

const (
	secret     = "hunter2-s3cr3t-Pa55w0rd-do-not-leak"
	passphrase = "a plan passphrase of some length"
	commit     = "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"
)

type fixture struct {
	t      *testing.T
	root   string
	stack  string
	server *ledgerServer
	store  *artifacts.Local
	gate   *fakeGate
	out    bytes.Buffer
	runner *tofu.Runner
	change tofu.Change
	env    map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("runs OpenTofu")
	}
	f := &fixture{t: t, root: t.TempDir(), server: newLedgerServer(t), gate: &fakeGate{}}
	f.stack = writeStack(t, f.root)
	var err error
	if f.store, err = artifacts.NewLocal(filepath.Join(f.root, "artifacts")); err != nil {
		t.Fatal(err)
	}
	f.env = testenv.TofuEnv(t)
	f.env["TF_VAR_db_password"] = secret
	cat := filepath.Join(f.root, "catalog.yaml")
	writeFile(t, cat, `
riskyResourceTypes: ["terraform_data"]
environments:
  prod: {riskClass: medium, requiresApprovalFrom: [platform-infra]}
stacks:
  prod/aws/account-payments-prod/eu-west-1/orders: {requiresApprovalFrom: [database-owners], dataClass: pii}
`)
	catalog, err := tofu.LoadCatalog(cat)
	if err != nil {
		t.Fatal(err)
	}
	f.change, err = tofu.DeriveChange(f.stack, catalog, map[string]string{
		"GITHUB_REPOSITORY": "acme/infra-live", "GITHUB_REF": "refs/pull/4812/merge",
		"GITHUB_SHA": commit, "GITHUB_ACTOR": "alice@example.com", "GITHUB_BASE_REF": "main",
	})
	if err != nil {
		t.Fatal(err)
	}
	f.runner = f.newRunner(catalog, passphrase)
	return f
}

func (f *fixture) newRunner(cat *tofu.Catalog, pass string) *tofu.Runner {
	r, err := tofu.New(tofu.Config{
		Engine: tofuBinary(f.t), Env: f.env, Store: f.store, Recorder: f.server.recorder(), Gate: f.gate,
		Catalog: cat, PlanPassphrase: pass, Out: &f.out,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *fixture) plan() *tofu.PlanResult {
	f.t.Helper()
	res, err := f.runner.Plan(context.Background(), f.stack, f.change, "")
	if err != nil {
		f.t.Fatalf("plan: %v", err)
	}
	return res
}

func (f *fixture) apply(res *tofu.PlanResult) (*tofu.ApplyResult, error) {
	f.t.Helper()
	f.gate.set("allow")
	return f.runner.Apply(context.Background(), f.stack, f.change, res.Ref)
}

// last returns the last n records.
func (f *fixture) last(n int) []evidence.Statement {
	f.t.Helper()
	sts, _ := f.server.statements()
	if len(sts) < n {
		f.t.Fatalf("want at least %d records, have %d", n, len(sts))
	}
	return sts[len(sts)-n:]
}

func (f *fixture) count() int {
	sts, _ := f.server.statements()
	return len(sts)
}

func wantKinds(t *testing.T, sts []evidence.Statement, want ...evidence.Kind) {
	t.Helper()
	if got := kinds(sts); !slices.Equal(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
}

func TestDeriveChange(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "infra-live", "stacks", "prod", "aws", "acct", "ap-southeast-1", "rds-orders")
	ch, err := tofu.DeriveChange(dir, nil, map[string]string{
		"GITHUB_REPOSITORY": "acme/infra-live", "GITHUB_SHA": "ABCDEF1234567890", "GITHUB_ACTOR": "bob",
		"EVIDENT_PULL_REQUEST": "12",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := evidence.Target{Environment: "prod", Cloud: "aws", Account: "acct", Region: "ap-southeast-1", Stack: "prod/aws/acct/ap-southeast-1/rds-orders"}
	if ch.Target != want || ch.StackPath != "prod/aws/acct/ap-southeast-1/rds-orders" ||
		ch.Source.CommitSHA != "abcdef1234567890" || ch.Source.PullRequest != 12 ||
		ch.ID != "infra-live#12/prod/aws/acct/ap-southeast-1/rds-orders" || ch.Actor != "bob" {
		t.Fatalf("derived %+v", ch)
	}
	if _, err := tofu.DeriveChange(filepath.Join(root, "stacks", "prod", "aws"), nil, nil); err == nil {
		t.Fatal("a path without all five stack components was accepted")
	}
	_, err = tofu.DeriveChange(dir, nil, map[string]string{"GITHUB_REPOSITORY": "acme/infra-live"})
	if err == nil || !strings.Contains(err.Error(), "commit SHA") {
		t.Fatalf("missing commit: %v", err)
	}
	_, err = tofu.DeriveChange(dir, nil, map[string]string{"EVIDENT_PULL_REQUEST": "-3", "GITHUB_REPOSITORY": "a/b", "GITHUB_SHA": "abcdef12", "GITHUB_ACTOR": "x"})
	if err == nil {
		t.Fatal("a negative pull request number was accepted")
	}
}

// TestLifecycle drives one stack through create, a gate-refused apply,
// update, replace, delete, drift made by editing the state and its
// reconciliation, a partial (failing) apply, and a held state lock, with
// the real OpenTofu, a real log and a local artifact store; then checks that
// the secret variable and output never left the engine.
func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	// A plan holding a sensitive value is refused without plan encryption,
	// before anything is uploaded or recorded.
	_, err := f.newRunner(nil, "").Plan(ctx, f.stack, f.change, "")
	if !errors.Is(err, tofu.ErrPlanHoldsSecrets) {
		t.Fatalf("plan without a passphrase = %v, want ErrPlanHoldsSecrets", err)
	}
	if blobs := storedBlobs(t, f.store.Dir); len(blobs) != 0 {
		t.Fatalf("a refused plan uploaded %d artifacts", len(blobs))
	}

	// Create.
	p := f.plan()
	s := p.Summary
	if s.Actions != (evidence.ActionCounts{Create: 3}) || s.Destructive || len(s.Replacement) != 0 {
		t.Fatalf("create plan summary %+v", s)
	}
	if !slices.Contains(s.SensitiveChanges, "terraform_data.db.input.password") || !slices.Contains(s.SensitiveChanges, "output.db_password") {
		t.Fatalf("sensitive changes %v: want terraform_data.db.input.password and output.db_password", s.SensitiveChanges)
	}
	if len(s.HighRiskResources) != 3 || !s.RequiresManualApproval {
		t.Fatalf("risky terraform_data: high-risk %v, manual approval %v", s.HighRiskResources, s.RequiresManualApproval)
	}
	recs := f.last(2)
	wantKinds(t, recs, evidence.KindChangeOpened, evidence.KindPlanCreated)
	if c := recs[0].Predicate.Change; !slices.Equal(c.RequiresApprovalFrom, []string{"platform-infra", "database-owners"}) || c.MutationType != "create" || c.Author != "alice@example.com" {
		t.Fatalf("change contract %+v", c)
	}
	pc := recs[1].Predicate
	if pc.Plan.PlanSHA256 != p.Ref.PlanSHA256 || pc.Target.DataClass != "pii" || pc.RiskClass != "high" || pc.Source.PullRequest != 4812 || len(pc.Artifacts) != 2 {
		t.Fatalf("plan.created %+v", pc)
	}
	planFile, err := f.store.Get(ctx, p.Ref.PlanArtifact, 0)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(planFile, []byte("PK")) {
		t.Fatal("the stored plan file is a plain zip: it should be encrypted, as it holds a sensitive value")
	}
	var ref tofu.PlanRef
	if ref, err = tofu.ReadPlanRef(filepath.Join(f.stack, ".evident", "plan.json")); err != nil || ref != p.Ref {
		t.Fatalf("plan reference file = %+v, %v; want %+v", ref, err, p.Ref)
	}

	// The gate refuses: nothing is applied or recorded as started.
	f.gate.set("deny", "no approval by database-owners for this plan")
	_, err = f.runner.Apply(ctx, f.stack, f.change, p.Ref)
	var denied *tofu.DeniedError
	if !errors.As(err, &denied) || !errors.Is(err, tofu.ErrGateDenied) || !strings.Contains(err.Error(), "database-owners") {
		t.Fatalf("apply with a denying gate = %v", err)
	}
	if got := f.gate.asked[len(f.gate.asked)-1]; got.PlanSHA256 != p.Ref.PlanSHA256 || got.CommitSHA != commit || got.ChangeID != f.change.ID || got.Target.Stack != "prod/aws/account-payments-prod/eu-west-1/orders" {
		t.Fatalf("gate asked %+v", got)
	}
	if _, err := os.Stat(filepath.Join(f.stack, "terraform.tfstate")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a denied apply touched the state: %v", err)
	}
	wantKinds(t, f.last(1), evidence.KindPlanCreated)

	// The gate allows: apply exactly that plan, verify.
	res, err := f.apply(p)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, f.out.String())
	}
	slices.Sort(res.Changed)
	if !slices.Equal(res.Changed, []string{"terraform_data.config", "terraform_data.db", "terraform_data.extra[0]"}) || res.Verification.Result != "pass" {
		t.Fatalf("apply result %+v", res)
	}
	recs = f.last(3)
	wantKinds(t, recs, evidence.KindApplyStarted, evidence.KindApplyCompleted, evidence.KindVerificationCompleted)
	done := recs[1].Predicate
	if done.Apply.PlanSHA256 != p.Ref.PlanSHA256 || len(done.Apply.ResourcesChanged) != 3 || done.Artifacts[0].Name != "apply-log" ||
		"sha256:"+done.Apply.LogSHA256 != done.Artifacts[0].Digest {
		t.Fatalf("apply.completed %+v", done.Apply)
	}
	if log, err := f.store.Get(ctx, done.Artifacts[0].Digest, 0); err != nil || !bytes.Contains(log, []byte("apply_complete")) {
		t.Fatalf("stored apply log: %v\n%s", err, log)
	}

	// A plan fetched from the store that does not match is refused.
	tampered := p.Ref
	tampered.PlanArtifact = p.Ref.RedactedPlanArtifact
	if _, err := f.runner.Apply(ctx, f.stack, f.change, tampered); !errors.Is(err, tofu.ErrPlanMismatch) {
		t.Fatalf("apply of a plan artifact that is not the planned file = %v, want ErrPlanMismatch", err)
	}

	// Update.
	setVars(t, f.stack, map[string]string{"size": `"large"`})
	p = f.plan()
	if p.Summary.Actions != (evidence.ActionCounts{Update: 2}) || p.Summary.Destructive {
		t.Fatalf("update plan %+v", p.Summary.Actions)
	}
	if _, err := f.apply(p); err != nil {
		t.Fatal(err)
	}

	// Replace (triggers_replace).
	setVars(t, f.stack, map[string]string{"size": `"large"`, "generation": `"2"`})
	p = f.plan()
	if p.Summary.Actions != (evidence.ActionCounts{Replace: 1}) || !p.Summary.Destructive ||
		!slices.Equal(p.Summary.Replacement, []string{"terraform_data.db"}) {
		t.Fatalf("replace plan %+v", p.Summary)
	}
	if _, err := f.apply(p); err != nil {
		t.Fatal(err)
	}

	// Delete.
	setVars(t, f.stack, map[string]string{"size": `"large"`, "generation": `"2"`, "extra_count": "0"})
	p = f.plan()
	if p.Summary.Actions != (evidence.ActionCounts{Delete: 1}) || !p.Summary.Destructive {
		t.Fatalf("delete plan %+v", p.Summary)
	}
	if res, err := f.apply(p); err != nil || !slices.Equal(res.Changed, []string{"terraform_data.extra[0]"}) {
		t.Fatalf("delete apply = %+v, %v", res, err)
	}

	// Drift made out of band: edit the state's recorded input.
	if res, err := f.runner.Drift(ctx, f.stack, f.change, ""); err != nil || len(res.Drifted) != 0 {
		t.Fatalf("drift on a clean stack = %+v, %v", res, err)
	}
	statePath := filepath.Join(f.stack, "terraform.tfstate")
	clean, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	editState(t, statePath, "terraform_data.config", "edited-by-hand")
	before := f.count()
	res2, err := f.runner.Drift(ctx, f.stack, f.change, "")
	if err != nil || !slices.Equal(res2.Drifted, []string{"terraform_data.config"}) {
		t.Fatalf("drift after editing the state = %+v, %v", res2, err)
	}
	recs = f.last(1)
	wantKinds(t, recs, evidence.KindDriftDetected)
	if !slices.Equal(recs[0].Predicate.Drift.Resources, []string{"terraform_data.config"}) {
		t.Fatalf("drift.detected %+v", recs[0].Predicate.Drift)
	}
	if _, err := f.runner.Drift(ctx, f.stack, f.change, ""); err != nil {
		t.Fatal(err)
	}
	if n := f.count(); n != before+1 {
		t.Fatalf("the same drift was recorded again (%d records, want %d)", n, before+1)
	}
	// Put the state back (the revert) and the next check reconciles.
	writeFile(t, statePath, string(clean))
	res2, err = f.runner.Drift(ctx, f.stack, f.change, "revert")
	if err != nil || !slices.Equal(res2.Reconciled, []string{"terraform_data.config"}) {
		t.Fatalf("drift after the revert = %+v, %v", res2, err)
	}
	recs = f.last(1)
	wantKinds(t, recs, evidence.KindDriftReconciled)
	if d := recs[0].Predicate.Drift; d.Method != "revert" || !slices.Equal(d.Resources, []string{"terraform_data.config"}) {
		t.Fatalf("drift.reconciled %+v", d)
	}

	// A partial apply: the config update lands, the migration's
	// provisioner fails.
	setVars(t, f.stack, map[string]string{"size": `"xl"`, "generation": `"2"`, "extra_count": "0", "fail": "true"})
	p = f.plan()
	res, err = f.apply(p)
	if !errors.Is(err, tofu.ErrApplyFailed) {
		t.Fatalf("failing apply = %v", err)
	}
	if !slices.Contains(res.Changed, "terraform_data.config") || !slices.Equal(res.Failed, []string{"terraform_data.migration[0]"}) {
		t.Fatalf("partial apply result %+v", res)
	}
	recs = f.last(3)
	wantKinds(t, recs, evidence.KindApplyStarted, evidence.KindApplyFailed, evidence.KindVerificationCompleted)
	fa := recs[1].Predicate.Apply
	if !slices.Contains(fa.ResourcesChanged, "terraform_data.config") || !slices.Equal(fa.ResourcesFailed, []string{"terraform_data.migration[0]"}) || fa.Error == "" {
		t.Fatalf("apply.failed %+v", fa)
	}
	if v := recs[2].Predicate.Verification; v.Result != "drift" || v.ExitCode != 2 || !slices.Contains(v.Checks, "differs: terraform_data.migration[0]") {
		t.Fatalf("verification after a partial apply %+v", v)
	}

	// A state lock held by another process is reported, never forced.
	setVars(t, f.stack, map[string]string{"size": `"xl"`, "generation": `"2"`, "extra_count": "0"})
	p = f.plan()
	unlock := holdStateLock(t, statePath, "lock-4242", "bob@ci-runner-7")
	_, err = f.apply(p)
	var locked *tofu.LockedError
	if !errors.As(err, &locked) || locked.ID != "lock-4242" || locked.Who != "bob@ci-runner-7" {
		t.Fatalf("apply against a held lock = %v", err)
	}
	recs = f.last(2)
	wantKinds(t, recs, evidence.KindApplyStarted, evidence.KindApplyFailed)
	if !strings.Contains(recs[1].Predicate.Apply.Error, "lock-4242") {
		t.Fatalf("apply.failed for a held lock says %q", recs[1].Predicate.Apply.Error)
	}
	if err := f.runner.ForceUnlock(ctx, f.stack, f.change, "lock-4242", "", "bob"); err == nil {
		t.Fatal("force-unlock without an incident reference was accepted")
	}
	unlock()

	checkNoSecret(t, f)
}

// checkNoSecret looks for the secret everywhere the runner writes: the
// artifact store, the log, its output. That the engine sees it is checked
// first, so that the search means something.
func checkNoSecret(t *testing.T, f *fixture) {
	t.Helper()
	cmd := exec.Command(tofuBinary(t), "output", "-raw", "db_password")
	cmd.Dir = f.stack
	for k, v := range f.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.Output(); err != nil || string(out) != secret {
		t.Fatalf("the engine does not hold the secret output (%q, %v): the secret search would prove nothing", out, err)
	}
	show := exec.Command(tofuBinary(t), "show", "-json", filepath.Join(f.stack, ".evident", "plan.tfplan"))
	show.Dir = f.stack
	show.Env = append(os.Environ(), "TF_ENCRYPTION="+encryptionForTest(), "TF_CLI_CONFIG_FILE="+f.env["TF_CLI_CONFIG_FILE"])
	if out, err := show.Output(); err != nil || !bytes.Contains(out, []byte(secret)) {
		t.Fatalf("the engine's own plan JSON does not hold the secret (%v): redaction is untested", err)
	}
	for _, p := range storedBlobs(t, f.store.Dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(secret)); i >= 0 {
			t.Errorf("artifact %s holds the secret: …%s…", p, b[max(0, i-200):min(len(b), i+50)])
		}
	}
	_, leaves := f.server.statements()
	for _, l := range leaves {
		if bytes.Contains(l, []byte(secret)) {
			t.Errorf("a log entry holds the secret")
		}
	}
	if strings.Contains(f.out.String(), secret) {
		t.Errorf("the runner printed the secret")
	}
	if !strings.Contains(f.out.String(), "sensitive changes (values withheld): terraform_data.db.input.password") {
		t.Errorf("the runner's summary does not name the sensitive change:\n%s", f.out.String())
	}
}

func encryptionForTest() string {
	return `key_provider "pbkdf2" "evident" { passphrase = "` + passphrase + `" }
method "aes_gcm" "evident" { keys = key_provider.pbkdf2.evident }
plan { method = method.aes_gcm.evident }`
}

func storedBlobs(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// editState changes a resource's recorded input behind the engine's back.
func editState(t *testing.T, path, addr, input string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	typ, name, _ := strings.Cut(addr, ".")
	found := false
	for _, r := range st["resources"].([]any) {
		res := r.(map[string]any)
		if res["type"] != typ || res["name"] != name {
			continue
		}
		attrs := res["instances"].([]any)[0].(map[string]any)["attributes"].(map[string]any)
		// terraform_data's input is dynamically typed: the state keeps
		// its value with its type.
		for _, a := range []string{"input", "output"} {
			attrs[a].(map[string]any)["value"] = input
		}
		found = true
	}
	if !found {
		t.Fatalf("no %s in the state", addr)
	}
	st["serial"] = st["serial"].(float64) + 1
	out, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(out))
}

// holdStateLock takes the local backend's lock as another OpenTofu process
// would: a POSIX write lock on the state file and its lock info file.
// (POSIX locks are per process, so the engine, a child process, sees it.)
func holdStateLock(t *testing.T, statePath, id, who string) func() {
	t.Helper()
	f, err := os.OpenFile(statePath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(filepath.Dir(statePath), ".terraform.tfstate.lock.info")
	writeFile(t, info, `{"ID":"`+id+`","Operation":"OperationTypeApply","Info":"","Who":"`+who+`","Version":"1.12.6","Created":"2026-11-26T00:00:00Z","Path":"terraform.tfstate"}`)
	return func() {
		lk.Type = syscall.F_UNLCK
		syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
		f.Close()
		os.Remove(info)
	}
}

// TestForceUnlock takes a stack on OpenTofu's S3 backend (state and its
// lock file in a real MinIO bucket), leaves a lock there as a crashed run
// would, and checks that apply reports it without forcing it, that
// force-unlock refuses without an incident, and that with one it removes
// the lock and records lock.forced, after which the apply goes through.
func TestForceUnlock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := testenv.StartMinIO(t)
	mc, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.MakeBucket(ctx, "tfstate", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.stack, "main.tf"), strings.Replace(stackConfig, `backend "local" {}`, `backend "s3" {
    bucket                      = "tfstate"
    key                         = "orders/terraform.tfstate"
    region                      = "us-east-1"
    use_lockfile                = true
    use_path_style              = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_s3_checksum            = true
    endpoints = { s3 = "http://`+m.Endpoint+`" }
  }`, 1))
	f.env["AWS_ACCESS_KEY_ID"] = m.AccessKey
	f.env["AWS_SECRET_ACCESS_KEY"] = m.SecretKey
	f.runner = f.newRunner(nil, passphrase)

	p := f.plan()
	lockInfo := `{"ID":"5f7c0a52-1111-2222-3333-444455556666","Operation":"OperationTypeApply","Info":"","Who":"bob@ci-runner-7","Version":"1.12.6","Created":"2026-11-26T00:00:00Z","Path":"tfstate/orders/terraform.tfstate"}`
	if _, err := mc.PutObject(ctx, "tfstate", "orders/terraform.tfstate.tflock", strings.NewReader(lockInfo), int64(len(lockInfo)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = f.apply(p)
	var locked *tofu.LockedError
	if !errors.As(err, &locked) || locked.ID != "5f7c0a52-1111-2222-3333-444455556666" || locked.Who != "bob@ci-runner-7" {
		t.Fatalf("apply against a held lock = %v\n%s", err, f.out.String())
	}
	if _, err := mc.StatObject(ctx, "tfstate", "orders/terraform.tfstate.tflock", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the runner removed the lock on its own: %v", err)
	}
	if err := f.runner.ForceUnlock(ctx, f.stack, f.change, locked.ID, " ", locked.Who); err == nil {
		t.Fatal("force-unlock without an incident reference was accepted")
	}
	before := f.count()
	if err := f.runner.ForceUnlock(ctx, f.stack, f.change, "not-the-lock", "INC-7", locked.Who); err == nil {
		t.Fatal("force-unlock of another lock ID succeeded")
	}
	if f.count() != before {
		t.Fatal("a failed force-unlock was recorded")
	}
	if err := f.runner.ForceUnlock(ctx, f.stack, f.change, locked.ID, "INC-7", locked.Who); err != nil {
		t.Fatalf("force-unlock: %v", err)
	}
	recs := f.last(1)
	wantKinds(t, recs, evidence.KindLockForced)
	if l := recs[0].Predicate.Lock; *l != (evidence.Lock{Incident: "INC-7", LockID: locked.ID, HeldBy: "bob@ci-runner-7"}) {
		t.Fatalf("lock.forced %+v", l)
	}
	if _, err := mc.StatObject(ctx, "tfstate", "orders/terraform.tfstate.tflock", minio.StatObjectOptions{}); err == nil {
		t.Fatal("the lock is still there after force-unlock")
	}
	if res, err := f.apply(p); err != nil || res.Verification.Result != "pass" {
		t.Fatalf("apply after the unlock = %+v, %v", res, err)
	}
}

// The drift schedule keeps going when a check fails, reports each failure,
// and stops when its context ends.
func TestWatch(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.stack, "main.tf"), "this is not HCL {")
	ctx, cancel := context.WithCancel(context.Background())
	var reports []error
	done := make(chan error, 1)
	go func() {
		done <- f.runner.Watch(ctx, f.stack, f.change, 10*time.Millisecond, func(err error) {
			reports = append(reports, err)
			if len(reports) == 2 {
				cancel()
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("the schedule did not stop")
	}
	if len(reports) != 2 || !strings.Contains(reports[0].Error(), "init") {
		t.Fatalf("reports %v", reports)
	}
	if f.count() != 0 {
		t.Fatal("a failed check recorded something")
	}
	if err := f.runner.Watch(context.Background(), f.stack, f.change, 0, nil); err == nil {
		t.Fatal("a schedule without an interval was accepted")
	}
}

func TestDeriveChangeLongPath(t *testing.T) {
	long := strings.Repeat("very-long-account-name-", 6)
	dir := filepath.Join(t.TempDir(), "stacks", "prod", "aws", long, "eu-west-1", "orders")
	ch, err := tofu.DeriveChange(dir, nil, map[string]string{
		"GITHUB_REPOSITORY": "acme/infra-live", "GITHUB_SHA": commit, "GITHUB_ACTOR": "bob", "EVIDENT_PULL_REQUEST": "7",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.ID) > 128 || !strings.HasPrefix(ch.ID, "infra-live#7/") {
		t.Fatalf("change ID %q", ch.ID)
	}
	_, err = tofu.DeriveChange(dir, nil, map[string]string{"EVIDENT_CHANGE_ID": strings.Repeat("x", 129),
		"GITHUB_REPOSITORY": "acme/infra-live", "GITHUB_SHA": commit, "GITHUB_ACTOR": "bob"})
	if err == nil {
		t.Fatal("a change ID longer than a record allows was accepted")
	}
}

// A cancelled apply (the CI job was stopped) still records its outcome.
func TestApplyCancelled(t *testing.T) {
	f := newFixture(t)
	// The provisioner leaves a mark before it sleeps: the apply is under way.
	running := filepath.Join(t.TempDir(), "running")
	writeFile(t, filepath.Join(f.stack, "main.tf"), `
terraform {
  backend "local" {}
}
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "touch '`+running+`' && sleep 60"
  }
}
`)
	p := f.plan()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once tofu is in the middle of the apply.
		for {
			if _, err := os.Stat(running); err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	f.gate.set("allow")
	start := time.Now()
	_, err := f.runner.Apply(ctx, f.stack, f.change, p.Ref)
	if err == nil || time.Since(start) > 45*time.Second {
		t.Fatalf("cancelled apply = %v after %v", err, time.Since(start))
	}
	recs := f.last(2)
	wantKinds(t, recs, evidence.KindApplyStarted, evidence.KindApplyFailed)
	if recs[1].Predicate.Apply.Error == "" {
		t.Fatal("apply.failed without an error")
	}
}
