package gitops_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"

	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/runners/gitops"
	"evident.dev/evident/runners/spool"
	"evident.dev/evident/verifier"
)

var site = gitops.Site{Environment: "staging", Cluster: "prod-eu-1", Actor: "system:serviceaccount:argocd:evident-watcher"}

func derivers() []gitops.Deriver {
	return []gitops.Deriver{
		&gitops.ArgoCD{Site: site},
		&gitops.Flux{Site: site, GVR: gitops.KustomizationResource},
		&gitops.Flux{Site: site, GVR: gitops.HelmReleaseResource},
		&gitops.Rollouts{Site: site},
	}
}

var listKinds = map[schema.GroupVersionResource]string{
	gitops.ApplicationResource:   "ApplicationList",
	gitops.AppProjectResource:    "AppProjectList",
	gitops.KustomizationResource: "KustomizationList",
	gitops.HelmReleaseResource:   "HelmReleaseList",
	gitops.RolloutResource:       "RolloutList",
	gitops.AnalysisRunResource:   "AnalysisRunList",
}

// load reads a manifest from testdata.
func load(t testing.TB, name string) *unstructured.Unstructured {
	t.Helper()
	y, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return u
}

// newCluster is client-go's fake dynamic client holding objs: no Kubernetes
// API server can run here, and the fake serves list and watch to real
// informers from real object manifests.
func newCluster(objs ...*unstructured.Unstructured) *fake.FakeDynamicClient {
	ro := make([]runtime.Object, len(objs))
	for i, o := range objs {
		ro[i] = o
	}
	return fake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, ro...)
}

func update(t testing.TB, c *fake.FakeDynamicClient, gvr schema.GroupVersionResource, u *unstructured.Unstructured) {
	t.Helper()
	if _, err := c.Resource(gvr).Namespace(u.GetNamespace()).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update %s: %v", u.GetName(), err)
	}
}

func set(t testing.TB, u *unstructured.Unstructured, v any, path ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, v, path...); err != nil {
		t.Fatalf("set %v: %v", path, err)
	}
}

func newSigner(t testing.TB) *client.Signer {
	t.Helper()
	priv, _, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// record is one delivered envelope and its statement.
type record struct {
	env []byte
	st  *evidence.Statement
}

func (r record) p() evidence.Transition { return r.st.Predicate }

// harness runs a watcher whose spool is drained into a channel, standing in
// for the ledger (the e2e tests post to a real server).
type harness struct {
	t        testing.TB
	w        *gitops.Watcher
	sp       *spool.Spool
	reg      *prometheus.Registry
	got      chan record
	cancel   context.CancelFunc
	done     chan error
	delivery chan error
}

func start(t testing.TB, c *fake.FakeDynamicClient, signer gitops.Signer, dir string) *harness {
	t.Helper()
	if c == nil {
		return startWith(t, nil, signer, dir, nil)
	}
	return startWith(t, c, signer, dir, nil)
}

// startWith is start with a configuration change (e.g. a Discovery), on
// any Kubernetes API: client-go's fake, or a real API server.
func startWith(t testing.TB, c dynamic.Interface, signer gitops.Signer, dir string, change func(*gitops.Config)) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	cfg := gitops.Config{Derivers: derivers(), Signer: signer, Spool: sp, StateDir: filepath.Join(dir, "state"), Registerer: reg}
	if c != nil {
		cfg.Client = c
	}
	if change != nil {
		change(&cfg)
	}
	w, err := gitops.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, w: w, sp: sp, reg: reg, got: make(chan record, 1000), cancel: cancel, done: make(chan error, 1), delivery: make(chan error, 1)}
	go func() { h.done <- w.Run(ctx) }()
	go func() {
		h.delivery <- sp.Deliver(ctx, func(_ context.Context, env []byte) error {
			h.got <- record{env: bytes.Clone(env), st: decode(t, env)}
			return nil
		})
	}()
	t.Cleanup(h.stop)
	return h
}

var stopOnce sync.Map

func (h *harness) stop() {
	if _, done := stopOnce.LoadOrStore(h, true); done {
		return
	}
	h.cancel()
	for _, ch := range []chan error{h.done, h.delivery} {
		if err := <-ch; err != nil && !errors.Is(err, context.Canceled) {
			h.t.Errorf("watcher: %v", err)
		}
	}
	h.sp.Close()
}

func decode(t testing.TB, env []byte) *evidence.Statement {
	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Errorf("envelope: %v", err)
		return nil
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Errorf("payload: %v", err)
		return nil
	}
	st, err := evidence.Decode(payload)
	if err != nil {
		t.Errorf("statement: %v", err)
		return nil
	}
	return st
}

// next waits for exactly the given kinds, in order, and then for quiet.
func (h *harness) next(kinds ...evidence.Kind) []record {
	h.t.Helper()
	out := h.collect(kinds)
	if !slices.Equal(kindsOf(out), kinds) {
		h.t.Fatalf("records are %v, want %v", kindsOf(out), kinds)
	}
	return out
}

// nextInAnyOrder waits for records of exactly the given kinds, in any
// order (informers of different resources race), and then for quiet.
func (h *harness) nextInAnyOrder(kinds ...evidence.Kind) []record {
	h.t.Helper()
	out := h.collect(kinds)
	got, want := kindsOf(out), slices.Clone(kinds)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		h.t.Fatalf("records are %v, want %v in any order", kindsOf(out), kinds)
	}
	return out
}

// collect waits for as many records as kinds names, then for quiet.
func (h *harness) collect(kinds []evidence.Kind) []record {
	h.t.Helper()
	var out []record
	for len(out) < len(kinds) {
		select {
		case r := <-h.got:
			out = append(out, r)
		case <-time.After(10 * time.Second):
			h.t.Fatalf("got %d records (%v), want %v", len(out), kindsOf(out), kinds)
		}
	}
	h.quiet()
	return out
}

// quiet fails if another record arrives within half a second.
func (h *harness) quiet() {
	h.t.Helper()
	select {
	case r := <-h.got:
		h.t.Fatalf("unexpected %s record: %+v", r.p().Kind, r.p())
	case <-time.After(500 * time.Millisecond):
	}
}

func kindsOf(rs []record) []evidence.Kind {
	var ks []evidence.Kind
	for _, r := range rs {
		ks = append(ks, r.p().Kind)
	}
	return ks
}

func metric(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	return metricWith(t, g, name, "", "")
}

// metricWith sums the series of a counter or gauge, only those whose label
// is value when label is not "".
func metricWith(t testing.TB, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == label && l.GetValue() == value }) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
