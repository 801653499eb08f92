package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/servertest"
	"evident.dev/evident/metrics"
	"evident.dev/evident/policies"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// postScenario posts one of each panel's inputs and one refused record.
func postScenario(t *testing.T, f *servertest.Server) {
	t.Helper()
	set := func(change, env, when string) func(*evidence.Transition) {
		return func(p *evidence.Transition) {
			p.ChangeID = change
			if env != "" {
				p.Target.Environment = env
			}
			if when != "" {
				p.OccurredAt = at(when)
			}
		}
	}
	posts := []struct {
		kind string
		edit func(*evidence.Transition)
		want int
	}{
		{"plan.created", set("CHG-A", "prod", ""), 201},
		{"policy.evaluated", set("CHG-A", "prod", ""), 201},
		{"apply.completed", set("CHG-A", "prod", ""), 201}, // no approval: approval.missing
		{"plan.created", set("CHG-B", "staging", "2026-07-03T08:00:00Z"), 201},
		{"approval.granted", set("CHG-B", "staging", "2026-07-03T08:30:00Z"), 201},
		{"sync.failed", set("CHG-C", "prod", ""), 201},
		{"health.degraded", set("CHG-C", "prod", ""), 201},
		{"drift.detected", set("CHG-D", "prod", ""), 201},
		{"exception.granted", set("CHG-E", "prod", ""), 201},
		{"breakglass.opened", set("CHG-F", "prod", ""), 201},
		{"artifact.admitted", set("CHG-C", "prod", ""), 201},
		{"apply.failed", set("CHG-G", "dev", "2026-07-03T10:00:00Z"), 201},
		{"apply.completed", set("CHG-G", "dev", "2026-07-03T11:00:00Z"), 201}, // recovery after an hour
	}
	for _, p := range posts {
		if got := f.Post(f.CI, servertest.Example(t, p.kind, p.edit)); got != p.want {
			t.Fatalf("post %s: status %d, want %d", p.kind, got, p.want)
		}
	}
	if got := f.Post(f.Stray, servertest.Example(t, "plan.created", nil)); got != 403 {
		t.Fatalf("untrusted post: status %d, want 403", got)
	}
	// The same record again (ed25519 signatures are deterministic): a duplicate.
	if got := f.Post(f.CI, servertest.Example(t, posts[0].kind, posts[0].edit)); got != 200 {
		t.Fatalf("duplicate post: status %d, want 200", got)
	}
	f.WaitProjected()
}

func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

// value is the sample of family name whose labels include want; histograms
// give their sample count. It fails the test when there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	// The sum over the series carrying want's labels (series are created
	// at zero for every known label value).
	sum, found := 0.0, false
next:
	for _, m := range fam.Metric {
		for k, v := range want {
			has := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					has = true
				}
			}
			if !has {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	if !found {
		t.Fatalf("no sample of %s with %v", name, want)
	}
	return sum
}

func TestMetricsFromTheLedger(t *testing.T) {
	f := servertest.Start(t, t.TempDir())
	postScenario(t, f)
	fams := parse(t, f.Scrape())

	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"evident_plans_total", map[string]string{"environment": "prod", "class": "high"}, 1},
		{"evident_changes_applied_total", map[string]string{"environment": "prod"}, 1},
		{"evident_changes_incomplete_total", map[string]string{"environment": "prod"}, 1},
		{"evident_findings_total", map[string]string{"environment": "prod", "code": "approval.missing"}, 1},
		{"evident_policy_denials_total", map[string]string{"environment": "prod", "rule": "iac.prod.database.replacement.requires-db-owner"}, 1},
		{"evident_approval_wait_seconds", map[string]string{"environment": "staging"}, 1},
		{"evident_gitops_syncs_total", map[string]string{"environment": "prod", "result": "failed"}, 1},
		{"evident_gitops_applications", map[string]string{"environment": "prod", "state": "out_of_sync"}, 1},
		{"evident_gitops_applications", map[string]string{"environment": "prod", "state": "degraded"}, 1},
		{"evident_drift_unreconciled", map[string]string{"environment": "prod"}, 1},
		{"evident_breakglass_events_total", map[string]string{"environment": "prod", "event": "opened"}, 1},
		{"evident_artifact_admissions_total", map[string]string{"environment": "prod"}, 1},
		{"evident_applies_total", map[string]string{"environment": "dev", "result": "failed"}, 1},
		{"evident_rollforwards_total", map[string]string{"environment": "dev"}, 1},
		{"evident_recovery_seconds", map[string]string{"environment": "dev"}, 1},
		{"evident_ingest_requests_total", map[string]string{"result": "accepted"}, 13},
		{"evident_ingest_requests_total", map[string]string{"result": "untrusted_signer"}, 1},
		{"evident_ingest_requests_total", map[string]string{"result": "duplicate"}, 1},
		{"evident_ingest_request_duration_seconds", map[string]string{"outcome": "refused"}, 1},
		{"evident_log_entries", nil, float64(f.Log.Size())},
	}
	for _, c := range checks {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(t, fams, "evident_policy_exceptions_active", map[string]string{"environment": "prod"}); got != 1 {
		t.Errorf("active exceptions = %v, want 1", got)
	}
	// An hour from failure to recovery lands in the 3600 s bucket, not below.
	for _, m := range fams["evident_recovery_seconds"].Metric {
		if m.Histogram.GetSampleCount() == 0 {
			continue // an environment's series, created at zero
		}
		for _, b := range m.Histogram.Bucket {
			if b.GetUpperBound() == 1800 && b.GetCumulativeCount() != 0 || b.GetUpperBound() == 3600 && b.GetCumulativeCount() != 1 {
				t.Errorf("recovery bucket le=%v holds %d", b.GetUpperBound(), b.GetCumulativeCount())
			}
		}
	}
	if value(t, fams, "evident_ledger_commit_duration_seconds", nil) == 0 {
		t.Error("no commit was observed")
	}
	// No change id or actor ever becomes a label value.
	for name, fam := range fams {
		for _, m := range fam.Metric {
			for _, l := range m.Label {
				if strings.HasPrefix(l.GetValue(), "CHG-") || strings.Contains(l.GetValue(), "@") || strings.HasPrefix(l.GetValue(), "repo:") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// TestMetricsSurviveRestart: a restarted server (or a replica reading the
// same log) derives the same ledger values.
func TestMetricsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	f := servertest.Start(t, dir)
	postScenario(t, f)
	before := ledgerFamilies(t, parse(t, f.Scrape()))
	f.Stop()
	g := servertest.Start(t, dir)
	g.WaitProjected()
	after := ledgerFamilies(t, parse(t, g.Scrape()))
	if len(before) < 20 {
		t.Fatalf("only %d ledger-derived families", len(before))
	}
	for name, text := range before {
		if after[name] != text {
			t.Errorf("%s differs after restart:\nbefore %s\nafter  %s", name, text, after[name])
		}
	}
}

// ledgerFamilies renders the families computed from the ledger, leaving out
// the process's own (ingest, commit latency, checkpoint age, runtime).
func ledgerFamilies(t *testing.T, fams map[string]*dto.MetricFamily) map[string]string {
	out := map[string]string{}
	for name, fam := range fams {
		if !strings.HasPrefix(name, "evident_") || strings.HasPrefix(name, "evident_ingest_") ||
			strings.HasPrefix(name, "evident_ledger_commit_") || name == "evident_checkpoint_age_seconds" || name == "evident_checkpoint_size" ||
			name == "evident_drift_unreconciled_oldest_seconds" || name == "evident_policy_exceptions_active" {
			continue
		}
		var b bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&b, fam); err != nil {
			t.Fatal(err)
		}
		out[name] = b.String()
	}
	return out
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

func TestPromtoolCheckMetrics(t *testing.T) {
	tool := promtool(t)
	f := servertest.Start(t, t.TempDir())
	postScenario(t, f)
	body := f.Scrape()
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	// And promtool does find problems: a counter without _total.
	bad := exec.Command(tool, "check", "metrics")
	bad.Stdin = strings.NewReader("# HELP evident_bad a counter\n# TYPE evident_bad counter\nevident_bad 1\n")
	if out, err := bad.CombinedOutput(); err == nil && len(bytes.TrimSpace(out)) == 0 {
		t.Fatal("promtool accepted a counter without _total")
	}
}

// TestLabelsBounded: past 32 environments, further ones are counted as
// "other", so a misbehaving runner cannot blow up the series count.
func TestLabelsBounded(t *testing.T) {
	f := servertest.Start(t, t.TempDir())
	for i := range 40 {
		p := servertest.Example(t, "plan.created", func(p *evidence.Transition) {
			p.ChangeID = fmt.Sprintf("CHG-%d", i)
			p.Target.Environment = fmt.Sprintf("env-%02d", i)
		})
		if got := f.Post(f.CI, p); got != 201 {
			t.Fatalf("post %d: %d", i, got)
		}
	}
	f.WaitProjected()
	fams := parse(t, f.Scrape())
	envs := map[string]float64{}
	for _, m := range fams["evident_plans_total"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "environment" {
				envs[l.GetValue()] += m.Counter.GetValue()
			}
		}
	}
	if len(envs) != 33 || envs["other"] != 8 || envs["env-31"] != 1 || envs["env-32"] != 0 {
		t.Errorf("environments %v: want env-00..env-31 and other=8", envs)
	}
}

// TestCompletenessFromContracts: with the policies' completeness tracker
// (the real one, default contracts) the exposition carries its rates.
func TestCompletenessFromContracts(t *testing.T) {
	f := servertest.Start(t, t.TempDir())
	postScenario(t, f)
	tracker := policies.NewTracker(f.Log, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tracker.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := tracker.WaitFor(ctx, f.Log.Size()); err != nil {
		t.Fatal(err)
	}
	f.Metrics.SetCompleteness(tracker)
	rates := tracker.Rates()
	if len(rates) == 0 {
		t.Fatal("the default contracts classify none of the scenario's changes")
	}
	fams := parse(t, f.Scrape())
	for _, r := range rates {
		labels := map[string]string{"environment": r.Environment, "class": r.Class}
		if got := value(t, fams, "evident_evidence_completeness_ratio", labels); got != r.Rate {
			t.Errorf("ratio %v = %v, want %v", labels, got, r.Rate)
		}
		labels["state"] = "closed"
		if got := value(t, fams, "evident_evidence_changes", labels); got != float64(r.Closed) {
			t.Errorf("closed %v = %v, want %d", labels, got, r.Closed)
		}
	}
}

// Series a dashboard panel reads exist at zero before any matching record:
// for the environments the configuration names, and for each environment
// as soon as its first record arrives. The build is identified.
func TestSeriesStartAtZero(t *testing.T) {
	m := metrics.New(metrics.Config{Version: "v1.2.3"})
	m.Projection().Known("prod")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	fams := parse(t, rec.Body.Bytes())
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"evident_applies_total", map[string]string{"environment": "prod", "result": "failed"}},
		{"evident_gitops_syncs_total", map[string]string{"environment": "prod", "result": "failed"}},
		{"evident_gate_decisions_total", map[string]string{"environment": "prod", "decision": "deny"}},
		{"evident_artifact_admissions_total", map[string]string{"environment": "prod", "result": "denied", "signed": "false"}},
		{"evident_drift_detected_total", map[string]string{"environment": "prod"}},
		{"evident_approval_wait_seconds", map[string]string{"environment": "prod"}},
		{"evident_ingest_requests_total", map[string]string{"result": "accepted"}},
	} {
		if got := value(t, fams, c.name, c.labels); got != 0 {
			t.Errorf("%s%v = %v, want a series at 0", c.name, c.labels, got)
		}
	}
	if got := value(t, fams, "evident_build_info", map[string]string{"version": "v1.2.3"}); got != 1 {
		t.Errorf("evident_build_info = %v", got)
	}
}
