package gitops

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"evident.dev/evident/evidence"
)

// Argo CD resources (argoproj.io/v1alpha1).
var (
	ApplicationResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	AppProjectResource  = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "appprojects"}
)

// ArgoCD derives records from Argo CD Applications:
//
//   - status.operationState (a sync operation) gives sync.started when it
//     starts, and sync.succeeded or sync.failed when it ends (with
//     sync.started too if the watcher never saw it running), with the
//     revision, source, destination, initiating user, resources touched and
//     pruned;
//   - status.health Degraded gives health.degraded;
//   - status.sync OutOfSync at the revision last synced gives drift.detected
//     (live state differs from Git), and the return to Synced gives
//     drift.reconciled. OutOfSync because Git moved to a new revision is a
//     pending sync, not drift, and gives nothing.
//
// Every record carries the Application's controls: sync, prune and self-heal
// policy, ignored differences, and its AppProject's boundary.
type ArgoCD struct {
	Site Site
	// Controller is the controller identity recorded; default
	// "argocd/argocd-application-controller".
	Controller string
}

// Resource implements Deriver.
func (a *ArgoCD) Resource() schema.GroupVersionResource { return ApplicationResource }

// Related implements Related: AppProjects are read for the boundary.
func (a *ArgoCD) Related() []Relation {
	return []Relation{{Resource: AppProjectResource}}
}

func (a *ArgoCD) controller() string {
	if a.Controller != "" {
		return a.Controller
	}
	return "argocd/argocd-application-controller"
}

// argoApp is what every record of one Application shares.
type argoApp struct {
	o       map[string]any
	repo    string
	path    string
	target  evidence.Target
	policy  *evidence.SyncPolicy
	ignored []evidence.IgnoredChange
	bound   *evidence.Boundary
	obj     *evidence.ObjectRef
	ctrl    string
}

func (a *ArgoCD) app(o map[string]any, lk Lookup) *argoApp {
	src := object(o, "spec", "source")
	if src == nil {
		if srcs := list(o, "spec", "sources"); len(srcs) > 0 {
			src = srcs[0] // multi-source: the first source names the application's repository
		}
	}
	dest := object(o, "spec", "destination")
	cluster := label(str(dest, "name"))
	if cluster == "" {
		server := str(dest, "server")
		if server == "" || server == "https://kubernetes.default.svc" {
			cluster = a.Site.Cluster
		} else {
			cluster = label(server)
		}
	}
	app := &argoApp{
		o:    o,
		repo: str(src, "repoURL"),
		path: firstString(str(src, "path"), str(src, "chart")),
		target: evidence.Target{
			Environment: a.Site.environment(o),
			Cluster:     cluster,
			Namespace:   label(str(dest, "namespace")),
			Application: label(str(o, "metadata", "name")),
		},
		obj:  objectRef(o),
		ctrl: a.controller(),
	}
	if sp := object(o, "spec", "syncPolicy"); sp != nil {
		auto := object(sp, "automated")
		app.policy = &evidence.SyncPolicy{
			Automated: auto != nil && !(field(auto, "enabled") == false),
			Prune:     boolean(auto, "prune"),
			SelfHeal:  boolean(auto, "selfHeal"),
		}
	} else {
		app.policy = &evidence.SyncPolicy{}
	}
	for _, ig := range list(o, "spec", "ignoreDifferences") {
		ptrs := strings_(ig, "jsonPointers")
		ptrs = append(ptrs, strings_(ig, "jqPathExpressions")...)
		app.ignored = append(app.ignored, evidence.IgnoredChange{Group: str(ig, "group"), Kind: str(ig, "kind"), JSONPointers: ptrs})
	}
	project := firstString(str(o, "spec", "project"), "default")
	app.bound = &evidence.Boundary{Project: project}
	if p, ok := lk.Get(AppProjectResource, str(o, "metadata", "namespace"), project); ok {
		app.bound.SourceRepos = strings_(p, "spec", "sourceRepos")
		for _, d := range list(p, "spec", "destinations") {
			app.bound.Destinations = append(app.bound.Destinations, firstString(str(d, "name"), str(d, "server"))+"/"+str(d, "namespace"))
		}
		for _, r := range list(p, "spec", "clusterResourceWhitelist") {
			app.bound.ClusterResources = append(app.bound.ClusterResources, str(r, "group")+"/"+str(r, "kind"))
		}
	}
	return app
}

// deployedRevision is the revision the live state was last synced to: the
// finished operation's, else the latest history entry's; "" while an
// operation runs.
func deployedRevision(o map[string]any) string {
	op := object(o, "status", "operationState")
	switch str(op, "phase") {
	case "Running", "Terminating":
		return ""
	case "Succeeded":
		return str(op, "syncResult", "revision")
	}
	if h := list(o, "status", "history"); len(h) > 0 {
		return str(h[len(h)-1], "revision")
	}
	return ""
}

func firstString(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// base is the record shared by every kind, at a revision.
func (app *argoApp) base(kind evidence.Kind, actor string, revision string, at time.Time) evidence.Transition {
	t := evidence.Transition{
		Kind:       kind,
		ChangeID:   changeID(app.o, revision),
		OccurredAt: at,
		Actor:      actor,
		Source:     evidence.Source{Repository: truncate(app.repo, 512)},
		Target:     app.target,
	}
	if isCommit(revision) {
		t.Source.CommitSHA = revision
	}
	if tr := str(app.o, "spec", "source", "targetRevision"); tr != "" && tr != "HEAD" && !isCommit(tr) {
		t.Source.Branch = truncate(tr, 256)
	}
	return t
}

func (app *argoApp) sync(revision string) *evidence.Sync {
	return &evidence.Sync{
		Application: truncate(str(app.o, "metadata", "name"), 256),
		Revision:    truncate(firstString(revision, "unknown"), 256),
		SourceRepo:  truncate(app.repo, 512),
		SourcePath:  truncate(app.path, 512),
		Policy:      app.policy,
		Ignored:     app.ignored,
		Controller:  app.ctrl,
		Boundary:    app.bound,
		Object:      app.obj,
	}
}

// Derive implements Deriver.
func (a *ArgoCD) Derive(o map[string]any, prev func(string) string, lk Lookup) []Emission {
	app := a.app(o, lk)
	var ems []Emission
	if em, ok := a.syncOperation(app, prev("sync")); ok {
		ems = append(ems, em)
	}
	ems = append(ems, a.health(app))
	if em, ok := a.drift(app, prev("drift")); ok {
		ems = append(ems, em)
	}
	return ems
}

// syncOperation follows status.operationState. Its key is the operation's
// start time and its stage (running, succeeded, failed).
func (a *ArgoCD) syncOperation(app *argoApp, prev string) (Emission, bool) {
	op := object(app.o, "status", "operationState")
	if op == nil {
		return Emission{}, false
	}
	started := timestamp(op, "startedAt")
	if started.IsZero() {
		return Emission{}, false
	}
	stage := "running"
	switch str(op, "phase") {
	case "Succeeded":
		stage = "succeeded"
	case "Failed", "Error":
		stage = "failed"
	}
	startKey := started.Format(time.RFC3339Nano)
	em := Emission{Class: "sync", Key: startKey + "|" + stage}

	revision := firstString(str(op, "syncResult", "revision"), str(op, "operation", "sync", "revision"), str(app.o, "status", "sync", "revision"))
	initiatedBy := str(op, "operation", "initiatedBy", "username")
	if boolean(op, "operation", "initiatedBy", "automated") {
		initiatedBy = "automated"
	}
	// sync.started is recorded unless it was while the operation ran.
	if sawStart := stage != "running" && prev == startKey+"|running"; !sawStart {
		t := app.base(evidence.KindSyncStarted, a.Site.Actor, revision, started)
		t.Sync = app.sync(revision)
		t.Sync.InitiatedBy = truncate(initiatedBy, 256)
		t.Sync.Operation = "sync"
		em.Records = append(em.Records, t)
	}
	if stage == "running" {
		return em, true
	}
	finished := firstTime(timestamp(op, "finishedAt"), started)
	kind := evidence.KindSyncSucceeded
	if stage == "failed" {
		kind = evidence.KindSyncFailed
	}
	t := app.base(kind, a.Site.Actor, revision, finished)
	t.Sync = app.sync(revision)
	t.Sync.InitiatedBy = truncate(initiatedBy, 256)
	t.Sync.Operation = "sync"
	t.Sync.Message = truncate(str(op, "message"), 4096)
	for _, r := range list(op, "syncResult", "resources") {
		status := str(r, "status")
		name := str(r, "name")
		if name == "" || str(r, "kind") == "" {
			continue
		}
		if status == "Pruned" {
			t.Sync.Pruned = append(t.Sync.Pruned, truncate(resourceName(str(r, "group"), str(r, "kind"), str(r, "namespace"), name), 512))
		}
		t.Sync.Resources = append(t.Sync.Resources, evidence.SyncedObject{
			Group: str(r, "group"), Kind: str(r, "kind"), Namespace: str(r, "namespace"), Name: name, Status: truncate(status, 128),
		})
	}
	em.Records = append(em.Records, t)
	return em, true
}

// health follows status.health: Degraded is recorded once per degradation.
func (a *ArgoCD) health(app *argoApp) Emission {
	h := object(app.o, "status", "health")
	status := str(h, "status")
	em := Emission{Class: "health", Key: status}
	if status != "Degraded" && status != "Missing" {
		return em
	}
	revision := str(app.o, "status", "sync", "revision")
	at := firstTime(timestamp(h, "lastTransitionTime"), timestamp(app.o, "status", "reconciledAt"),
		timestamp(app.o, "status", "operationState", "finishedAt"), timestamp(app.o, "metadata", "creationTimestamp"))
	msg := str(h, "message")
	if msg == "" {
		// Older Argo CD versions keep the message on the resources only.
		var parts []string
		for _, r := range list(app.o, "status", "resources") {
			if str(r, "health", "status") == status {
				parts = append(parts, str(r, "kind")+"/"+str(r, "name")+": "+str(r, "health", "message"))
			}
		}
		msg = strings.Join(parts, "; ")
	}
	t := app.base(evidence.KindHealthDegraded, a.Site.Actor, revision, at)
	t.Health = &evidence.Health{Status: status, Message: truncate(msg, 4096), Object: app.obj}
	em.Records = append(em.Records, t)
	return em
}

// drift follows status.sync. Its key is "out|<revision>|<resources>" while
// the live state differs from the revision last synced and "in|<revision>"
// once it matches.
func (a *ArgoCD) drift(app *argoApp, prev string) (Emission, bool) {
	s := object(app.o, "status", "sync")
	revision := str(s, "revision")
	at := firstTime(timestamp(app.o, "status", "reconciledAt"), timestamp(app.o, "status", "operationState", "finishedAt"),
		timestamp(app.o, "metadata", "creationTimestamp"))
	switch str(s, "status") {
	case "OutOfSync":
		if deployedRevision(app.o) != revision {
			return Emission{}, false // Git moved on, or a sync is under way: not drift
		}
		var res []string
		for _, r := range list(app.o, "status", "resources") {
			if str(r, "status") == "OutOfSync" {
				res = append(res, truncate(resourceName(str(r, "group"), str(r, "kind"), str(r, "namespace"), str(r, "name")), 512))
			}
		}
		slices.Sort(res)
		if len(res) == 0 {
			res = []string{"Application/" + str(app.o, "metadata", "name")}
		}
		em := Emission{Class: "drift", Key: "out|" + revision + "|" + strings.Join(res, ",")}
		t := app.base(evidence.KindDriftDetected, a.Site.Actor, revision, at)
		t.Drift = &evidence.Drift{
			Resources: res, DetectedBy: app.ctrl, Revision: truncate(revision, 256), Object: app.obj,
			Summary: truncate("live state differs from revision "+revision+" in "+strings.Join(res, ", "), 4096),
		}
		em.Records = append(em.Records, t)
		return em, true
	case "Synced":
		em := Emission{Class: "drift", Key: "in|" + revision}
		rest, wasOut := strings.CutPrefix(prev, "out|")
		if !wasOut {
			return em, true
		}
		driftRev, list, _ := strings.Cut(rest, "|")
		method, summary := "revert", "live state reverted to revision "+revision
		if driftRev != revision {
			method, summary = "accept", "desired state moved from revision "+driftRev+" to "+revision+", which the live state matches"
		}
		t := app.base(evidence.KindDriftReconciled, a.Site.Actor, revision, at)
		t.Drift = &evidence.Drift{
			Resources: strings.Split(list, ","), DetectedBy: app.ctrl, Method: method, Revision: truncate(revision, 256),
			Summary: truncate(summary, 4096), Object: app.obj,
		}
		em.Records = append(em.Records, t)
		return em, true
	}
	return Emission{}, false
}
