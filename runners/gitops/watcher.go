// Package gitops turns the state of GitOps-managed Kubernetes objects into
// signed transition records: Argo CD Applications (sync.started,
// sync.succeeded, sync.failed, health.degraded, drift.detected,
// drift.reconciled), Flux Kustomizations and HelmReleases (sync.*, and
// health.degraded for failed health checks and for suspension), and Argo
// Rollouts (rollout.promoted, rollout.aborted with the AnalysisRun's metric
// queries and results). See docs/gitops.md.
//
// A Watcher follows objects with client-go dynamic informers. Records are a
// function of the object alone (timestamps come from the object's status,
// never from the watcher's clock), signed with the watcher's key
// (deterministic ed25519 signatures), written to a durable spool, and posted
// in order by the spool. A restart therefore re-derives byte-identical
// envelopes, which the ledger answers with the original receipts; and a small
// state file of the last state turned into records per object keeps a
// restart from re-emitting records whose content rests on a time that moved.
// On start every object is replayed as an add, so what changed while the
// watcher was down is recorded: no gaps, no duplicates.
package gitops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"evident.dev/evident/evidence"
	"evident.dev/evident/runners/spool"
)

// Names the platform may put on GitOps objects.
const (
	// AnnotationChangeID carries the change the object's current revision
	// belongs to (the changeId of its records).
	AnnotationChangeID = "evident.dev/change-id"
	// LabelEnvironment overrides the watcher's default environment.
	LabelEnvironment = "evident.dev/environment"
)

// Site is where a watcher runs and who it is.
type Site struct {
	Environment string // target.environment unless the object's evident.dev/environment label says otherwise
	Cluster     string // this cluster's name, as the trust configuration scopes it
	Actor       string // the watcher's identity, the records' actor
}

func (s Site) environment(o map[string]any) string {
	if env := str(o, "metadata", "labels", LabelEnvironment); env != "" {
		return env
	}
	return s.Environment
}

// Emission is what a deriver makes of one class of an object's state
// ("sync", "health", "drift", "rollout"): Key identifies the state, and
// Records are emitted when Key differs from the last one emitted for the
// object and class. Records may be empty (a healthy state is remembered, so
// that the next degradation is recorded, but is not itself a record).
type Emission struct {
	Class   string
	Key     string
	Records []evidence.Transition
}

// Lookup reads other objects from the watcher's caches. It answers nothing
// for resources the watcher does not follow (webhook mode).
type Lookup interface {
	Get(gvr schema.GroupVersionResource, namespace, name string) (map[string]any, bool)
	List(gvr schema.GroupVersionResource, namespace string) []map[string]any
}

// A Deriver turns one resource type into records. Derive must be a function
// of obj, prev and what lk returns: no clocks, no randomness.
type Deriver interface {
	Resource() schema.GroupVersionResource
	// Derive returns the emissions of obj's current state. prev returns the
	// key last emitted for a class.
	Derive(obj map[string]any, prev func(class string) string, lk Lookup) []Emission
}

// Related is implemented by derivers whose records also read other resources
// (AppProjects, AnalysisRuns): the watcher follows those too, and a change of
// one re-derives the owners Owner names.
type Related interface {
	Related() []Relation
}

// Relation is a resource a deriver reads.
type Relation struct {
	Resource schema.GroupVersionResource
	// Owner names the primary object to re-derive when obj changes; nil or
	// ok=false re-derives nothing.
	Owner func(obj map[string]any) (namespace, name string, ok bool)
}

// Signer signs a transition into a DSSE envelope (client.Signer).
type Signer interface {
	Sign(t evidence.Transition, subjects ...evidence.Subject) ([]byte, error)
}

// Spool takes signed envelopes durably, in order (spool.Spool).
type Spool interface {
	Append(records ...[]byte) error
}

// Config configures a Watcher.
type Config struct {
	// Client is the Kubernetes API; nil runs no informers (webhook mode:
	// objects arrive through Observe and Emit only).
	Client dynamic.Interface
	// Discovery, with Client, says which resources the API server serves:
	// a deriver whose resource is not served (Argo Rollouts not installed,
	// an older Flux) is skipped, with a warning, instead of waiting
	// forever for a cache that cannot sync. Nil watches every deriver.
	Discovery Discovery
	Namespace string // "" follows all namespaces
	Derivers  []Deriver
	Signer    Signer
	Spool     Spool
	StateDir  string // where the per-object state file lives
	Logger    *slog.Logger
	// Registerer receives the watcher's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Resync     time.Duration // informer resync period; 0 = none
	MaxBatch   int           // records per spool write; default 512
	// FullRetry is how long to wait before retrying a full spool; default 1s.
	FullRetry time.Duration
}

// Discovery is the part of the API server's discovery the watcher uses
// (discovery.DiscoveryInterface).
type Discovery interface {
	ServerResourcesForGroupVersion(groupVersion string) (*metav1.APIResourceList, error)
}

// Watcher follows GitOps objects and records their transitions.
type Watcher struct {
	cfg       Config
	log       *slog.Logger
	mem       *memory
	queue     *queue
	factory   dynamicinformer.DynamicSharedInformerFactory
	byGVR     map[schema.GroupVersionResource]Deriver
	missing   []schema.GroupVersionResource // asked for, not served
	forbidden []schema.GroupVersionResource // served, but RBAC refuses list or watch
	synced    atomic.Bool                   // the informers' caches have synced

	records *prometheus.CounterVec
	// resources: 1 for each resource asked for, by whether it is followed.
	resources *prometheus.GaugeVec
	invalid   prometheus.Counter
	observed  prometheus.Counter

	pending [][]byte // signed, not yet spooled; owned by the event loop
}

// New prepares a watcher; Run starts it. With a Client, New asks the API
// server which of the resources to follow it serves and lets this watcher
// list and watch, and fails when that leaves none.
func New(ctx context.Context, cfg Config) (*Watcher, error) {
	if cfg.Signer == nil || cfg.Spool == nil || cfg.StateDir == "" {
		return nil, errors.New("gitops: Signer, Spool and StateDir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.FullRetry <= 0 {
		cfg.FullRetry = time.Second
	}
	mem, err := openMemory(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		cfg: cfg, log: cfg.Logger, mem: mem, queue: newQueue(),
		byGVR:    map[schema.GroupVersionResource]Deriver{},
		records:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_watch_records_total", Help: "Signed records written to the spool, by kind."}, []string{"kind"}),
		invalid:  prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_watch_invalid_records_total", Help: "Derived records that failed validation and were not sent (logged)."}),
		observed: prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_watch_observed_total", Help: "Object states examined."}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "evident_watch_resources",
			Help: "Resources the watcher was asked to follow, by state: watched, not-served (its controller is not installed) or forbidden (RBAC)."},
			[]string{"resource", "state"}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(w.records, w.invalid, w.observed, w.resources)
	}
	for _, d := range cfg.Derivers {
		w.byGVR[d.Resource()] = d
	}
	if cfg.Client != nil {
		w.factory = dynamicinformer.NewFilteredDynamicSharedInformerFactory(cfg.Client, cfg.Resync, cfg.Namespace, nil)
		watched := 0
		for _, d := range cfg.Derivers {
			ok, err := w.watchable(ctx, d.Resource())
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			w.follow(ctx, d)
			watched++
		}
		if watched == 0 {
			return nil, fmt.Errorf("gitops: none of the resources to watch can be watched (not served: %v; forbidden: %v): is the GitOps controller installed, and may this watcher list and watch its resources?", w.missing, w.forbidden)
		}
	}
	return w, nil
}

// watchable says whether the API server serves gvr and lets this watcher
// list and watch it, noting and logging why not. Without the check, an
// informer of such a resource retries for ever and its cache never syncs.
func (w *Watcher) watchable(ctx context.Context, gvr schema.GroupVersionResource) (bool, error) {
	ok, err := w.served(gvr)
	if err != nil {
		return false, err
	}
	if !ok {
		w.missing = append(w.missing, gvr)
		w.resources.WithLabelValues(gvr.Resource, "not-served").Set(1)
		w.log.Warn("the API server does not serve this resource: not watched (is its controller installed?)", "resource", gvr.String())
		return false, nil
	}
	verb, err := w.permitted(ctx, gvr)
	if apierrors.IsForbidden(err) {
		w.forbidden = append(w.forbidden, gvr)
		w.resources.WithLabelValues(gvr.Resource, "forbidden").Set(1)
		w.log.Error("forbidden to "+verb+" this resource: not watched (grant the watcher get, list and watch on it)", "resource", gvr.String(), "err", err)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("gitops: %s %s: %w", verb, gvr, err)
	}
	w.resources.WithLabelValues(gvr.Resource, "watched").Set(1)
	return true, nil
}

// permitted lists and opens a watch on gvr in the watched namespace, as the
// informer will, and returns the first verb that failed.
func (w *Watcher) permitted(ctx context.Context, gvr schema.GroupVersionResource) (string, error) {
	rc := w.cfg.Client.Resource(gvr).Namespace(w.cfg.Namespace)
	if _, err := rc.List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return "list", err
	}
	timeout := int64(1)
	wi, err := rc.Watch(ctx, metav1.ListOptions{TimeoutSeconds: &timeout})
	if err != nil {
		return "watch", err
	}
	wi.Stop()
	return "", nil
}

// served asks discovery whether the API server serves gvr.
func (w *Watcher) served(gvr schema.GroupVersionResource) (bool, error) {
	if w.cfg.Discovery == nil {
		return true, nil
	}
	list, err := w.cfg.Discovery.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("gitops: discovering %s: %w", gvr.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true, nil
		}
	}
	return false, nil
}

// Missing lists the resources the watcher was asked to follow that the API
// server does not serve.
func (w *Watcher) Missing() []schema.GroupVersionResource { return w.missing }

// Forbidden lists the resources the API server serves but does not let
// this watcher list or watch: they are not followed.
func (w *Watcher) Forbidden() []schema.GroupVersionResource { return w.forbidden }

// Ready says why the watcher is not yet following its resources (their
// caches have not synced), or "" once it is.
func (w *Watcher) Ready() string {
	if !w.synced.Load() {
		return "the watcher's caches of the API server's objects have not synced yet"
	}
	return ""
}

// follow registers the informers of a deriver's resource and relations.
func (w *Watcher) follow(ctx context.Context, d Deriver) {
	gvr := d.Resource()
	enqueue := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			w.queue.add(item{gvr: gvr, namespace: u.GetNamespace(), name: u.GetName()})
		}
	}
	_, _ = w.factory.ForResource(gvr).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.queue.add(item{gvr: gvr, namespace: u.GetNamespace(), name: u.GetName(), forget: string(u.GetUID()), deleted: true})
			}
		},
	})
	rel, ok := d.(Related)
	if !ok {
		return
	}
	for _, r := range rel.Related() {
		if ok, err := w.served(r.Resource); err != nil || !ok {
			// Related objects only wake the owner sooner; without them the
			// owner's own updates still arrive.
			w.log.Warn("a related resource is not watched", "resource", r.Resource.String(), "err", err)
			continue
		}
		if verb, err := w.permitted(ctx, r.Resource); err != nil {
			w.log.Warn("a related resource is not watched: cannot "+verb+" it", "resource", r.Resource.String(), "err", err)
			continue
		}
		inf := w.factory.ForResource(r.Resource).Informer()
		if r.Owner == nil {
			continue
		}
		owner := r.Owner
		related := func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				if ns, name, ok := owner(u.Object); ok {
					w.queue.add(item{gvr: gvr, namespace: ns, name: name})
				}
			}
		}
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    related,
			UpdateFunc: func(_, obj any) { related(obj) },
		})
	}
}

// Observe derives records from an object that arrived another way (an Argo
// CD notification carrying the Application): the same deriver, the same
// records as the informer path, so either path's records deduplicate the
// other's. It returns once the object is queued.
func (w *Watcher) Observe(gvr schema.GroupVersionResource, obj map[string]any) error {
	if _, ok := w.byGVR[gvr]; !ok {
		return fmt.Errorf("gitops: no deriver for %s", gvr)
	}
	u := unstructured.Unstructured{Object: obj}
	if u.GetUID() == "" || u.GetName() == "" {
		return errors.New("gitops: the object has no metadata.uid or metadata.name")
	}
	w.queue.add(item{gvr: gvr, namespace: u.GetNamespace(), name: u.GetName(), obj: obj})
	return nil
}

// Emit queues emissions about an object that only an event describes (a
// Flux notification): uid and the emission's class and key decide, as for
// derived states, whether its records are new.
func (w *Watcher) Emit(uid string, ems ...Emission) {
	w.queue.add(item{key: "event/" + uid, uid: uid, emissions: ems})
}

// Run starts the informers (when there is a client), waits for their caches,
// and turns states into records until ctx is done. It returns ctx's error, or
// the spool's or state file's storage error.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.mem.close()
	if w.factory != nil {
		w.factory.Start(ctx.Done())
		defer w.factory.Shutdown()
		for gvr, ok := range w.factory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("gitops: the cache of %s did not sync", gvr)
			}
		}
		w.log.Info("watching", "resources", len(w.byGVR)-len(w.missing), "namespace", w.cfg.Namespace)
	}
	w.synced.Store(true)
	stop := context.AfterFunc(ctx, w.queue.close)
	defer stop()
	for {
		it, ok := w.queue.get()
		if !ok {
			return ctx.Err()
		}
		w.handle(ctx, it)
		// Take what else is queued into the same spool write.
		for len(w.pending) < w.cfg.MaxBatch {
			it, ok := w.queue.tryGet()
			if !ok {
				break
			}
			w.handle(ctx, it)
		}
		if err := w.flush(ctx); err != nil {
			return err
		}
	}
}

// handle derives one queued object's records into w.pending.
func (w *Watcher) handle(ctx context.Context, it item) {
	if it.forget != "" {
		w.mem.forget(it.forget)
		if it.deleted {
			return
		}
	}
	var uid string
	var ems []Emission
	switch {
	case it.emissions != nil:
		uid, ems = it.uid, it.emissions
	default:
		d := w.byGVR[it.gvr]
		obj := it.obj
		if obj == nil {
			obj = w.cached(it.gvr, it.namespace, it.name)
			if obj == nil {
				return // deleted since it was queued
			}
		}
		uid = str(obj, "metadata", "uid")
		prev := func(class string) string { return w.mem.get(uid, class) }
		ems = d.Derive(obj, prev, w)
	}
	w.observed.Inc()
	for _, em := range ems {
		if w.mem.get(uid, em.Class) == em.Key {
			continue
		}
		for _, t := range em.Records {
			w.describeServices(ctx, &t)
			env, err := w.cfg.Signer.Sign(t)
			if err != nil {
				w.invalid.Inc()
				w.log.Error("a derived record is invalid and is not sent", "kind", t.Kind, "uid", uid, "err", err)
				continue
			}
			w.pending = append(w.pending, env)
			w.records.WithLabelValues(string(t.Kind)).Inc()
		}
		w.mem.set(uid, em.Class, em.Key)
	}
}

// flush writes the pending records to the spool, then the state file. A full
// spool is retried until it has room (the spool logs and counts each
// refusal); meanwhile no new states are taken, and the informers coalesce
// updates per object, so memory stays bounded.
func (w *Watcher) flush(ctx context.Context) error {
	for len(w.pending) > 0 {
		err := w.cfg.Spool.Append(w.pending...)
		if err == nil {
			clear(w.pending)
			w.pending = w.pending[:0]
			break
		}
		if !errors.Is(err, spool.ErrFull) {
			return fmt.Errorf("gitops: %w", err)
		}
		select {
		case <-ctx.Done():
			// The state file is not written, so these records are derived
			// again at the next start.
			return fmt.Errorf("gitops: stopping with %d records not spooled (the spool is full); they are re-derived at the next start: %w", len(w.pending), ctx.Err())
		case <-time.After(w.cfg.FullRetry):
		}
	}
	return w.mem.flush()
}

// cached reads an object from the informer caches.
func (w *Watcher) cached(gvr schema.GroupVersionResource, namespace, name string) map[string]any {
	obj, ok := w.Get(gvr, namespace, name)
	if !ok {
		return nil
	}
	return obj
}

// Get implements Lookup over the informer caches.
func (w *Watcher) Get(gvr schema.GroupVersionResource, namespace, name string) (map[string]any, bool) {
	if w.factory == nil {
		return nil, false
	}
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	obj, ok, err := w.factory.ForResource(gvr).Informer().GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, false
	}
	return u.Object, true
}

// List implements Lookup over the informer caches.
func (w *Watcher) List(gvr schema.GroupVersionResource, namespace string) []map[string]any {
	if w.factory == nil {
		return nil
	}
	var out []map[string]any
	for _, obj := range w.factory.ForResource(gvr).Informer().GetStore().List() {
		if u, ok := obj.(*unstructured.Unstructured); ok && (namespace == "" || u.GetNamespace() == namespace) {
			out = append(out, u.Object)
		}
	}
	return out
}

// item is one queued piece of work, coalesced by key: a later state of the
// same object replaces an earlier one still waiting, so the queue holds at
// most one entry per object however fast objects change.
type item struct {
	key             string
	gvr             schema.GroupVersionResource
	namespace, name string
	obj             map[string]any // set by Observe; nil reads the cache
	forget          string         // the UID of a deleted object, whose state is dropped
	deleted         bool           // nothing to derive: the object is gone
	uid             string         // Emit's object
	emissions       []Emission     // Emit's emissions
}

type queue struct {
	mu     sync.Mutex
	order  []string
	items  map[string]item
	ready  chan struct{}
	closed bool
}

func newQueue() *queue {
	return &queue{items: map[string]item{}, ready: make(chan struct{}, 1)}
}

func (q *queue) add(it item) {
	if it.key == "" {
		it.key = it.gvr.String() + "|" + it.namespace + "/" + it.name
	}
	q.mu.Lock()
	if prev, ok := q.items[it.key]; ok {
		// Keep the emissions of events: each one is a distinct transition.
		if prev.emissions != nil && it.emissions != nil {
			it.emissions = append(prev.emissions, it.emissions...)
		}
		// An object deleted and created again under the same name: drop the
		// old object's state, then derive the new one.
		if it.forget == "" {
			it.forget = prev.forget
		}
	} else {
		q.order = append(q.order, it.key)
	}
	q.items[it.key] = it
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue) tryGet() (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 || q.closed {
		return item{}, false
	}
	k := q.order[0]
	q.order[0] = ""
	q.order = q.order[1:]
	it := q.items[k]
	delete(q.items, k)
	return it, true
}

// get waits for an item; false once the queue is closed.
func (q *queue) get() (item, bool) {
	for {
		if it, ok := q.tryGet(); ok {
			return it, true
		}
		q.mu.Lock()
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return item{}, false
		}
		<-q.ready
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// serviceResource is the core Service, whose type a sync result omits.
var serviceResource = schema.GroupVersionResource{Version: "v1", Resource: "services"}

// describeServices reads the type of each synced core Service from the
// cluster: a LoadBalancer Service exposes a workload where a ClusterIP one
// does not, and the sync result cannot tell them apart. A Service it cannot
// read (deleted since, or not readable by the watcher) keeps no type, and
// is then not claimed to expose anything.
func (w *Watcher) describeServices(ctx context.Context, t *evidence.Transition) {
	if w.cfg.Client == nil || t.Sync == nil {
		return
	}
	for i := range t.Sync.Resources {
		o := &t.Sync.Resources[i]
		if o.Kind != "Service" || o.Group != "" || o.ServiceType != "" {
			continue
		}
		getCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		svc, err := w.cfg.Client.Resource(serviceResource).Namespace(o.Namespace).Get(getCtx, o.Name, metav1.GetOptions{})
		cancel()
		if err != nil {
			w.log.Warn("cannot read a synced Service's type", "namespace", o.Namespace, "name", o.Name, "err", err)
			continue
		}
		typ, _, _ := unstructured.NestedString(svc.Object, "spec", "type")
		switch typ {
		case "":
			o.ServiceType = "ClusterIP" // the API server's default
		case "ClusterIP", "NodePort", "LoadBalancer", "ExternalName":
			o.ServiceType = typ
		}
	}
}
