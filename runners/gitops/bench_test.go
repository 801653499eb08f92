package gitops_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"evident.dev/evident/runners/gitops"
	"evident.dev/evident/runners/spool"
)

// BenchmarkApplicationUpdates measures the watcher from Argo CD Application
// updates to signed records fsynced in the spool and drained from it. Every
// update is a new, finished sync operation of one of 200 Applications, so it
// yields two records (sync.started and sync.succeeded) unless a later update
// of the same Application replaces it in the queue first (records/update
// below 2). It reports updates/s, records/s, drain-ms (how long after the
// last update the last record was delivered: small means the watcher kept
// up) and the peak heap in use, which stays flat as b.N grows because the
// queue holds at most one state per object and the spool is on disk.
//
//   - informer: updates written to client-go's fake dynamic client, which
//     the informers list and watch as they would an API server, offered at
//     1,000/s in bursts of 10 through a watch that, like an API server,
//     holds the writer back when the watcher falls behind (updates/s then
//     drops below 1,000);
//
//   - observe: the same Applications handed to Watcher.Observe (the webhook
//     path: queue, derive, sign, spool, state file) as fast as they come.
//
//     go test ./runners/gitops -run '^$' -bench ApplicationUpdates -benchtime 20000x
func BenchmarkApplicationUpdates(b *testing.B) {
	b.Run("informer", func(b *testing.B) { benchUpdates(b, true) })
	b.Run("observe", func(b *testing.B) { benchUpdates(b, false) })
}

func benchUpdates(b *testing.B, informer bool) {
	const apps = 200
	template := load(b, "application.yaml")
	syncSucceeded(b, template)
	objs := make([]*unstructured.Unstructured, apps)
	for i := range objs {
		o := template.DeepCopy()
		o.SetName(fmt.Sprintf("app-%03d", i))
		o.SetUID(types.UID(fmtUID(i)))
		o.SetAnnotations(nil)
		objs[i] = o
	}
	cluster := newCluster(objs...)
	// The fake's own watch buffers 100 events and panics when full; an API
	// server holds a slow watcher back instead, as this blocking watch does.
	apiWatch := watch.NewFakeWithChanSize(100, true)
	cluster.PrependWatchReactor("applications", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, apiWatch, nil
	})
	dir := b.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	w, err := gitops.New(b.Context(), gitops.Config{Client: cluster, Derivers: []gitops.Deriver{&gitops.ArgoCD{Site: site}},
		Signer: newSigner(b), Spool: sp, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var delivered atomic.Int64
	errs := make(chan error, 2)
	go func() { errs <- w.Run(ctx) }()
	go func() {
		errs <- sp.Deliver(ctx, func(context.Context, []byte) error { delivered.Add(1); return nil })
	}()
	// The initial list: two records per application.
	waitDelivered(b, &delivered, 2*apps)

	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	base := time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC)
	before := delivered.Load()
	b.ResetTimer()
	start := time.Now()
	const rate, burst = 1000, 10
	for i := range b.N {
		if informer && i%burst == 0 {
			if ahead := time.Until(start.Add(time.Duration(i) * time.Second / rate)); ahead > 0 {
				// Real time: updates are offered at 1,000/s, the rate the benchmark measures the watcher against.
				time.Sleep(ahead)
			}
		}
		o := objs[i%apps]
		at := base.Add(time.Duration(i) * time.Second)
		op := map[string]any{
			"operation": map[string]any{"sync": map[string]any{"revision": rev2}, "initiatedBy": map[string]any{"automated": true}},
			"phase":     "Succeeded", "message": "successfully synced (all tasks run)",
			"startedAt": at.Format(time.RFC3339), "finishedAt": at.Add(500 * time.Millisecond).Format(time.RFC3339),
			"syncResult": map[string]any{"revision": rev2, "resources": []any{
				map[string]any{"version": "v1", "kind": "ConfigMap", "namespace": "orders", "name": "orders-config", "status": "Synced"},
			}},
		}
		if !informer {
			// The watcher keeps the map it is given: hand it a new one.
			obj := maps.Clone(o.Object)
			status := maps.Clone(obj["status"].(map[string]any))
			status["operationState"] = op
			obj["status"] = status
			if err := w.Observe(gitops.ApplicationResource, obj); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if err := unstructured.SetNestedField(o.Object, op, "status", "operationState"); err != nil {
			b.Fatal(err)
		}
		update(b, cluster, gitops.ApplicationResource, o)
		apiWatch.Modify(o.DeepCopy())
		if i%1000 == 0 {
			cluster.ClearActions() // the fake client logs every call it serves
		}
	}
	lastUpdate := time.Now()
	// Updates to one object that arrive faster than they are handled are
	// coalesced (only the latest state matters), so wait for the last state
	// of every application rather than for 2 × b.N records.
	deadline := time.Now().Add(2 * time.Minute)
	last, lastChange := delivered.Load(), time.Now()
	for time.Since(lastChange) < 500*time.Millisecond || sp.Pending() > 0 {
		// Real time: drained means quiet for half a second; knowing which record is last would mean decoding each on the measured path.
		time.Sleep(10 * time.Millisecond)
		if n := delivered.Load(); n != last {
			last, lastChange = n, time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatal("records still arriving after 2 minutes")
		}
	}
	elapsed := lastChange.Sub(start)
	sent := time.Since(start) - time.Since(lastUpdate)
	b.StopTimer()
	close(stopSampling)
	records := delivered.Load() - before
	b.ReportMetric(float64(b.N)/sent.Seconds(), "updates/s")
	b.ReportMetric(lastChange.Sub(lastUpdate).Seconds()*1000, "drain-ms")
	b.ReportMetric(float64(records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(records)/float64(b.N), "records/update")
	cancel()
	for range 2 {
		if err := <-errs; err != nil && !errors.Is(err, context.Canceled) {
			b.Fatal(err)
		}
	}
}

func fmtUID(i int) string { return fmt.Sprintf("5f0c1f9e-3b7a-4d2e-9c41-%012d", i) }

func waitDelivered(b *testing.B, n *atomic.Int64, want int64) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d records delivered, want %d", n.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
