package gitops_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"evident.dev/evident/evidence"
	"evident.dev/evident/runners/gitops"
)

func TestFluxTransitions(t *testing.T) {
	ks := load(t, "kustomization.yaml")
	hr := load(t, "helmrelease.yaml")
	// The Service the Kustomization applied: its type is read from the
	// cluster, since the inventory names it only.
	svc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"namespace": "orders", "name": "orders"}, "spec": map[string]any{"type": "LoadBalancer"}}}
	cluster := newCluster(ks, hr, svc)
	h := start(t, cluster, newSigner(t), t.TempDir())

	got := h.next(evidence.KindSyncSucceeded, evidence.KindSyncSucceeded)
	var k, r evidence.Transition
	for _, g := range got {
		if g.p().Sync.Object.Kind == "Kustomization" {
			k = g.p()
		} else {
			r = g.p()
		}
	}
	if k.Source.CommitSHA != rev1 || k.Source.Branch != "main" || k.Source.Repository != "GitRepository/payments/app-orders-deploy" ||
		k.Sync.Revision != "main@sha1:"+rev1 || k.Sync.SourcePath != "./deploy/overlays/prod" || k.Target.Namespace != "orders" ||
		k.Target.Environment != "prod" || k.Sync.Controller != "flux/kustomize-controller" {
		t.Errorf("Kustomization sync.succeeded: %+v %+v", k.Source, k.Sync)
	}
	if *k.Sync.Policy != (evidence.SyncPolicy{Automated: true, Prune: true, SelfHeal: true}) || k.Sync.Boundary.ServiceAccount != "payments-reconciler" {
		t.Errorf("Kustomization controls: %+v %+v", *k.Sync.Policy, k.Sync.Boundary)
	}
	if len(k.Sync.Resources) != 3 || k.Sync.Resources[1] != (evidence.SyncedObject{Group: "apps", Kind: "Deployment", Namespace: "orders", Name: "orders", Status: "Applied"}) {
		t.Errorf("Kustomization inventory: %+v", k.Sync.Resources)
	}
	if got := k.Sync.Resources[2]; got != (evidence.SyncedObject{Kind: "Service", Namespace: "orders", Name: "orders", Status: "Applied", ServiceType: "LoadBalancer"}) {
		t.Errorf("the synced Service: %+v, want its type read from the cluster", got)
	}
	if facts := evidence.Facts(&k); !slices.Contains(facts, evidence.FactPublicExposure) {
		t.Errorf("a sync applying a LoadBalancer Service: facts %v, want public-exposure", facts)
	}
	if r.Sync.Revision != "redis@19.6.4" || r.Source.Repository != "HelmRepository/flux-system/bitnami" || r.Target.Environment != "staging" ||
		r.Sync.Controller != "flux/helm-controller" || !r.Sync.Policy.SelfHeal || r.OccurredAt.Format(time.TimeOnly) != "11:20:05" {
		t.Errorf("HelmRelease sync.succeeded: %+v %+v", r.Source, r.Sync)
	}

	// A new revision: Ready Unknown while reconciling.
	rev := "main@sha1:" + rev2
	set(t, ks, rev, "status", "lastAttemptedRevision")
	set(t, ks, []any{map[string]any{"type": "Ready", "status": "Unknown", "reason": "Progressing",
		"message": "Reconciliation in progress", "lastTransitionTime": "2026-07-04T08:00:00Z"}}, "status", "conditions")
	update(t, cluster, gitops.KustomizationResource, ks)
	if s := h.next(evidence.KindSyncStarted)[0].p(); s.Sync.Revision != rev || s.Source.CommitSHA != rev2 {
		t.Errorf("sync.started: %+v", s.Sync)
	}

	// Its health check fails: sync.failed and health.degraded.
	set(t, ks, []any{map[string]any{"type": "Ready", "status": "False", "reason": "HealthCheckFailed",
		"message":            "health check failed after 5m0s: timeout waiting for: [Deployment/orders/orders status: 'InProgress']",
		"lastTransitionTime": "2026-07-04T08:05:03Z"}}, "status", "conditions")
	update(t, cluster, gitops.KustomizationResource, ks)
	got = h.next(evidence.KindSyncFailed, evidence.KindHealthDegraded)
	if f := got[0].p(); f.Sync.Revision != rev || !strings.Contains(f.Sync.Message, "health check failed") {
		t.Errorf("sync.failed: %+v", f.Sync)
	}
	if d := got[1].p(); d.Health.Status != "Degraded" || d.OccurredAt.Format(time.TimeOnly) != "08:05:03" {
		t.Errorf("health.degraded: %+v", d.Health)
	}

	// Someone suspends it: a finding in itself.
	set(t, ks, true, "spec", "suspend")
	update(t, cluster, gitops.KustomizationResource, ks)
	got = h.next(evidence.KindHealthDegraded)
	if s := got[0].p().Health; s.Status != "Suspended" || !strings.Contains(s.Message, "spec.suspend") {
		t.Errorf("suspension: %+v", s)
	}
}

func TestRolloutTransitions(t *testing.T) {
	ro := load(t, "rollout.yaml")
	run := load(t, "analysisrun.yaml")
	cluster := newCluster(ro, run)
	h := start(t, cluster, newSigner(t), t.TempDir())

	p := h.next(evidence.KindRolloutPromoted)[0].p()
	r := p.Rollout
	if r.Revision != "17" || r.Strategy != "canary" || r.ImageDigest != "sha256:abc1235207741b2a047a99c8927a06e50dff7e30d4d6b0d4f53867577dc60387" ||
		r.PromotedAt.Format(time.TimeOnly) != "10:31:44" || r.AnalysisRun != "orders-6d8f7c9b5-17-2" || r.Object.Generation != 17 ||
		!strings.HasSuffix(r.ServiceVersion, "@"+r.ImageDigest) {
		t.Errorf("rollout.promoted: %+v", r)
	}
	if len(r.Analysis) != 2 || r.Analysis[1] != (evidence.AnalysisResult{Template: "orders-canary-v3", Metric: "p95-latency",
		Query: `histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{app="orders"}[5m])))`, Result: "successful", Value: "[0.215]"}) {
		t.Errorf("analysis: %+v", r.Analysis)
	}
	if len(p.Artifacts) != 1 || p.Artifacts[0].Digest != r.ImageDigest || p.ChangeID != "CHG-2026-07-03-1421" || p.Target.Application != "orders-prod-eu-1" {
		t.Errorf("rollout.promoted record: %+v %s", p.Artifacts, p.ChangeID)
	}

	// Revision 18: its step-5 analysis fails and the controller aborts.
	const img18 = "registry.example.com/payments/orders@sha256:5d2c8e7f41b09a3c6e2f8d7b1a4c9e0f3b6a8d2c5e7f9a1b3c4d6e8f0a2b4c6d"
	ro.SetAnnotations(map[string]string{"rollout.argoproj.io/revision": "18", "evident.dev/change-id": "CHG-2026-07-04-0107"})
	ro.SetGeneration(18)
	set(t, ro, []any{map[string]any{"name": "orders", "image": img18}}, "spec", "template", "spec", "containers")
	set(t, ro, map[string]any{
		"phase": "Degraded", "abort": true, "abortedAt": "2026-07-04T10:08:27Z",
		"message":        `RolloutAborted: Rollout aborted update to revision 18: Metric "p95-latency" assessed Failed due to failed (1) > failureLimit (0)`,
		"currentPodHash": "7f9c6d8e4", "stableRS": "6d8f7c9b5", "currentStepIndex": int64(0),
	}, "status")
	failed := load(t, "analysisrun.yaml")
	failed.SetName("orders-7f9c6d8e4-18-5")
	failed.SetUID("e3a9b7c1-0d2f-4e6a-8b5c-7d1f2a3b4c5e")
	failed.SetLabels(map[string]string{"rollout-type": "Step", "rollouts-pod-template-hash": "7f9c6d8e4", "step-index": "5"})
	set(t, failed, "Failed", "status", "phase")
	set(t, failed, []any{
		map[string]any{"name": "success-rate", "phase": "Successful", "count": int64(1), "successful": int64(1),
			"measurements": []any{map[string]any{"phase": "Successful", "value": "[0.9990]", "startedAt": "2026-07-04T10:07:20Z", "finishedAt": "2026-07-04T10:07:20Z"}}},
		map[string]any{"name": "p95-latency", "phase": "Failed", "count": int64(1), "failed": int64(1),
			"measurements": []any{map[string]any{"phase": "Failed", "value": "[0.412]", "startedAt": "2026-07-04T10:07:20Z", "finishedAt": "2026-07-04T10:07:20Z"}}},
	}, "status", "metricResults")
	if _, err := cluster.Resource(gitops.AnalysisRunResource).Namespace("orders").Create(t.Context(), failed, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The controller writes the Rollout after the run it judged: the
	// watcher has the run in its cache before it sees the Rollout.
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(h.w.List(gitops.AnalysisRunResource, "orders"), func(o map[string]any) bool {
		return (&unstructured.Unstructured{Object: o}).GetName() == failed.GetName()
	}) {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher's cache has no AnalysisRun %s after 10s", failed.GetName())
		}
		time.Sleep(5 * time.Millisecond)
	}
	update(t, cluster, gitops.RolloutResource, ro)
	a := h.next(evidence.KindRolloutAborted)[0].p()
	ar := a.Rollout
	if ar.Revision != "18" || !strings.Contains(ar.AbortReason, `Metric "p95-latency" assessed Failed`) || ar.AnalysisRun != "orders-7f9c6d8e4-18-5" ||
		a.OccurredAt.Format(time.TimeOnly) != "10:08:27" || a.ChangeID != "CHG-2026-07-04-0107" || !strings.Contains(ar.ServiceVersion, "6d8f7c9b5") {
		t.Errorf("rollout.aborted: %+v", ar)
	}
	if len(ar.Analysis) != 2 || ar.Analysis[1].Result != "failed" || ar.Analysis[1].Value != "[0.412]" || ar.Analysis[1].Template != "orders-canary-v3" {
		t.Errorf("aborted analysis: %+v", ar.Analysis)
	}
}
