package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeMetrics: the real binary serves /metrics computed from its log,
// promtool accepts it, and a restarted server reports the same ledger values.
func TestServeMetrics(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	postMany(t, srv, newSigner(t, filepath.Join(data, "dev-runner.key")), "CHG-METRICS", "prod", 5, 2)
	want := `evident_ledger_entries_total{environment="prod",kind="plan.created"} 5`
	body := waitMetric(t, srv, want)
	if tool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(tool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	}
	page := string(srv.get("/", 200))
	if !strings.Contains(page, "Evidence completeness by environment") {
		t.Errorf("GET / is not the dashboard:\n%s", page)
	}
	srv.stop()
	srv = startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	waitMetric(t, srv, want)
}

// waitMetric scrapes until the exposition has line (the projection tails
// the log asynchronously) and returns the body.
func waitMetric(t *testing.T, srv *testServer, line string) []byte {
	t.Helper()
	var body []byte
	for range 500 {
		body = srv.get("/metrics", 200)
		for l := range strings.SplitSeq(string(body), "\n") {
			if l == line {
				return body
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("/metrics never had %q:\n%s", line, body)
	return nil
}
