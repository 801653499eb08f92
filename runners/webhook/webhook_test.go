package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/runners/gitops"
	"evident.dev/evident/runners/spool"
	"evident.dev/evident/runners/webhook"
	"evident.dev/evident/verifier"
)

var (
	secret = []byte("flux-webhook-secret")
	now    = time.Date(2026, 7, 3, 9, 47, 0, 0, time.UTC)
	site   = gitops.Site{Environment: "prod", Cluster: "prod-eu-1", Actor: "evident-webhook"}
)

// fluxEvent is the body notification-controller posts for a successful
// Kustomization reconciliation (fluxcd/pkg/apis/event/v1beta1.Event).
const fluxEvent = `{
  "involvedObject": {
    "kind": "Kustomization",
    "namespace": "payments",
    "name": "orders",
    "uid": "3e8d2a71-6b0f-4c9e-a5d4-1f7b9c2e8a60",
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "resourceVersion": "88812"
  },
  "severity": "info",
  "timestamp": "2026-07-03T09:46:02Z",
  "message": "Reconciliation finished in 20.5s, next run in 10m0s",
  "reason": "ReconciliationSucceeded",
  "metadata": {
    "revision": "main@sha1:5b7e2c9cea734934bf398da943f3d6dc0deed79a",
    "summary": "orders prod-eu-1"
  },
  "reportingController": "kustomize-controller",
  "reportingInstance": "kustomize-controller-7d9f8b6c5-x2x4k"
}`

func sign(key, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return "sha256=" + hex.EncodeToString(h.Sum(nil))
}

type env struct {
	url string
	got chan *evidence.Statement
}

// setup runs a receiver over a real watcher (webhook mode: no cluster), a
// real spool, and drains the spool into a channel.
func setup(t *testing.T) env {
	t.Helper()
	dir := t.TempDir()
	priv, _, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := client.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	flux := &gitops.Flux{Site: site, GVR: gitops.KustomizationResource}
	w, err := gitops.New(t.Context(), gitops.Config{Derivers: []gitops.Deriver{&gitops.ArgoCD{Site: site}}, Signer: signer, Spool: sp, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := webhook.New(webhook.Config{Secret: secret, Sink: w, Flux: flux, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *evidence.Statement, 100)
	done := make(chan struct{}, 2)
	go func() { w.Run(ctx); done <- struct{}{} }()
	go func() {
		sp.Deliver(ctx, func(_ context.Context, b []byte) error {
			var e struct{ Payload string }
			json.Unmarshal(b, &e)
			p, _ := base64.StdEncoding.DecodeString(e.Payload)
			st, err := evidence.Decode(p)
			if err != nil {
				t.Errorf("record: %v", err)
			}
			got <- st
			return nil
		})
		done <- struct{}{}
	}()
	srv := httptest.NewServer(rcv)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		<-done
		sp.Close()
	})
	return env{url: srv.URL, got: got}
}

func post(t *testing.T, url string, body []byte, sig string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if sig != "" {
		req.Header.Set("X-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e env) want(t *testing.T, kinds ...evidence.Kind) []*evidence.Statement {
	t.Helper()
	var out []*evidence.Statement
	for range kinds {
		select {
		case st := <-e.got:
			out = append(out, st)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d records, want %v", len(out), kinds)
		}
	}
	select {
	case st := <-e.got:
		t.Fatalf("unexpected %s record", st.Predicate.Kind)
	case <-time.After(300 * time.Millisecond):
	}
	for i, st := range out {
		if st.Predicate.Kind != kinds[i] {
			t.Fatalf("record %d is %s, want %v", i, st.Predicate.Kind, kinds)
		}
	}
	return out
}

func TestFluxEvent(t *testing.T) {
	e := setup(t)
	body := []byte(fluxEvent)

	// Wrong secret: refused, nothing recorded.
	if code, msg := post(t, e.url+"/webhooks/flux", body, sign([]byte("not-the-secret"), body)); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d %s", code, msg)
	}
	if code, _ := post(t, e.url+"/webhooks/flux", body, ""); code != http.StatusUnauthorized {
		t.Fatalf("no signature: %d", code)
	}
	// A body changed after signing.
	if code, _ := post(t, e.url+"/webhooks/flux", bytes.Replace(body, []byte("payments"), []byte("kube-system"), 1), sign(secret, body)); code != http.StatusUnauthorized {
		t.Fatalf("tampered body: %d", code)
	}
	e.want(t)

	// Valid: one sync.succeeded.
	if code, msg := post(t, e.url+"/webhooks/flux", body, sign(secret, body)); code != http.StatusAccepted {
		t.Fatalf("valid event: %d %s", code, msg)
	}
	st := e.want(t, evidence.KindSyncSucceeded)[0].Predicate
	if st.Sync.Revision != "main@sha1:5b7e2c9cea734934bf398da943f3d6dc0deed79a" || st.Source.CommitSHA != "5b7e2c9cea734934bf398da943f3d6dc0deed79a" ||
		st.Sync.Controller != "kustomize-controller" || st.OccurredAt != time.Date(2026, 7, 3, 9, 46, 2, 0, time.UTC) ||
		st.Sync.Object.UID != "3e8d2a71-6b0f-4c9e-a5d4-1f7b9c2e8a60" || st.Target.Namespace != "payments" {
		t.Errorf("record: %+v %+v", st.Sync, st.Target)
	}

	// Replayed: refused.
	if code, msg := post(t, e.url+"/webhooks/flux", body, sign(secret, body)); code != http.StatusConflict {
		t.Fatalf("replayed event: %d %s", code, msg)
	}
	// Outside the window: refused, even never seen before.
	old := bytes.Replace(body, []byte("2026-07-03T09:46:02Z"), []byte("2026-07-03T08:46:02Z"), 1)
	if code, msg := post(t, e.url+"/webhooks/flux", old, sign(secret, old)); code != http.StatusConflict {
		t.Fatalf("stale event: %d %s", code, msg)
	}
	e.want(t)

	// A failed health check.
	var ev map[string]any
	json.Unmarshal(body, &ev)
	ev["severity"], ev["reason"], ev["timestamp"] = "error", "HealthCheckFailed", "2026-07-03T09:50:00Z"
	ev["message"] = "health check failed after 5m0s: timeout waiting for: [Deployment/orders/orders status: 'InProgress']"
	b, _ := json.Marshal(ev)
	if code, msg := post(t, e.url+"/webhooks/flux", b, sign(secret, b)); code != http.StatusAccepted {
		t.Fatalf("health event: %d %s", code, msg)
	}
	if h := e.want(t, evidence.KindHealthDegraded)[0].Predicate.Health; h.Status != "Degraded" {
		t.Errorf("health: %+v", h)
	}

	// An event that cannot become a valid record (no involvedObject
	// apiVersion) is refused with the reason before it is acknowledged,
	// so the sender keeps it; nothing is queued.
	json.Unmarshal(body, &ev)
	delete(ev["involvedObject"].(map[string]any), "apiVersion")
	ev["timestamp"] = "2026-07-03T09:48:00Z"
	b, _ = json.Marshal(ev)
	if code, msg := post(t, e.url+"/webhooks/flux", b, sign(secret, b)); code != http.StatusBadRequest || !strings.Contains(msg, "cannot become a valid") {
		t.Fatalf("an event without apiVersion: %d %s, want 400 with the reason", code, msg)
	}
	e.want(t)
}

func TestArgoCDNotification(t *testing.T) {
	e := setup(t)
	y, err := os.ReadFile("../gitops/testdata/application.yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	app := &unstructured.Unstructured{}
	if err := app.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	unstructured.SetNestedField(app.Object, "Succeeded", "status", "operationState", "phase")
	unstructured.SetNestedField(app.Object, "2026-07-03T09:46:02Z", "status", "operationState", "finishedAt")
	unstructured.SetNestedField(app.Object, "5b7e2c9cea734934bf398da943f3d6dc0deed79a", "status", "operationState", "syncResult", "revision")
	unstructured.SetNestedField(app.Object, "Synced", "status", "sync", "status")
	appJSON, _ := app.MarshalJSON()
	body := fmt.Appendf(nil, `{"sentAt":"2026-07-03T09:46:03Z","app":%s}`, appJSON)

	if code, _ := post(t, e.url+"/webhooks/argocd", body, sign([]byte("wrong"), body)); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", code)
	}
	if code, msg := post(t, e.url+"/webhooks/argocd", body, sign(secret, body)); code != http.StatusAccepted {
		t.Fatalf("valid notification: %d %s", code, msg)
	}
	got := e.want(t, evidence.KindSyncStarted, evidence.KindSyncSucceeded)
	if s := got[1].Predicate.Sync; s.InitiatedBy != "maria.chen@example.com" || s.Boundary.Project != "payments" {
		t.Errorf("sync.succeeded from a notification: %+v", s)
	}
	if code, _ := post(t, e.url+"/webhooks/argocd", body, sign(secret, body)); code != http.StatusConflict {
		t.Fatalf("replayed notification: %d", code)
	}
	// A notification without the Application is refused, and may be re-sent.
	bad := []byte(`{"sentAt":"2026-07-03T09:46:03Z","app":{"kind":"Application"}}`)
	if code, _ := post(t, e.url+"/webhooks/argocd", bad, sign(secret, bad)); code != http.StatusBadRequest {
		t.Fatalf("notification without an app: %d", code)
	}
	e.want(t)
}

func FuzzReceiver(f *testing.F) {
	f.Add([]byte(fluxEvent), true)
	f.Add([]byte(`{"sentAt":"2026-07-03T09:46:03Z","app":{"metadata":{"uid":"u","name":"n"}}}`), false)
	f.Add([]byte(`{"timestamp":"2026-07-03T09:46:03Z","involvedObject":{"uid":"u","name":"n"},"severity":"error"}`), true)
	f.Fuzz(func(t *testing.T, body []byte, isFlux bool) {
		sink := &nopSink{}
		rcv, err := webhook.New(webhook.Config{Secret: secret, Sink: sink, Flux: &gitops.Flux{Site: site, GVR: gitops.KustomizationResource},
			Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		path := "/webhooks/argocd"
		if isFlux {
			path = "/webhooks/flux"
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("X-Signature", sign(secret, body))
		rec := httptest.NewRecorder()
		rcv.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusConflict:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusAccepted && sink.n > 0 {
			t.Fatalf("a refused notification reached the watcher")
		}
	})
}

type nopSink struct{ n int }

func (s *nopSink) Observe(_ schema.GroupVersionResource, obj map[string]any) error {
	u := unstructured.Unstructured{Object: obj}
	if u.GetUID() == "" || u.GetName() == "" {
		return errors.New("no uid")
	}
	s.n++
	return nil
}
func (s *nopSink) Emit(string, ...gitops.Emission) { s.n++ }
