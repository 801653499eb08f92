package gitops_test

import (
	"bytes"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"evident.dev/evident/evidence"
	"evident.dev/evident/runners/gitops"
)

const (
	rev1 = "5b7e2c9cea734934bf398da943f3d6dc0deed79a"
	rev2 = "c0ffee4a1b2c3d4e5f60718293a4b5c6d7e8f901"
)

// The application controller's status writes, as they happen in a sync.

func syncSucceeded(t testing.TB, app *unstructured.Unstructured) {
	set(t, app, "Succeeded", "status", "operationState", "phase")
	set(t, app, "successfully synced (all tasks run)", "status", "operationState", "message")
	set(t, app, "2026-07-03T09:46:02Z", "status", "operationState", "finishedAt")
	set(t, app, map[string]any{
		"revision": rev1,
		"source":   map[string]any{"repoURL": "https://github.com/example/app-orders-deploy.git", "targetRevision": "main", "path": "overlays/prod-eu-1"},
		"resources": []any{
			map[string]any{"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "orders", "name": "orders-config", "status": "Synced", "message": "configmap/orders-config configured", "hookPhase": "Running", "syncPhase": "Sync"},
			map[string]any{"group": "argoproj.io", "version": "v1alpha1", "kind": "Rollout", "namespace": "orders", "name": "orders", "status": "Synced", "message": "rollout.argoproj.io/orders configured", "hookPhase": "Running", "syncPhase": "Sync"},
			map[string]any{"group": "", "version": "v1", "kind": "ConfigMap", "namespace": "orders", "name": "orders-config-legacy", "status": "Pruned", "message": "pruned", "hookPhase": "Succeeded", "syncPhase": "Sync"},
		},
	}, "status", "operationState", "syncResult")
	set(t, app, "Synced", "status", "sync", "status")
	set(t, app, "Healthy", "status", "health", "status")
	set(t, app, []any{
		map[string]any{"version": "v1", "kind": "ConfigMap", "namespace": "orders", "name": "orders-config", "status": "Synced"},
		map[string]any{"group": "argoproj.io", "version": "v1alpha1", "kind": "Rollout", "namespace": "orders", "name": "orders", "status": "Synced", "health": map[string]any{"status": "Healthy"}},
	}, "status", "resources")
}

func TestArgoCDTransitions(t *testing.T) {
	app := load(t, "application.yaml")
	cluster := newCluster(load(t, "appproject.yaml"), app)
	h := start(t, cluster, newSigner(t), t.TempDir())

	// The sync operation runs: sync.started, with the controls in force.
	started := h.next(evidence.KindSyncStarted)[0].p()
	if started.ChangeID != "CHG-2026-07-03-1421" || started.Source.CommitSHA != rev1 || started.Source.Branch != "main" ||
		started.Source.Repository != "https://github.com/example/app-orders-deploy.git" {
		t.Errorf("sync.started source/change: %+v %s", started.Source, started.ChangeID)
	}
	if want := (evidence.Target{Environment: "prod", Cluster: "prod-eu-1", Namespace: "orders", Application: "orders-prod-eu-1"}); started.Target != want {
		t.Errorf("target = %+v, want %+v", started.Target, want)
	}
	s := started.Sync
	if s.InitiatedBy != "maria.chen@example.com" || s.Revision != rev1 || s.SourcePath != "overlays/prod-eu-1" || s.Operation != "sync" {
		t.Errorf("sync block: %+v", s)
	}
	if *s.Policy != (evidence.SyncPolicy{Automated: true, Prune: true, SelfHeal: true}) {
		t.Errorf("sync policy = %+v", *s.Policy)
	}
	if len(s.Ignored) != 2 || s.Ignored[0].Kind != "Deployment" || s.Ignored[0].JSONPointers[0] != "/spec/replicas" ||
		s.Ignored[1].JSONPointers[0] != ".spec.template.spec.containers[].resources" {
		t.Errorf("ignored differences = %+v", s.Ignored)
	}
	b := s.Boundary
	if b.Project != "payments" || !slices.Equal(b.SourceRepos, []string{"https://github.com/example/app-orders-deploy.git"}) ||
		!slices.Equal(b.Destinations, []string{"prod-eu-1/orders", "https://prod-eu-1.k8s.example.com/payments-*"}) ||
		!slices.Equal(b.ClusterResources, []string{"/Namespace"}) {
		t.Errorf("boundary = %+v", b)
	}
	if o := s.Object; o.Kind != "Application" || o.UID != "5f0c1f9e-3b7a-4d2e-9c41-7a2b8e6d1c03" || o.Generation != 14 || o.Namespace != "argocd" {
		t.Errorf("object = %+v", o)
	}
	if got := started.OccurredAt.Format("15:04:05"); got != "09:45:41" {
		t.Errorf("sync.started occurredAt %s, want the operation's startedAt", got)
	}

	// It succeeds: sync.succeeded only (sync.started was recorded), with
	// the resources touched and pruned.
	syncSucceeded(t, app)
	update(t, cluster, gitops.ApplicationResource, app)
	ok := h.next(evidence.KindSyncSucceeded)[0].p()
	if len(ok.Sync.Resources) != 3 || !slices.Equal(ok.Sync.Pruned, []string{"ConfigMap/orders/orders-config-legacy"}) ||
		ok.Sync.Message != "successfully synced (all tasks run)" || ok.OccurredAt.Format("15:04:05") != "09:46:02" {
		t.Errorf("sync.succeeded: %+v at %s", ok.Sync, ok.OccurredAt)
	}

	// A status refresh that changes nothing recordable gives nothing.
	set(t, app, "2026-07-03T09:48:40Z", "status", "reconciledAt")
	update(t, cluster, gitops.ApplicationResource, app)
	h.quiet()

	// The new pods crash: health.degraded.
	set(t, app, map[string]any{"status": "Degraded", "lastTransitionTime": "2026-07-03T09:51:30Z",
		"message": "Rollout orders: 0/6 new pods ready; CreateContainerConfigError: couldn't find key POOL_MAX in Secret orders/orders-db"}, "status", "health")
	update(t, cluster, gitops.ApplicationResource, app)
	deg := h.next(evidence.KindHealthDegraded)[0].p()
	if deg.Health.Status != "Degraded" || deg.OccurredAt.Format("15:04:05") != "09:51:30" || deg.Health.Object.Name != "orders-prod-eu-1" {
		t.Errorf("health.degraded: %+v at %s", deg.Health, deg.OccurredAt)
	}
	set(t, app, map[string]any{"status": "Healthy", "lastTransitionTime": "2026-07-03T10:02:00Z"}, "status", "health")
	update(t, cluster, gitops.ApplicationResource, app)
	h.quiet()

	// Someone edits the live ConfigMap: OutOfSync at the synced revision is drift.
	set(t, app, "OutOfSync", "status", "sync", "status")
	set(t, app, "2026-07-03T11:00:10Z", "status", "reconciledAt")
	set(t, app, []any{
		map[string]any{"version": "v1", "kind": "ConfigMap", "namespace": "orders", "name": "orders-config", "status": "OutOfSync"},
		map[string]any{"group": "argoproj.io", "version": "v1alpha1", "kind": "Rollout", "namespace": "orders", "name": "orders", "status": "Synced"},
	}, "status", "resources")
	update(t, cluster, gitops.ApplicationResource, app)
	drift := h.next(evidence.KindDriftDetected)[0].p()
	if !slices.Equal(drift.Drift.Resources, []string{"ConfigMap/orders/orders-config"}) || drift.Drift.Revision != rev1 ||
		drift.Drift.DetectedBy != "argocd/argocd-application-controller" || drift.OccurredAt.Format("15:04:05") != "11:00:10" {
		t.Errorf("drift.detected: %+v at %s", drift.Drift, drift.OccurredAt)
	}
	// The next reconcile sees the same drift: nothing new.
	set(t, app, "2026-07-03T11:03:10Z", "status", "reconciledAt")
	update(t, cluster, gitops.ApplicationResource, app)
	h.quiet()

	// Self-heal reverts it.
	set(t, app, "Synced", "status", "sync", "status")
	set(t, app, "2026-07-03T11:03:12Z", "status", "reconciledAt")
	update(t, cluster, gitops.ApplicationResource, app)
	rec := h.next(evidence.KindDriftReconciled)[0].p()
	if rec.Drift.Method != "revert" || !slices.Equal(rec.Drift.Resources, []string{"ConfigMap/orders/orders-config"}) {
		t.Errorf("drift.reconciled: %+v", rec.Drift)
	}

	// A new commit in Git: OutOfSync at a new revision is a pending sync, not drift.
	set(t, app, "OutOfSync", "status", "sync", "status")
	set(t, app, rev2, "status", "sync", "revision")
	update(t, cluster, gitops.ApplicationResource, app)
	h.quiet()

	// Its sync fails, seen only once finished: sync.started and sync.failed.
	set(t, app, map[string]any{
		"operation": map[string]any{"sync": map[string]any{"revision": rev2}, "initiatedBy": map[string]any{"automated": true}},
		"phase":     "Failed", "message": "one or more objects failed to apply, reason: admission webhook denied the request",
		"startedAt": "2026-07-03T12:00:00Z", "finishedAt": "2026-07-03T12:00:09Z",
		"syncResult": map[string]any{"revision": rev2, "resources": []any{
			map[string]any{"version": "v1", "kind": "ConfigMap", "namespace": "orders", "name": "orders-config", "status": "SyncFailed", "message": "admission webhook denied the request"},
		}},
	}, "status", "operationState")
	update(t, cluster, gitops.ApplicationResource, app)
	got := h.next(evidence.KindSyncStarted, evidence.KindSyncFailed)
	if f := got[1].p(); f.Sync.InitiatedBy != "automated" || f.Sync.Revision != rev2 || f.Source.CommitSHA != rev2 ||
		f.Sync.Resources[0].Status != "SyncFailed" || got[0].p().OccurredAt.Format("15:04:05") != "12:00:00" {
		t.Errorf("sync.failed: %+v", f.Sync)
	}
	if n := metric(t, h.reg, "evident_watch_invalid_records_total"); n != 0 {
		t.Errorf("%v derived records were invalid", n)
	}
}

// TestRestartResumesWithoutDuplicatesOrGaps stops the watcher, changes the
// application while it is down, and starts it again with the same state:
// only the change is recorded. A watcher with no state at all re-derives
// byte-identical envelopes, which the ledger deduplicates.
func TestRestartResumesWithoutDuplicatesOrGaps(t *testing.T) {
	app := load(t, "application.yaml")
	syncSucceeded(t, app)
	cluster := newCluster(load(t, "appproject.yaml"), app)
	signer := newSigner(t)
	dir := t.TempDir()

	h := start(t, cluster, signer, dir)
	first := h.next(evidence.KindSyncStarted, evidence.KindSyncSucceeded)
	h.stop()

	// While the watcher is down, the app degrades and its status is refreshed.
	set(t, app, map[string]any{"status": "Degraded", "lastTransitionTime": "2026-07-03T09:51:30Z", "message": "0/6 pods ready"}, "status", "health")
	set(t, app, "2026-07-03T09:52:00Z", "status", "reconciledAt")
	update(t, cluster, gitops.ApplicationResource, app)

	h = start(t, cluster, signer, dir)
	h.next(evidence.KindHealthDegraded) // the gap is filled; the sync is not recorded again
	h.stop()

	// With no state, the same object gives the same envelopes, byte for byte.
	h = start(t, cluster, signer, t.TempDir())
	again := h.next(evidence.KindSyncStarted, evidence.KindSyncSucceeded, evidence.KindHealthDegraded)
	for i := range first {
		if !bytes.Equal(first[i].env, again[i].env) {
			t.Errorf("%s re-derived differently:\n%s\n%s", first[i].p().Kind, first[i].env, again[i].env)
		}
	}
}

// TestDeletedApplicationIsForgotten checks that the watcher's state holds
// only live objects: a deleted application's state is dropped, and an
// application created again under the same name (a new UID), even right
// after the deletion, is recorded as a new object.
func TestDeletedApplicationIsForgotten(t *testing.T) {
	app := load(t, "application.yaml")
	syncSucceeded(t, app)
	cluster := newCluster(load(t, "appproject.yaml"), app)
	h := start(t, cluster, newSigner(t), t.TempDir())
	h.next(evidence.KindSyncStarted, evidence.KindSyncSucceeded)
	apps := cluster.Resource(gitops.ApplicationResource).Namespace("argocd")
	for _, uid := range []string{"7c2e9d41-0a6b-4f3e-8d5c-1b2a3c4d5e6f", "8d3f0e52-1b7c-4a4f-9e6d-2c3b4d5e6f70"} {
		if err := apps.Delete(t.Context(), app.GetName(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		app.SetResourceVersion("")
		app.SetUID(types.UID(uid))
		if _, err := apps.Create(t.Context(), app, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := h.next(evidence.KindSyncStarted, evidence.KindSyncSucceeded)
		if got[1].p().Sync.Object.UID != uid {
			t.Errorf("recorded object %s, want %s", got[1].p().Sync.Object.UID, uid)
		}
	}
}
