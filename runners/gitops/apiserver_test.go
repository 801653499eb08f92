package gitops_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	typedrbacv1 "k8s.io/client-go/kubernetes/typed/rbac/v1"

	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/testenv"
	"evident.dev/evident/runners/gitops"
	"evident.dev/evident/runners/spool"
)

// These tests run the watcher against a real kube-apiserver (with etcd)
// holding the CRDs Argo CD, Argo Rollouts and Flux publish, as the user
// the watcher's chart RBAC describes: the objects are validated by the
// real schemas, listed and watched by real informers, and refused by real
// RBAC.

var allCRDs = []string{testenv.ApplicationCRD, testenv.AppProjectCRD, testenv.RolloutCRD, testenv.AnalysisRunCRD,
	testenv.KustomizationCRD, testenv.HelmReleaseCRD}

// apiCluster is a real API server with crds installed, the namespaces
// the test objects live in, and the watcher's user allowed to get, list
// and watch every resource in resources (and get Services).
type apiCluster struct {
	k     *testenv.Kubernetes
	admin dynamic.Interface
}

func startAPIServer(t *testing.T, crds []string, resources ...schema.GroupVersionResource) *apiCluster {
	t.Helper()
	k := testenv.StartKubernetes(t)
	k.ApplyCRDs(t, crds...)
	admin, err := dynamic.NewForConfig(k.Config(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	core, err := typedcorev1.NewForConfig(k.Config(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{"argocd", "payments", "orders"} {
		if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get"}}}
	for _, r := range resources {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{r.Group}, Resources: []string{r.Resource}, Verbs: []string{"get", "list", "watch"}})
	}
	rbac, err := typedrbacv1.NewForConfig(k.Config(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "evident-watcher"}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "evident-watcher"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "evident-watcher"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "evident-watcher"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &apiCluster{k: k, admin: admin}
}

// watch starts a watcher on the API server as the watcher's user.
func (c *apiCluster) watch(t *testing.T) *harness {
	t.Helper()
	cfg := c.k.Config(t, "evident-watcher")
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startWith(t, dc, newSigner(t), t.TempDir(), func(c *gitops.Config) { c.Discovery = disc })
}

// apply creates a test manifest as its controller would leave it: the
// object first (the server assigns uid, generation and resourceVersion),
// then its status, through the status subresource where the CRD has one.
func (c *apiCluster) apply(t *testing.T, gvr schema.GroupVersionResource, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	ctx := context.Background()
	status, hasStatus := u.Object["status"]
	u = u.DeepCopy()
	delete(u.Object, "status")
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	rc := c.admin.Resource(gvr).Namespace(u.GetNamespace())
	created, err := rc.Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s %s: %v", gvr.Resource, u.GetName(), err)
	}
	if !hasStatus {
		return created
	}
	created.Object["status"] = status
	updated, err := rc.UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) { // no status subresource: status is part of the object
		updated, err = rc.Update(ctx, created, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("status of %s %s: %v", gvr.Resource, u.GetName(), err)
	}
	return updated
}

// A cluster with Argo CD, Argo Rollouts and Flux: every resource is
// followed, and each controller's objects become records, with the synced
// Service's type read from the cluster.
func TestRealAPIServerWithEveryController(t *testing.T) {
	c := startAPIServer(t, allCRDs, gitops.ApplicationResource, gitops.AppProjectResource, gitops.RolloutResource,
		gitops.AnalysisRunResource, gitops.KustomizationResource, gitops.HelmReleaseResource)
	core, err := typedcorev1.NewForConfig(c.k.Config(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Services("orders").Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orders"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 443}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.apply(t, gitops.AppProjectResource, load(t, "appproject.yaml"))
	app := c.apply(t, gitops.ApplicationResource, load(t, "application.yaml"))
	c.apply(t, gitops.KustomizationResource, load(t, "kustomization.yaml"))
	c.apply(t, gitops.HelmReleaseResource, load(t, "helmrelease.yaml"))
	ro := c.apply(t, gitops.RolloutResource, load(t, "rollout.yaml"))
	run := load(t, "analysisrun.yaml")
	run.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: ro.GetName(), UID: ro.GetUID()}})
	c.apply(t, gitops.AnalysisRunResource, run)

	h := c.watch(t)
	got := h.nextInAnyOrder(evidence.KindSyncStarted, evidence.KindSyncSucceeded, evidence.KindSyncSucceeded, evidence.KindRolloutPromoted)
	if len(h.w.Missing()) != 0 || len(h.w.Forbidden()) != 0 {
		t.Errorf("missing %v, forbidden %v: want every resource followed", h.w.Missing(), h.w.Forbidden())
	}
	if why := h.w.Ready(); why != "" {
		t.Errorf("not ready: %s", why)
	}
	byObject := map[string]evidence.Transition{}
	for _, r := range got {
		p := r.p()
		switch {
		case p.Sync != nil:
			byObject[p.Sync.Object.Kind] = p
		case p.Rollout != nil:
			byObject["Rollout"] = p
		}
	}
	if a := byObject["Application"]; a.Sync == nil || a.Sync.Object.UID != string(app.GetUID()) || a.Sync.Boundary.Project != "payments" {
		t.Errorf("Application record: %+v", a.Sync)
	}
	k := byObject["Kustomization"]
	if k.Sync == nil || !slices.ContainsFunc(k.Sync.Resources, func(o evidence.SyncedObject) bool {
		return o.Kind == "Service" && o.Name == "orders" && o.ServiceType == "LoadBalancer"
	}) {
		t.Errorf("Kustomization record does not carry the Service's type from the cluster: %+v", k.Sync)
	}
	if hr := byObject["HelmRelease"]; hr.Sync == nil || hr.Sync.Controller != "flux/helm-controller" {
		t.Errorf("HelmRelease record: %+v", hr.Sync)
	}
	if r := byObject["Rollout"]; r.Rollout == nil || r.Rollout.AnalysisRun != run.GetName() || len(r.Rollout.Analysis) != 2 {
		t.Errorf("Rollout record: %+v", r.Rollout)
	}

	// The sync finishes: the real API server's watch brings the update.
	syncSucceeded(t, app)
	if _, err := c.admin.Resource(gitops.ApplicationResource).Namespace("argocd").Update(context.Background(), app, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.next(evidence.KindSyncSucceeded)
}

// A cluster with Argo CD but without Argo Rollouts: Rollouts are named as
// not served, and Applications are recorded.
func TestRealAPIServerWithoutRollouts(t *testing.T) {
	c := startAPIServer(t, []string{testenv.ApplicationCRD, testenv.AppProjectCRD},
		gitops.ApplicationResource, gitops.AppProjectResource, gitops.RolloutResource, gitops.AnalysisRunResource)
	c.apply(t, gitops.AppProjectResource, load(t, "appproject.yaml"))
	c.apply(t, gitops.ApplicationResource, load(t, "application.yaml"))
	h := c.watch(t)
	h.next(evidence.KindSyncStarted)
	if got := h.w.Missing(); !sameResources(got, gitops.RolloutResource, gitops.KustomizationResource, gitops.HelmReleaseResource) {
		t.Errorf("missing %v, want Rollouts, Kustomizations and HelmReleases", got)
	}
}

// Flux without its helm-controller: HelmReleases are named as not served,
// and Kustomizations are recorded.
func TestRealAPIServerWithoutHelmReleases(t *testing.T) {
	c := startAPIServer(t, []string{testenv.KustomizationCRD}, gitops.KustomizationResource, gitops.HelmReleaseResource)
	c.apply(t, gitops.KustomizationResource, load(t, "kustomization.yaml"))
	h := c.watch(t)
	if r := h.next(evidence.KindSyncSucceeded)[0].p(); r.Sync.Object.Kind != "Kustomization" {
		t.Errorf("record of %s", r.Sync.Object.Kind)
	}
	if got := h.w.Missing(); !sameResources(got, gitops.HelmReleaseResource, gitops.ApplicationResource, gitops.RolloutResource) {
		t.Errorf("missing %v, want HelmReleases, Applications and Rollouts", got)
	}
}

// RBAC that lets the watcher read Kustomizations but not HelmReleases:
// HelmReleases are named as forbidden, not waited for, and Kustomizations
// are recorded. With every resource forbidden, the watcher refuses to
// start and says why.
func TestRealAPIServerForbidsAResource(t *testing.T) {
	c := startAPIServer(t, []string{testenv.KustomizationCRD, testenv.HelmReleaseCRD}, gitops.KustomizationResource)
	c.apply(t, gitops.KustomizationResource, load(t, "kustomization.yaml"))
	c.apply(t, gitops.HelmReleaseResource, load(t, "helmrelease.yaml"))
	h := c.watch(t)
	if r := h.next(evidence.KindSyncSucceeded)[0].p(); r.Sync.Object.Kind != "Kustomization" {
		t.Errorf("record of %s", r.Sync.Object.Kind)
	}
	if got := h.w.Forbidden(); !sameResources(got, gitops.HelmReleaseResource) {
		t.Errorf("forbidden %v, want HelmReleases", got)
	}
	if why := h.w.Ready(); why != "" {
		t.Errorf("not ready: %s", why)
	}
	if got := metric(t, h.reg, "evident_watch_resources"); got != float64(len(derivers())) {
		t.Errorf("evident_watch_resources sums to %v, want one per resource asked for (%d)", got, len(derivers()))
	}
	if got := metricWith(t, h.reg, "evident_watch_resources", "state", "forbidden"); got != 1 {
		t.Errorf("evident_watch_resources{state=forbidden} = %v, want 1 (HelmReleases)", got)
	}

	nobody, err := dynamic.NewForConfig(c.k.Config(t, "evident-nobody"))
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.k.Config(t, "evident-nobody"))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	_, err = gitops.New(t.Context(), gitops.Config{Client: nobody, Discovery: disc, Derivers: derivers(), Signer: newSigner(t),
		Spool: sp, StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "kustomizations") {
		t.Fatalf("New for a user who may read nothing: %v", err)
	}
}

// The API server goes away (kill -9) and comes back: every watch it served
// ends mid-stream. The informers list and watch again, nothing recorded is
// recorded twice, and what changed while it was away is recorded.
func TestRealAPIServerClosesTheWatch(t *testing.T) {
	c := startAPIServer(t, []string{testenv.ApplicationCRD, testenv.AppProjectCRD}, gitops.ApplicationResource, gitops.AppProjectResource)
	c.apply(t, gitops.AppProjectResource, load(t, "appproject.yaml"))
	app := c.apply(t, gitops.ApplicationResource, load(t, "application.yaml"))
	h := c.watch(t)
	h.next(evidence.KindSyncStarted)

	c.k.Restart()
	h.quiet() // the relist replays the Application: no second sync.started
	syncSucceeded(t, app)
	if _, err := c.admin.Resource(gitops.ApplicationResource).Namespace("argocd").Update(context.Background(), app, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.next(evidence.KindSyncSucceeded)
}

func sameResources(got []schema.GroupVersionResource, want ...schema.GroupVersionResource) bool {
	cmp := func(a, b schema.GroupVersionResource) int { return strings.Compare(a.String(), b.String()) }
	got, want = slices.Clone(got), slices.Clone(want)
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	return slices.Equal(got, want)
}
