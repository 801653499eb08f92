package gitops_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"

	"evident.dev/evident/evidence"
	"evident.dev/evident/runners/gitops"
	"evident.dev/evident/runners/spool"
)

// serving is discovery for an API server that serves exactly gvrs (client-go's
// fake discovery: no API server can run in these tests).
func serving(gvrs ...schema.GroupVersionResource) *fakediscovery.FakeDiscovery {
	byGV := map[string]*metav1.APIResourceList{}
	var lists []*metav1.APIResourceList
	for _, r := range gvrs {
		gv := r.GroupVersion().String()
		if byGV[gv] == nil {
			byGV[gv] = &metav1.APIResourceList{GroupVersion: gv}
			lists = append(lists, byGV[gv])
		}
		byGV[gv].APIResources = append(byGV[gv].APIResources, metav1.APIResource{Name: r.Resource})
	}
	return &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{Resources: lists}}
}

// A cluster with Argo CD but without Argo Rollouts (or Flux): the watcher
// skips what is not served, says so, and records Applications; before, it
// waited forever for caches that could not sync.
func TestWatchesOnlyServedResources(t *testing.T) {
	app := load(t, "application.yaml")
	cluster := newCluster(load(t, "appproject.yaml"), app)
	h := startWith(t, cluster, newSigner(t), t.TempDir(), func(c *gitops.Config) {
		c.Discovery = serving(gitops.ApplicationResource, gitops.AppProjectResource)
	})
	if got := h.next(evidence.KindSyncStarted)[0].p(); got.Target.Application != "orders-prod-eu-1" {
		t.Fatalf("sync.started of %+v", got.Target)
	}
	if why := h.w.Ready(); why != "" {
		t.Errorf("the watcher records, yet says it is not ready: %s", why)
	}
	missing := h.w.Missing()
	if len(missing) != 3 {
		t.Fatalf("missing resources %v, want Kustomizations, HelmReleases and Rollouts", missing)
	}
}

// A cluster serving none of them is refused at once, naming them.
func TestRefusesAClusterWithoutTheController(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	_, err = gitops.New(t.Context(), gitops.Config{Client: newCluster(), Discovery: serving(), Derivers: derivers(), Signer: newSigner(t),
		Spool: sp, StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "none of the resources to watch can be watched (not served:") || !strings.Contains(err.Error(), "applications") {
		t.Fatalf("New on a cluster without the controllers: %v", err)
	}
}
