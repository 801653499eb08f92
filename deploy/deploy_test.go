// Package deploy_test checks the deployment files against the server: the
// Grafana dashboard's queries name metrics Evident exposes and are valid
// PromQL, and the alert rules pass promtool's checks and unit tests.
package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/fake"

	"evident.dev/evident/client"
	"evident.dev/evident/metrics"
	"evident.dev/evident/runners/gitops"
	"evident.dev/evident/runners/spool"
	"evident.dev/evident/verifier"
)

// exposed is the set of metric names the server exposes, histograms with
// their _bucket, _sum and _count series.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc, 1024)
	metrics.New(metrics.Config{}).Describe(ch)
	close(ch)
	// client_golang gives no accessor for a Desc's name; its String is
	// stable: Desc{fqName: "name", ...}.
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read a metric name from %s", d)
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			names[m[1]+suffix] = true
		}
	}
	// The watchers' own metrics (theirs and their spool's), as a watcher
	// registers them; client-go's fake dynamic client stands in for a
	// cluster, whose resources the watcher then follows.
	reg := prometheus.NewRegistry()
	sp, err := spool.Open(t.TempDir(), spool.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	priv, _, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := client.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	cluster := fake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gitops.ApplicationResource: "ApplicationList", gitops.AppProjectResource: "AppProjectList"})
	if _, err := gitops.New(t.Context(), gitops.Config{Client: cluster, Derivers: []gitops.Deriver{&gitops.ArgoCD{}},
		Signer: signer, Spool: sp, StateDir: t.TempDir(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	if !names["evident_log_entries"] || !names["evident_changes_applied_total"] || !names["evident_watch_spool_pending_records"] || !names["evident_watch_resources"] {
		t.Fatalf("the server's metric names were not read: %v", names)
	}
	return names
}

var metricName = regexp.MustCompile(`\b(evident|go|process)_[a-zA-Z0-9_]+`)

type panel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func dashboardPanels(t *testing.T) []panel {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "evident-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d.Panels
}

func TestDashboardQueriesUseExposedMetrics(t *testing.T) {
	names := exposed(t)
	rows, queries := 0, 0
	for _, p := range dashboardPanels(t) {
		if p.Type == "row" {
			rows++
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			used := metricName.FindAllString(q.Expr, -1)
			if len(used) == 0 {
				t.Errorf("panel %q: query %q names no Evident metric", p.Title, q.Expr)
			}
			for _, n := range used {
				if !names[n] {
					t.Errorf("panel %q: query uses %s, which the server does not expose", p.Title, n)
				}
			}
		}
	}
	// The dashboard's four groups plus the service's own health.
	if rows != 5 || queries < 30 {
		t.Errorf("dashboard has %d rows and %d queries, want 5 rows and at least 30 queries", rows, queries)
	}
}

func TestAlertRulesUseExposedMetrics(t *testing.T) {
	names := exposed(t)
	b, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range metricName.FindAllString(string(b), -1) {
		if !names[n] {
			t.Errorf("alerts.yml uses %s, which the server does not expose", n)
		}
	}
	for _, alert := range []string{"EvidentEvidenceCompletenessDrop", "EvidentProductionChangeWithoutApproval",
		"EvidentExpiredExceptionInUse", "EvidentDriftUnreconciled", "EvidentCheckpointNotAdvancing",
		"EvidentDown", "EvidentIngestRefusing", "EvidentWatcherSpoolBackingUp", "EvidentWatcherResourceNotFollowed"} {
		if !strings.Contains(string(b), "alert: "+alert+"\n") {
			t.Errorf("alerts.yml has no alert %s", alert)
		}
	}
}

// promtool finds promtool, failing when the test suite requires its tools.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("EVIDENT_REQUIRE_TOOLS") != "" {
			t.Fatal("promtool not found: run scripts/setup.sh (Debian package prometheus)")
		}
		t.Skip("promtool not found; scripts/setup.sh installs it")
	}
	return p
}

func runTool(t *testing.T, dir, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolRules(t *testing.T) {
	tool := promtool(t)
	out := runTool(t, "prometheus", tool, "check", "rules", "alerts.yml")
	if !strings.Contains(out, "SUCCESS: 10 rules found") {
		t.Errorf("promtool check rules:\n%s", out)
	}
	out = runTool(t, "prometheus", tool, "test", "rules", "alerts_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules:\n%s", out)
	}
}

// TestDashboardQueriesParse has promtool parse every panel's query, as
// recording rules, with the dashboard variable at its "All" value.
func TestDashboardQueriesParse(t *testing.T) {
	tool := promtool(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range dashboardPanels(t) {
		for _, q := range p.Targets {
			expr := strings.ReplaceAll(q.Expr, "$environment", ".*")
			js, _ := json.Marshal(expr) // a JSON string is a YAML string
			rules.WriteString("      - record: dashboard:panel" + string(rune('a'+n%26)) + "\n        expr: " + string(js) + "\n")
			n++
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yml"), []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, dir, tool, "check", "rules", "dashboard.yml")
	// And a broken query is caught.
	bad := "groups:\n  - name: bad\n    rules:\n      - record: dashboard:bad\n        expr: \"sum(rate(evident_log_entries[5m])\"\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.yml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(tool, "check", "rules", filepath.Join(dir, "bad.yml")).Run(); err == nil {
		t.Fatal("promtool accepted a query with an unbalanced parenthesis")
	}
}
