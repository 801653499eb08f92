package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// watchProc is a running `evident watch`.
type watchProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	URL    string
	stderr *syncBuffer
	exited chan struct{}
}

func startWatch(t *testing.T, dir string, args ...string) *watchProc {
	t.Helper()
	stdout := &syncBuffer{}
	p := &watchProc{t: t, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(evidentBin, append([]string{"watch"}, args...)...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if addr, ok := strings.CutPrefix(strings.TrimSpace(stdout.String()), "evident watch listening on "); ok {
			p.URL = addr
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("evident watch exited: %s", p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("evident watch did not start in 60s: %s", p.stderr.String())
		}
	}
}

// fluxEvent is a notification-controller event for the Kustomization
// payments/orders (or another namespace) at a time.
func fluxEvent(namespace string, at time.Time, n int) []byte {
	return fmt.Appendf(nil, `{"involvedObject":{"kind":"Kustomization","namespace":%q,"name":"orders","uid":"3e8d2a71-6b0f-4c9e-a5d4-1f7b9c2e8a60","apiVersion":"kustomize.toolkit.fluxcd.io/v1","resourceVersion":"%d"},"severity":"info","timestamp":%q,"message":"Reconciliation %d finished","reason":"ReconciliationSucceeded","metadata":{"revision":"main@sha1:%040x"},"reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-0"}`,
		namespace, 88800+n, at.UTC().Format(time.RFC3339), n, n)
}

func (p *watchProc) notify(secret, body []byte) int {
	p.t.Helper()
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/webhooks/flux", bytes.NewReader(body))
	req.Header.Set("X-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := httpClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// metric reads one unlabelled sample from the watcher's /metrics.
func (p *watchProc) metric(name string) float64 {
	p.t.Helper()
	resp, err := httpClient.Get(p.URL + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscanf(v, "%g", &f)
			return f
		}
	}
	p.t.Fatalf("no metric %s in:\n%s", name, b)
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWatchSpoolsWhileTheLedgerIsDown runs `evident watch webhook` against a
// real `evident serve`, stops the server, keeps notifying, and restarts it:
// every record arrives once, in order; a record outside the watcher's scope
// is refused by the server and kept by the watcher.
func TestWatchSpoolsWhileTheLedgerIsDown(t *testing.T) {
	work := t.TempDir()
	evident(t, work, "keys", "generate", "--name", "watcher", "--dir", work)
	cfg := filepath.Join(work, "evident.yaml")
	writeFile(t, cfg, `listen: 127.0.0.1:0
data: data
trust:
  runners:
    - name: flux-watcher
      publicKey: watcher.pub
      scope:
        environments: [prod]
        clusters: [prod-eu-1]
        namespaces: [payments]
`)
	secret := []byte("s3cret-shared-with-notification-controller")
	writeFile(t, filepath.Join(work, "hmac"), string(secret)+"\n")
	srv := startServe(t, work, "--config", cfg)
	addr := strings.TrimPrefix(srv.URL, "http://")
	w := startWatch(t, work, "webhook", "--key", "watcher.key", "--server", srv.URL, "--spool", "spool",
		"--environment", "prod", "--cluster", "prod-eu-1", "--secret-file", "hmac")

	base := time.Now().Add(-2 * time.Minute)
	if code := w.notify(secret, fluxEvent("payments", base, 0)); code != http.StatusAccepted {
		t.Fatalf("notify: %d\n%s", code, w.stderr.String())
	}
	waitFor(t, "the first record in the ledger", func() bool { return srv.size() == 2 })
	// The watcher reports readiness beside its metrics.
	waitFor(t, "the watcher to be ready", func() bool {
		resp, err := httpClient.Get(w.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// The ledger goes away; notifications keep coming and are spooled.
	srv.stop()
	for i := 1; i <= 5; i++ {
		if code := w.notify(secret, fluxEvent("payments", base.Add(time.Duration(i)*time.Second), i)); code != http.StatusAccepted {
			t.Fatalf("notify %d: %d", i, code)
		}
	}
	waitFor(t, "five spooled records", func() bool { return w.metric("evident_watch_spool_pending_records") == 5 })
	waitFor(t, "failed deliveries", func() bool { return w.metric("evident_watch_delivery_failures_total") > 0 })

	// It comes back on the same address: the spool drains in order.
	srv = startServe(t, work, "--config", cfg, "--listen", addr)
	waitFor(t, "the spooled records in the ledger", func() bool { return srv.size() == 7 })
	if n := w.metric("evident_watch_spool_pending_records"); n != 0 {
		t.Errorf("%v records still pending", n)
	}
	for i := uint64(1); i <= 6; i++ {
		st := statementOf(t, srv.entry(i).Envelope)
		pred := st["predicate"].(map[string]any)
		want := base.Add(time.Duration(i-1) * time.Second).UTC().Format(time.RFC3339)
		if pred["kind"] != "sync.succeeded" || pred["occurredAt"] != want {
			t.Errorf("entry %d: %v at %v, want sync.succeeded at %s", i, pred["kind"], pred["occurredAt"], want)
		}
	}

	// A Kustomization in a namespace outside the watcher's scope: the server
	// refuses the record, the watcher keeps it for review and goes on.
	if code := w.notify(secret, fluxEvent("kube-system", base.Add(10*time.Second), 10)); code != http.StatusAccepted {
		t.Fatalf("notify: %d", code)
	}
	waitFor(t, "the refusal", func() bool { return w.metric("evident_watch_rejected_total") == 1 })
	kept, _ := filepath.Glob(filepath.Join(work, "spool", "spool", "rejected", "*.json"))
	if len(kept) != 1 {
		t.Errorf("rejected records kept: %v", kept)
	}
	mustContain(t, "watcher log", w.stderr.String(), `namespace \"kube-system\" is outside the signer's scope`)
	if code := w.notify(secret, fluxEvent("payments", base.Add(11*time.Second), 11)); code != http.StatusAccepted {
		t.Fatalf("notify: %d", code)
	}
	waitFor(t, "the next record", func() bool { return srv.size() == 8 })
	// An event that cannot become a valid record (no involvedObject
	// apiVersion) is refused before it is acknowledged, and nothing is sent.
	bad := bytes.Replace(fluxEvent("payments", base.Add(12*time.Second), 12), []byte(`,"apiVersion":"kustomize.toolkit.fluxcd.io/v1"`), nil, 1)
	if code := w.notify(secret, bad); code != http.StatusBadRequest {
		t.Fatalf("notify of an event without apiVersion: %d, want 400", code)
	}
	if code := w.notify(secret, fluxEvent("payments", base.Add(13*time.Second), 13)); code != http.StatusAccepted {
		t.Fatalf("notify: %d", code)
	}
	waitFor(t, "the record after the refused event", func() bool { return srv.size() == 9 })

	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("evident watch did not stop on SIGTERM")
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("evident watch exited %d: %s", code, w.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(work, "spool", "state", "state.log")); err != nil {
		t.Errorf("watcher state: %v", err)
	}
}
