package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
)

// docBlock is one fenced sh block of a walk-through.
type docBlock struct {
	title, body string
}

// shBlocks returns the ```sh blocks of a Markdown file, in order.
func shBlocks(t *testing.T, path string) []docBlock { return fencedBlocks(t, path, "sh") }

// fencedBlocks returns the fenced blocks of a Markdown file in language
// lang, in order.
func fencedBlocks(t *testing.T, path, lang string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docBlock
	var cur *docBlock
	title := regexp.MustCompile(`title="([^"]*)"`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && (line == "```"+lang || strings.HasPrefix(line, "```"+lang+" ")):
			cur = &docBlock{}
			if m := title.FindStringSubmatch(line); m != nil {
				cur.title = m[1]
			}
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestApprovalsWalkthrough runs docs/approvals.md: every sh block in order,
// with bash and the real binary, against a real server. The block titled
// "serve" is the one step the test does itself, on a port from :0.
func TestApprovalsWalkthrough(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the walk-through with")
	}
	blocks := shBlocks(t, filepath.Join("..", "docs", "approvals.md"))
	work := t.TempDir()
	env := append(os.Environ(), "PATH="+filepath.Dir(evidentBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	run := func(script string) string {
		t.Helper()
		cmd := exec.Command(bash, "-euo", "pipefail", "-c", script)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the walk-through failed: %v\n--- script:\n%s\n--- output:\n%s", err, script, out)
		}
		return string(out)
	}
	var before, after strings.Builder
	var srv *testServer
	for _, b := range blocks {
		switch {
		case b.title == "serve":
			mustContain(t, "the serve step", b.body, "evident serve --config evident.yaml --data data", "EVIDENT=")
			run(before.String())
			srv = startServe(t, work, "--config", "evident.yaml", "--data", "data", "--listen", "127.0.0.1:0")
			env = append(env, "EVIDENT="+srv.URL)
		case srv == nil:
			before.WriteString(b.body)
		default:
			after.WriteString(b.body)
		}
	}
	if srv == nil {
		t.Fatal("docs/approvals.md has no sh block titled \"serve\"")
	}
	out := run(after.String())

	// Four gate answers, in this order.
	var answers []string
	for _, line := range strings.Split(out, "\n") {
		if d, _, ok := strings.Cut(line, ": change CHG-1001"); ok && (d == "DENY" || d == "ALLOW") {
			answers = append(answers, d)
		}
	}
	if strings.Join(answers, ",") != "DENY,DENY,ALLOW,DENY" {
		t.Errorf("gate answers %v, want DENY,DENY,ALLOW,DENY\n%s", answers, out)
	}
	mustContain(t, "the walk-through's output", out,
		"approval.missing: no approval of change CHG-1001",
		"approval.self-approved: alice@example.com approved their own change",
		"approval by carol@example.com (database-owners, platform-infra)",
		"plan.missing: no plan.created record",
		// The bundled policies judged the plan: its decision names the
		// group, and the approvals bind the decision's digest.
		"requires approval from platform-infra.",
		"required approvers: platform-infra\n",
		// The sample output the page shows.
		"DENY: change CHG-1001, plan 1892634ae11ecdf378f85c86a9bc98e81f6003c34d0e999d9046d62c09f654cd, recorded as entry 3",
		"ALLOW: change CHG-1001, plan 1892634ae11ecdf378f85c86a9bc98e81f6003c34d0e999d9046d62c09f654cd, recorded as entry 7",
		"entry 6, bound to commit 8fb2d7e2705c and plan 1892634ae11e, fresh until",
		"gate refused (exit 1)")
	decision := regexp.MustCompile(`policy decision: ([0-9a-f]{64})\n`).FindStringSubmatch(out)
	if decision == nil {
		t.Fatalf("the plan's receipt has no policyDecisionSha256:\n%s", out)
	}
	mustContain(t, "the walk-through's output", out,
		"required groups platform-infra covered (from policy:"+decision[1]+", membership 65a8cbf18f87)")

	// The last entry is the apply, bound to Carol's approval: no finding.
	// The gate's answers are log-signed gate.decided entries.
	ctx := context.Background()
	c := client.New(srv.URL)
	last := srv.size() - 1
	e, err := c.Entry(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	st := statementOf(t, e.Envelope)
	if kind := st["predicate"].(map[string]any)["kind"]; kind != string(evidence.KindApplyCompleted) || len(e.Findings) != 0 {
		t.Errorf("last entry: %v with findings %+v, want an apply.completed without findings", kind, e.Findings)
	}
	gates := 0
	for i := uint64(1); i < last; i++ {
		e, err := c.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if statementOf(t, e.Envelope)["predicate"].(map[string]any)["kind"] == string(evidence.KindGateDecided) {
			if e.Signer.Name != "log" {
				t.Errorf("gate.decided entry %d signed by %+v", i, e.Signer)
			}
			gates++
		}
	}
	if gates != 4 {
		t.Errorf("%d gate.decided entries, want 4", gates)
	}

	// Stopped, the log re-verifies offline, the log's own records included.
	srv.stop()
	r := evident(t, work, "verify", "--data", "data", "--log-key", srv.LogKey)
	mustContain(t, "verify", r.stdout, "OK: 10 entries", "10 signatures re-verified")
}
