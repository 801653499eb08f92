package gitops

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"evident.dev/evident/evidence"
)

// Argo Rollouts resources (argoproj.io/v1alpha1).
var (
	RolloutResource     = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
	AnalysisRunResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "analysisruns"}
)

// Rollouts derives rollout.promoted and rollout.aborted from Argo Rollouts
// with this evidence: the artifact digest, the rollout revision and object
// generation, the analysis templates, metric queries and measured results of
// the revision's AnalysisRuns, the promotion time, the abort reason, and the
// version serving at the end.
type Rollouts struct {
	Site Site
}

// Resource implements Deriver.
func (r *Rollouts) Resource() schema.GroupVersionResource { return RolloutResource }

// Related implements Related: an AnalysisRun re-derives the Rollout that owns it.
func (r *Rollouts) Related() []Relation {
	return []Relation{{Resource: AnalysisRunResource, Owner: func(o map[string]any) (string, string, bool) {
		for _, ref := range list(o, "metadata", "ownerReferences") {
			if str(ref, "kind") == "Rollout" {
				return str(o, "metadata", "namespace"), str(ref, "name"), true
			}
		}
		return "", "", false
	}}}
}

// Derive implements Deriver. The key is "<revision>|promoted" or
// "<revision>|aborted|<abortedAt>"; a rollout in progress is remembered as
// "<revision>|progressing" and gives no record.
func (r *Rollouts) Derive(o map[string]any, _ func(string) string, lk Lookup) []Emission {
	revision := firstString(str(o, "metadata", "annotations", "rollout.argoproj.io/revision"), strconv.FormatInt(integer(o, "metadata", "generation"), 10))
	st := object(o, "status")
	podHash := str(st, "currentPodHash")
	em := Emission{Class: "rollout", Key: revision + "|progressing"}

	var kind evidence.Kind
	var at time.Time
	switch {
	case boolean(st, "abort"):
		kind = evidence.KindRolloutAborted
		at = firstTime(timestamp(st, "abortedAt"), conditionTime(o, "Progressing"), timestamp(o, "metadata", "creationTimestamp"))
		em.Key = revision + "|aborted|" + at.Format(time.RFC3339Nano)
	case podHash != "" && str(st, "stableRS") == podHash && str(st, "phase") == "Healthy":
		kind = evidence.KindRolloutPromoted
		at = firstTime(conditionTime(o, "Completed"), conditionTime(o, "Healthy"), conditionTime(o, "Progressing"), timestamp(o, "metadata", "creationTimestamp"))
		em.Key = revision + "|promoted"
	default:
		return []Emission{em}
	}

	image := ""
	if cs := list(o, "spec", "template", "spec", "containers"); len(cs) > 0 {
		image = str(cs[0], "image")
	}
	ns := str(o, "metadata", "namespace")
	t := evidence.Transition{
		Kind:       kind,
		ChangeID:   changeID(o, "rev"+revision),
		OccurredAt: at,
		Actor:      r.Site.Actor,
		Target: evidence.Target{
			Environment: r.Site.environment(o),
			Cluster:     r.Site.Cluster,
			Namespace:   label(ns),
			Application: label(firstString(str(o, "metadata", "labels", "app.kubernetes.io/instance"), str(o, "metadata", "name"))),
			Service:     label(str(o, "metadata", "name")),
		},
	}
	ro := &evidence.Rollout{
		Revision: truncate(revision, 256),
		Object:   objectRef(o),
	}
	switch {
	case object(o, "spec", "strategy", "canary") != nil:
		ro.Strategy = "canary"
	case object(o, "spec", "strategy", "blueGreen") != nil:
		ro.Strategy = "blueGreen"
	}
	if _, digest, ok := strings.Cut(image, "@"); ok && strings.HasPrefix(digest, "sha256:") && len(digest) == 71 && isCommit(digest[7:]) {
		ro.ImageDigest = digest
		repo, _, _ := strings.Cut(image, "@")
		t.Artifacts = []evidence.Artifact{{Name: truncate(repo, 256), Digest: digest, URI: truncate(image, 2048)}}
	}
	ro.Analysis, ro.AnalysisRun = r.analysis(o, ns, podHash, lk)
	if kind == evidence.KindRolloutPromoted {
		ro.PromotedAt = at
		ro.ServiceVersion = truncate(image, 1024)
	} else {
		ro.AbortReason = truncate(firstString(str(st, "message"), "rollout aborted"), 4096)
		ro.ServiceVersion = truncate("stable ReplicaSet pod-template-hash "+str(st, "stableRS"), 1024)
	}
	t.Rollout = ro
	em.Records = []evidence.Transition{t}
	return []Emission{em}
}

func conditionTime(o map[string]any, typ string) time.Time {
	c := condition(o, typ)
	if c == nil || str(c, "status") != "True" {
		return time.Time{}
	}
	return firstTime(timestamp(c, "lastTransitionTime"), timestamp(c, "lastUpdateTime"))
}

// analysis reads the finished metric results of the AnalysisRuns the rollout
// ran for its current pods, in name order. It names the last run that
// failed, or else the last one.
func (r *Rollouts) analysis(ro map[string]any, ns, podHash string, lk Lookup) ([]evidence.AnalysisResult, string) {
	name := str(ro, "metadata", "name")
	var runs []map[string]any
	for _, run := range lk.List(AnalysisRunResource, ns) {
		if str(run, "metadata", "labels", "rollouts-pod-template-hash") != podHash {
			continue
		}
		for _, ref := range list(run, "metadata", "ownerReferences") {
			if str(ref, "kind") == "Rollout" && str(ref, "name") == name {
				runs = append(runs, run)
				break
			}
		}
	}
	slices.SortFunc(runs, func(a, b map[string]any) int {
		return strings.Compare(str(a, "metadata", "name"), str(b, "metadata", "name"))
	})
	var out []evidence.AnalysisResult
	var failed, last string
	for _, run := range runs {
		template := templateOf(ro, run)
		queries := map[string]string{}
		for _, m := range list(run, "spec", "metrics") {
			queries[str(m, "name")] = providerQuery(object(m, "provider"))
		}
		last = str(run, "metadata", "name")
		if phase := str(run, "status", "phase"); phase == "Failed" || phase == "Error" {
			failed = last
		}
		for _, mr := range list(run, "status", "metricResults") {
			result := resultOf(str(mr, "phase"))
			if result == "" {
				continue // still running
			}
			value := ""
			if ms := list(mr, "measurements"); len(ms) > 0 {
				value = str(ms[len(ms)-1], "value")
			}
			metric := str(mr, "name")
			out = append(out, evidence.AnalysisResult{
				Template: truncate(template, 256), Metric: truncate(metric, 256),
				Query: truncate(queries[metric], 4096), Result: result, Value: truncate(value, 1024),
			})
		}
	}
	return out, truncate(firstString(failed, last), 253)
}

// templateOf names the AnalysisTemplates a run was made from: those of the
// canary step it ran for (label step-index), or of background analysis.
func templateOf(ro, run map[string]any) string {
	var templates []map[string]any
	if idx, err := strconv.Atoi(str(run, "metadata", "labels", "step-index")); err == nil {
		steps := list(ro, "spec", "strategy", "canary", "steps")
		if idx >= 0 && idx < len(steps) {
			templates = list(steps[idx], "analysis", "templates")
		}
	} else {
		templates = list(ro, "spec", "strategy", "canary", "analysis", "templates")
	}
	var names []string
	for _, t := range templates {
		if n := str(t, "templateName"); n != "" {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// providerQuery is the metric query of a provider: Prometheus's query, or
// the provider's whole configuration for others (it is what was asked).
func providerQuery(p map[string]any) string {
	if q := str(p, "prometheus", "query"); q != "" {
		return q
	}
	if len(p) == 0 {
		return ""
	}
	b, err := json.Marshal(p) // map keys are sorted: deterministic
	if err != nil {
		return ""
	}
	return string(b)
}

func resultOf(phase string) string {
	switch phase {
	case "Successful":
		return "successful"
	case "Failed":
		return "failed"
	case "Inconclusive":
		return "inconclusive"
	case "Error":
		return "error"
	}
	return ""
}
