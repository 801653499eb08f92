package gitops

import (
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"evident.dev/evident/evidence"
)

// Flux resources.
var (
	KustomizationResource = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	HelmReleaseResource   = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
)

// Flux derives records from a Flux Kustomization or HelmRelease through its
// Ready condition: Unknown (reconciliation in progress) gives sync.started,
// True sync.succeeded at status.lastAppliedRevision (a HelmRelease's latest
// release), False sync.failed at status.lastAttemptedRevision, and a failed
// health check health.degraded. A suspended object is itself recorded, as
// health.degraded with status Suspended: its controller neither applies nor
// corrects it any more, so what runs is no longer what Git says.
type Flux struct {
	Site Site
	// Resource is KustomizationResource or HelmReleaseResource.
	GVR schema.GroupVersionResource
}

// Resource implements Deriver.
func (f *Flux) Resource() schema.GroupVersionResource { return f.GVR }

func (f *Flux) controller() string {
	if f.GVR == HelmReleaseResource {
		return "flux/helm-controller"
	}
	return "flux/kustomize-controller"
}

// fluxObject is what every record of one Flux object shares.
type fluxObject struct {
	o     map[string]any
	helm  bool
	repo  string // the source reference, Kind/namespace/name
	path  string
	sync  evidence.SyncPolicy
	bound *evidence.Boundary
	obj   *evidence.ObjectRef
}

func (f *Flux) object(o map[string]any) *fluxObject {
	fo := &fluxObject{o: o, helm: f.GVR == HelmReleaseResource, obj: objectRef(o)}
	ns := str(o, "metadata", "namespace")
	ref := object(o, "spec", "sourceRef")
	fo.path = str(o, "spec", "path")
	if fo.helm {
		ref = object(o, "spec", "chart", "spec", "sourceRef")
		fo.path = str(o, "spec", "chart", "spec", "chart")
		if ref == nil { // spec.chartRef: an OCIRepository or HelmChart
			ref = object(o, "spec", "chartRef")
		}
	}
	if ref != nil {
		fo.repo = str(ref, "kind") + "/" + firstString(str(ref, "namespace"), ns) + "/" + str(ref, "name")
	}
	suspended := boolean(o, "spec", "suspend")
	fo.sync = evidence.SyncPolicy{Automated: !suspended, SelfHeal: !suspended}
	if fo.helm {
		// Helm releases correct drift only with drift detection enabled.
		fo.sync.SelfHeal = !suspended && str(o, "spec", "driftDetection", "mode") == "enabled"
	} else {
		fo.sync.Prune = boolean(o, "spec", "prune")
	}
	fo.bound = &evidence.Boundary{
		ServiceAccount: str(o, "spec", "serviceAccountName"),
		Destinations:   []string{firstString(str(o, "spec", "targetNamespace"), ns)},
	}
	if kc := str(o, "spec", "kubeConfig", "secretRef", "name"); kc != "" {
		fo.bound.Destinations = []string{"kubeconfig:" + kc + "/" + fo.bound.Destinations[0]}
	}
	return fo
}

// splitRevision reads a Flux revision ("main@sha1:<hex>", "sha256:<hex>",
// "6.5.1") into a branch or tag and a commit.
func splitRevision(rev string) (ref, commit string) {
	ref, digest, found := strings.Cut(rev, "@")
	if !found {
		ref, digest = "", rev
	}
	if c, ok := strings.CutPrefix(digest, "sha1:"); ok && isCommit(c) {
		return ref, c
	}
	if !found {
		return "", ""
	}
	return ref, ""
}

func (f *Flux) base(fo *fluxObject, kind evidence.Kind, revision string, at time.Time) evidence.Transition {
	o := fo.o
	branch, commit := splitRevision(revision)
	ns := str(o, "metadata", "namespace")
	t := evidence.Transition{
		Kind:       kind,
		ChangeID:   changeID(o, firstString(commit, revision)),
		OccurredAt: at,
		Actor:      f.Site.Actor,
		Source:     evidence.Source{Repository: truncate(fo.repo, 512), CommitSHA: commit},
		Target: evidence.Target{
			Environment: f.Site.environment(o),
			Cluster:     f.Site.Cluster,
			Namespace:   label(firstString(str(o, "spec", "targetNamespace"), ns)),
			Application: label(str(o, "metadata", "name")),
		},
	}
	if strings.HasPrefix(branch, "refs/heads/") || (branch != "" && !strings.HasPrefix(branch, "refs/")) {
		t.Source.Branch = truncate(strings.TrimPrefix(branch, "refs/heads/"), 256)
	}
	return t
}

// revisions returns the applied and attempted revisions.
func (fo *fluxObject) revisions() (applied, attempted string) {
	o := fo.o
	applied = str(o, "status", "lastAppliedRevision")
	attempted = str(o, "status", "lastAttemptedRevision")
	if fo.helm {
		// helm.toolkit.fluxcd.io/v2 keeps the releases in status.history,
		// latest first.
		if h := list(o, "status", "history"); len(h) > 0 {
			applied = str(h[0], "chartName") + "@" + str(h[0], "chartVersion")
		}
	}
	return applied, firstString(attempted, applied)
}

// Derive implements Deriver.
func (f *Flux) Derive(o map[string]any, _ func(string) string, _ Lookup) []Emission {
	fo := f.object(o)
	ready := condition(o, "Ready")
	applied, attempted := fo.revisions()
	created := timestamp(o, "metadata", "creationTimestamp")
	var ems []Emission

	if ready != nil {
		at := firstTime(timestamp(ready, "lastTransitionTime"), created)
		status := str(ready, "status")
		kind, rev := evidence.KindSyncStarted, attempted
		switch status {
		case "True":
			kind, rev = evidence.KindSyncSucceeded, applied
		case "False":
			kind = evidence.KindSyncFailed
		}
		em := Emission{Class: "sync", Key: at.Format(time.RFC3339Nano) + "|" + status + "|" + rev}
		t := f.base(fo, kind, rev, at)
		policy := fo.sync
		t.Sync = &evidence.Sync{
			Application: truncate(str(o, "metadata", "name"), 256),
			Revision:    truncate(firstString(rev, "unknown"), 256),
			SourceRepo:  truncate(fo.repo, 512),
			SourcePath:  truncate(fo.path, 512),
			InitiatedBy: "automated",
			Policy:      &policy,
			Message:     truncate(str(ready, "message"), 4096),
			Operation:   "reconcile",
			Controller:  f.controller(),
			Boundary:    fo.bound,
			Object:      fo.obj,
		}
		if kind == evidence.KindSyncSucceeded && !fo.helm {
			t.Sync.Resources = inventory(o)
		}
		em.Records = append(em.Records, t)
		ems = append(ems, em)
	}

	health := Emission{Class: "health", Key: "ok"}
	switch {
	case boolean(o, "spec", "suspend"):
		health.Key = "suspended"
		at := firstTime(timestamp(ready, "lastTransitionTime"), created)
		t := f.base(fo, evidence.KindHealthDegraded, applied, at)
		t.Health = &evidence.Health{Status: "Suspended", Object: fo.obj,
			Message: "reconciliation is suspended (spec.suspend: true): the controller neither applies Git nor corrects drift until it is resumed"}
		health.Records = append(health.Records, t)
	case ready != nil && str(ready, "status") == "False" && isHealthFailure(str(ready, "reason")):
		at := firstTime(timestamp(ready, "lastTransitionTime"), created)
		health.Key = "degraded|" + at.Format(time.RFC3339Nano)
		t := f.base(fo, evidence.KindHealthDegraded, attempted, at)
		t.Health = &evidence.Health{Status: "Degraded", Message: truncate(str(ready, "message"), 4096), Object: fo.obj}
		health.Records = append(health.Records, t)
	}
	return append(ems, health)
}

// isHealthFailure reports whether a Ready=False reason means the applied
// workload is unhealthy (rather than that applying failed).
func isHealthFailure(reason string) bool {
	switch reason {
	case "HealthCheckFailed", "UpgradeFailed", "InstallFailed", "TestFailed", "RollbackFailed":
		return true
	}
	return false
}

// inventory reads a Kustomization's status.inventory: entries with id
// "<namespace>_<name>_<group>_<kind>".
func inventory(o map[string]any) []evidence.SyncedObject {
	var out []evidence.SyncedObject
	for _, e := range list(o, "status", "inventory", "entries") {
		parts := strings.Split(str(e, "id"), "_")
		if len(parts) != 4 || parts[1] == "" || parts[3] == "" {
			continue
		}
		out = append(out, evidence.SyncedObject{Group: parts[2], Kind: parts[3], Namespace: parts[0], Name: parts[1], Status: "Applied"})
	}
	return out
}

// FluxEvent is the JSON body Flux's notification-controller posts to a
// generic or generic-hmac provider (fluxcd/pkg/apis/event/v1beta1.Event).
type FluxEvent struct {
	InvolvedObject struct {
		Kind            string `json:"kind"`
		Namespace       string `json:"namespace"`
		Name            string `json:"name"`
		UID             string `json:"uid"`
		APIVersion      string `json:"apiVersion"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"involvedObject"`
	Severity            string            `json:"severity"`
	Timestamp           time.Time         `json:"timestamp"`
	Message             string            `json:"message"`
	Reason              string            `json:"reason"`
	Metadata            map[string]string `json:"metadata"`
	ReportingController string            `json:"reportingController"`
	ReportingInstance   string            `json:"reportingInstance"`
}

// FromEvent turns a Flux event into emissions: a successful reconciliation
// gives sync.succeeded, a failed one sync.failed, a failed health check
// health.degraded; other events give none (ok false). The emission's key is
// the event's reason and timestamp, so a replayed or re-sent event is not
// recorded twice, and its records are a function of the event alone.
func (f *Flux) FromEvent(ev *FluxEvent) (Emission, bool) {
	var kind evidence.Kind
	switch {
	case ev.Reason == "HealthCheckFailed":
		kind = evidence.KindHealthDegraded
	case ev.Severity == "error":
		kind = evidence.KindSyncFailed
	case ev.Reason == "ReconciliationSucceeded" || ev.Reason == "InstallSucceeded" || ev.Reason == "UpgradeSucceeded":
		kind = evidence.KindSyncSucceeded
	default:
		return Emission{}, false
	}
	io := ev.InvolvedObject
	o := map[string]any{
		"apiVersion": io.APIVersion, "kind": io.Kind,
		"metadata": map[string]any{"namespace": io.Namespace, "name": io.Name, "uid": io.UID},
	}
	rev := firstString(ev.Metadata["revision"], ev.Metadata["Revision"])
	fo := &fluxObject{o: o, helm: io.Kind == "HelmRelease", obj: objectRef(o)}
	at := ev.Timestamp.UTC()
	t := f.base(fo, kind, rev, at)
	if kind == evidence.KindHealthDegraded {
		t.Health = &evidence.Health{Status: "Degraded", Message: truncate(ev.Message, 4096), Object: fo.obj}
	} else {
		t.Sync = &evidence.Sync{
			Application: truncate(io.Name, 256),
			Revision:    truncate(firstString(rev, "unknown"), 256),
			InitiatedBy: "automated",
			Message:     truncate(ev.Message, 4096),
			Operation:   "reconcile",
			Controller:  truncate(firstString(ev.ReportingController, f.controller()), 256),
			Object:      fo.obj,
		}
	}
	class := "event:" + ev.Reason
	return Emission{Class: class, Key: at.Format(time.RFC3339Nano), Records: []evidence.Transition{t}}, true
}
