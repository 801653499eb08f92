// Package metrics derives Evident's Prometheus metrics (the Grafana
// dashboard's panels, docs/operations.md) from the ledger itself: a
// projection tails the log from its first entry, so a restarted server or a
// read replica exposes the same values as the writer that has served all
// along. Only the service-health metrics (ingest latency, refusals, commit
// latency) are the process's own.
//
// Label cardinality is bounded: environment, risk class, policy rule and
// finding code, each capped (values past the cap are reported as "other").
// Change ids, actors and application names never become labels.
package metrics

import (
	"hash/maphash"
	"iter"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"evident.dev/evident/evidence"
)

// Bounds of the projection's state and labels.
const (
	maxEnvironments = 32
	maxRules        = 128
	maxCodes        = 64
	maxClasses      = 8
	// maxPending bounds each table of open items (plans awaiting approval,
	// failed changes awaiting recovery, applications, exceptions): the
	// oldest is forgotten past it, so the projection stays small however
	// long the log grows.
	maxPending = 100_000
)

// Label values for what a record leaves empty or past a cap.
const (
	labelNone  = "none"
	labelOther = "other"
)

// labelSet hands out at most max distinct values; later ones become "other".
type labelSet struct {
	max   int
	seen  map[string]struct{}
	onNew func(string) // called once per value handed out
}

func newLabelSet(max int) *labelSet { return &labelSet{max: max, seen: map[string]struct{}{}} }

func (s *labelSet) get(v string) string {
	if v == "" {
		return labelNone
	}
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= s.max {
		return labelOther
	}
	s.seen[v] = struct{}{}
	if s.onNew != nil {
		s.onNew(v)
	}
	return v
}

// pendingTable remembers when an open item started, bounded by maxPending.
// The server keeps four for its whole life, each up to maxPending items, so
// an item holds no pointer and is no object of its own for the garbage
// collector to mark: keys are kept as 128-bit hashes (an item is looked up
// by its key, never listed by it), times as seconds and nanoseconds, and
// environments as an index among the few environment labels.
type pendingTable struct {
	seeds [2]maphash.Seed
	at    map[pendingKey]pendingItem
	order []pendingKey // insertion order, for eviction; may hold removed keys
	envs  []string     // environment labels, indexed by pendingItem.env
}

// pendingKey is a key's two independent 64-bit hashes: two of the keys a
// table has held collide with odds of about 10^-29, far below any fault of
// the machine.
type pendingKey [2]uint64

type pendingItem struct {
	sec  int64 // of the start, since the Unix epoch
	nsec int32
	env  uint8
}

// pending is an open item as the projection reads it.
type pending struct {
	at  time.Time
	env string
}

func newPendingTable() *pendingTable {
	return &pendingTable{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, at: map[pendingKey]pendingItem{}}
}

func (t *pendingTable) key(s string) pendingKey {
	return pendingKey{maphash.String(t.seeds[0], s), maphash.String(t.seeds[1], s)}
}

// env returns the index of an environment label. Labels are bounded
// (maxEnvironments and two more), so a short list is the fastest lookup; a
// label past what an index holds, which the bound rules out, is "other".
func (t *pendingTable) env(label string) uint8 {
	if i := slices.Index(t.envs, label); i >= 0 {
		return uint8(i)
	}
	if len(t.envs) > math.MaxUint8 {
		return t.env(labelOther)
	}
	t.envs = append(t.envs, strings.Clone(label))
	return uint8(len(t.envs) - 1)
}

func (t *pendingTable) item(it pendingItem) pending {
	return pending{at: time.Unix(it.sec, int64(it.nsec)), env: t.envs[it.env]}
}

func (t *pendingTable) open(key string, at time.Time, env string) {
	k := t.key(key)
	if _, ok := t.at[k]; ok {
		return
	}
	t.at[k] = pendingItem{sec: at.Unix(), nsec: int32(at.Nanosecond()), env: t.env(env)}
	t.order = append(t.order, k)
	for len(t.at) > maxPending && len(t.order) > 0 {
		delete(t.at, t.order[0])
		t.order = t.order[1:]
	}
	if len(t.order) > 2*maxPending {
		t.compact()
	}
}

func (t *pendingTable) close(key string) (pending, bool) {
	k := t.key(key)
	it, ok := t.at[k]
	if !ok {
		return pending{}, false
	}
	delete(t.at, k)
	return t.item(it), true
}

// items yields every open item, in no order.
func (t *pendingTable) items() iter.Seq[pending] {
	return func(yield func(pending) bool) {
		for _, it := range t.at {
			if !yield(t.item(it)) {
				return
			}
		}
	}
}

func (t *pendingTable) compact() {
	kept := t.order[:0]
	for _, k := range t.order {
		if _, ok := t.at[k]; ok {
			kept = append(kept, k)
		}
	}
	t.order = kept
}

// appState is what the projection keeps of one GitOps application.
type appState struct {
	env         string
	outOfSync   bool
	degraded    bool
	suspended   bool
	autoSyncOff bool
	ignored     int
}

// exceptionState is an exception that has been granted and not expired.
type exceptionState struct {
	env       string
	grantedAt time.Time
	expiresAt time.Time
}

// Projection is the ledger-derived state behind the compliance metrics. Its
// methods are safe for concurrent use; mu guards every field below it.
type Projection struct {
	mu      sync.Mutex
	applied uint64 // entries applied: the next index to read

	envs, rules, codes, classes *labelSet

	apps        map[string]*appState // application key (cluster/namespace/app); never a label
	exceptions  map[string]*exceptionState
	planWait    *pendingTable // change → plan time, until approved
	syncStarted *pendingTable // application key → sync.started time
	failed      *pendingTable // change or application → first failure, until recovered
	drift       *pendingTable // change/stack → drift detected, until reconciled

	// Counters and histograms, all labelled by bounded sets only.
	entries        *prometheus.CounterVec
	plans          *prometheus.CounterVec
	applies        *prometheus.CounterVec
	applyDuration  *prometheus.HistogramVec
	locksForced    *prometheus.CounterVec
	gates          *prometheus.CounterVec
	verifications  *prometheus.CounterVec
	findings       *prometheus.CounterVec
	driftDetected  *prometheus.CounterVec
	driftResolved  *prometheus.CounterVec
	emergency      *prometheus.CounterVec
	syncs          *prometheus.CounterVec
	syncLatency    *prometheus.HistogramVec
	pruned         *prometheus.CounterVec
	policyResults  *prometheus.CounterVec
	denials        *prometheus.CounterVec
	expiredUse     *prometheus.CounterVec
	admissions     *prometheus.CounterVec
	breakglass     *prometheus.CounterVec
	prodApplies    *prometheus.CounterVec
	incomplete     *prometheus.CounterVec
	approvalWait   *prometheus.HistogramVec
	changeFailures *prometheus.CounterVec
	rollbacks      *prometheus.CounterVec
	rollforwards   *prometheus.CounterVec
	recovery       *prometheus.HistogramVec
	malformed      prometheus.Counter

	// For the dashboard page: applied and incomplete changes per
	// environment and day (the last maxDays days), denials by rule, and the
	// latest production applies.
	days   map[dayKey]*dayCount
	newest int64 // newest day seen
	denied map[string]int
	recent []RecentChange // newest last, at most maxRecent
}

// dayKey is an environment's day (days since the Unix epoch, UTC).
type dayKey struct {
	env string
	day int64
}

type dayCount struct{ applied, incomplete int }

// Bounds of the dashboard state.
const (
	maxDays   = 90
	maxRecent = 20
)

// RecentChange is a production apply shown on the dashboard page.
type RecentChange struct {
	Index      uint64
	ChangeID   string
	Kind       evidence.Kind
	OccurredAt time.Time
	Env        string
	Findings   []string // finding codes
}

// Buckets of durations measured between records (seconds): from a minute
// to a week, since approvals and recoveries take human time.
var humanBuckets = []float64{60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400}

// Buckets of machine durations (applies, syncs): a second to an hour.
var machineBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600}

// NewProjection returns an empty projection; feed it every entry in order
// with Apply.
func NewProjection() *Projection {
	env := []string{"environment"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "evident", Name: name, Help: help}, labels)
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "evident", Name: name, Help: help, Buckets: buckets}, labels)
	}
	p := &Projection{
		envs: newLabelSet(maxEnvironments), rules: newLabelSet(maxRules), codes: newLabelSet(maxCodes), classes: newLabelSet(maxClasses),
		apps:        map[string]*appState{},
		days:        map[dayKey]*dayCount{},
		denied:      map[string]int{},
		exceptions:  map[string]*exceptionState{},
		planWait:    newPendingTable(),
		syncStarted: newPendingTable(),
		failed:      newPendingTable(),
		drift:       newPendingTable(),

		entries:        counter("ledger_entries_total", "Entries in the log by record kind and environment.", "kind", "environment"),
		plans:          counter("plans_total", "plan.created records by environment, risk class and whether the plan is destructive.", "environment", "class", "destructive"),
		applies:        counter("applies_total", "Applies by environment and result (succeeded, failed).", "environment", "result"),
		applyDuration:  hist("apply_duration_seconds", "Apply duration (completedAt - startedAt of apply records).", machineBuckets, env...),
		locksForced:    counter("locks_forced_total", "Forced state unlocks (lock.forced).", env...),
		gates:          counter("gate_decisions_total", "Apply gate decisions (gate.decided) by decision.", "environment", "decision"),
		verifications:  counter("verifications_total", "Post-apply verifications by result (pass, fail, drift).", "environment", "result"),
		findings:       counter("findings_total", "Verifier and policy findings stored with entries, by code.", "environment", "code"),
		driftDetected:  counter("drift_detected_total", "drift.detected records.", env...),
		driftResolved:  counter("drift_reconciled_total", "drift.reconciled records.", env...),
		emergency:      counter("emergency_changes_total", "Records of changes made under break-glass (emergency flag or finding).", env...),
		syncs:          counter("gitops_syncs_total", "GitOps syncs by result (started, succeeded, failed).", "environment", "result"),
		syncLatency:    hist("gitops_reconcile_duration_seconds", "Reconciliation latency: sync.started to sync.succeeded of the same application.", machineBuckets, env...),
		pruned:         counter("gitops_pruned_resources_total", "Resources pruned by GitOps syncs.", env...),
		policyResults:  counter("policy_evaluations_total", "Policy evaluations (policy.evaluated records and entries' decisions) by result.", "environment", "result"),
		denials:        counter("policy_denials_total", "Denying rule verdicts by rule.", "environment", "rule"),
		expiredUse:     counter("policy_expired_exception_uses_total", "Rule verdicts waived by an exception that had expired or was unknown.", env...),
		admissions:     counter("artifact_admissions_total", "Artifact admission verdicts by result and whether the artifact was signed.", "environment", "result", "signed"),
		breakglass:     counter("breakglass_events_total", "Break-glass events (opened, closed).", "environment", "event"),
		prodApplies:    counter("changes_applied_total", "Applied changes (apply.completed) by environment and risk class.", "environment", "class"),
		incomplete:     counter("changes_incomplete_total", "Applied changes missing required evidence: an error finding (approval missing or mismatched, unsigned artifact, ...) on the apply.", "environment", "class"),
		approvalWait:   hist("approval_wait_seconds", "Approval SLA: plan.created to the first approval.granted of the change.", humanBuckets, env...),
		changeFailures: counter("change_failures_total", "Failed changes: apply.failed, failed verification, rollout.aborted, sync.failed.", "environment", "kind"),
		rollbacks:      counter("rollbacks_total", "Rollbacks (rollout.aborted).", env...),
		rollforwards:   counter("rollforwards_total", "Roll-forwards: a successful apply or sync after a failure of the same change or application.", env...),
		recovery:       hist("recovery_seconds", "Time to recovery: first failure to the next success of the same change or application.", humanBuckets, env...),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "evident", Name: "projection_unreadable_entries_total",
			Help: "Entries the metrics projection could not decode (counted, skipped)."}),
	}
	p.envs.onNew = p.initEnvironment
	return p
}

// Known adds environments the configuration names, before any of their
// records arrive: their series read 0 from the start.
func (p *Projection) Known(envs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range envs {
		p.envs.get(e)
	}
}

// initEnvironment creates an environment's series at zero, with the label
// values the record format allows, when the environment is first seen: a
// dashboard panel then reads 0, not "No data", until a matching record
// arrives, and rate() over a counter's first increment is not lost.
func (p *Projection) initEnvironment(env string) {
	each := func(v *prometheus.CounterVec, values ...string) {
		for _, x := range values {
			v.WithLabelValues(env, x)
		}
	}
	each(p.applies, "succeeded", "failed")
	each(p.gates, "allow", "deny")
	each(p.verifications, "pass", "fail", "drift")
	each(p.syncs, "started", "succeeded", "failed")
	each(p.policyResults, "allow", "deny", "warn")
	each(p.breakglass, "opened", "closed")
	each(p.changeFailures, string(evidence.KindApplyFailed), string(evidence.KindVerificationCompleted),
		string(evidence.KindRolloutAborted), string(evidence.KindSyncFailed))
	for _, r := range []string{"admitted", "denied"} {
		for _, signed := range []string{"true", "false"} {
			p.admissions.WithLabelValues(env, r, signed)
		}
	}
	for _, v := range []*prometheus.CounterVec{p.locksForced, p.driftDetected, p.driftResolved, p.emergency, p.pruned,
		p.expiredUse, p.rollbacks, p.rollforwards} {
		v.WithLabelValues(env)
	}
	for _, h := range []*prometheus.HistogramVec{p.applyDuration, p.syncLatency, p.approvalWait, p.recovery} {
		h.WithLabelValues(env)
	}
}

func (p *Projection) collectors() []prometheus.Collector {
	return []prometheus.Collector{p.entries, p.plans, p.applies, p.applyDuration, p.locksForced, p.gates, p.verifications,
		p.findings, p.driftDetected, p.driftResolved, p.emergency, p.syncs, p.syncLatency, p.pruned, p.policyResults,
		p.denials, p.expiredUse, p.admissions, p.breakglass, p.prodApplies, p.incomplete, p.approvalWait,
		p.changeFailures, p.rollbacks, p.rollforwards, p.recovery, p.malformed}
}

// Applied is the number of entries the projection has seen.
func (p *Projection) Applied() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applied
}

// Apply folds the next entry of the log into the projection. Entries must
// come in index order; an entry already applied is ignored.
func (p *Projection) Apply(e *evidence.Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Index < p.applied {
		return
	}
	p.applied = e.Index + 1
	st, err := e.Statement()
	if err != nil {
		p.malformed.Inc()
		return
	}
	p.apply(e, &st.Predicate)
}

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func appKey(t *evidence.Transition) string {
	app := t.Target.Application
	if t.Sync != nil && t.Sync.Application != "" {
		app = t.Sync.Application
	}
	if app == "" {
		return ""
	}
	return t.Target.Cluster + "/" + t.Target.Namespace + "/" + app
}

func (p *Projection) apply(e *evidence.Entry, t *evidence.Transition) {
	env := p.envs.get(t.Target.Environment)
	class := p.classes.get(t.RiskClass)
	p.entries.WithLabelValues(string(t.Kind), env).Inc()

	hasError, emergency := false, t.Emergency
	for _, f := range e.Meta.Findings {
		p.findings.WithLabelValues(env, p.codes.get(f.Code)).Inc()
		if f.Severity == "error" {
			hasError = true
		}
		if f.Code == "emergency" {
			emergency = true
		}
	}
	if emergency {
		p.emergency.WithLabelValues(env).Inc()
	}
	if e.Meta.Decision != nil {
		p.policy(env, e.Meta.Decision, t.OccurredAt)
	}

	at := t.OccurredAt
	switch t.Kind {
	case evidence.KindPlanCreated:
		destructive := t.Plan != nil && t.Plan.Destructive
		p.plans.WithLabelValues(env, class, boolLabel(destructive)).Inc()
		p.planWait.open(t.ChangeID, at, env)
	case evidence.KindApprovalGranted:
		// An approval the approval judge found unauthorized was never
		// given: it does not end the wait.
		if slices.ContainsFunc(e.Meta.Findings, func(f evidence.Finding) bool { return f.Code == "approval.unauthorized-signer" }) {
			break
		}
		if it, ok := p.planWait.close(t.ChangeID); ok && !at.Before(it.at) {
			p.approvalWait.WithLabelValues(it.env).Observe(at.Sub(it.at).Seconds())
		}
	case evidence.KindPolicyEvaluated:
		if t.Policy != nil {
			p.policy(env, t.Policy, at)
		}
	case evidence.KindGateDecided:
		if t.Gate != nil {
			p.gates.WithLabelValues(env, t.Gate.Decision).Inc()
		}
	case evidence.KindApplyCompleted:
		p.applies.WithLabelValues(env, "succeeded").Inc()
		p.applyTimes(env, t)
		p.prodApplies.WithLabelValues(env, class).Inc()
		if hasError {
			p.incomplete.WithLabelValues(env, class).Inc()
		}
		p.countDay(env, at, hasError)
		if isProduction(env) {
			p.addRecent(e, t, env)
		}
		p.recovered(env, t.ChangeID, at)
	case evidence.KindApplyFailed:
		p.applies.WithLabelValues(env, "failed").Inc()
		p.applyTimes(env, t)
		p.changeFailures.WithLabelValues(env, string(t.Kind)).Inc()
		p.failed.open(t.ChangeID, at, env)
	case evidence.KindVerificationCompleted:
		if t.Verification != nil {
			p.verifications.WithLabelValues(env, t.Verification.Result).Inc()
			if t.Verification.Result == "fail" {
				p.changeFailures.WithLabelValues(env, string(t.Kind)).Inc()
				p.failed.open(t.ChangeID, at, env)
			}
		}
	case evidence.KindLockForced:
		p.locksForced.WithLabelValues(env).Inc()
	case evidence.KindDriftDetected:
		p.driftDetected.WithLabelValues(env).Inc()
		p.drift.open(driftKey(t), at, env)
		if a := p.app(t, env); a != nil {
			a.outOfSync = true
		}
	case evidence.KindDriftReconciled:
		p.driftResolved.WithLabelValues(env).Inc()
		p.drift.close(driftKey(t))
		if a := p.app(t, env); a != nil {
			a.outOfSync = false
		}
	case evidence.KindSyncStarted, evidence.KindSyncSucceeded, evidence.KindSyncFailed:
		p.sync(env, t)
	case evidence.KindHealthDegraded:
		if a := p.app(t, env); a != nil && t.Health != nil {
			a.degraded = t.Health.Status == "Degraded" || t.Health.Status == "Missing"
			a.suspended = t.Health.Status == "Suspended"
			if a.degraded {
				p.failed.open(appKey(t), at, env)
			}
		}
	case evidence.KindRolloutAborted:
		p.rollbacks.WithLabelValues(env).Inc()
		p.changeFailures.WithLabelValues(env, string(t.Kind)).Inc()
		p.failed.open(t.ChangeID, at, env)
	case evidence.KindRolloutPromoted:
		p.recovered(env, t.ChangeID, at)
	case evidence.KindArtifactAdmitted:
		if a := t.ArtifactAdmission; a != nil {
			p.admissions.WithLabelValues(env, a.Result, boolLabel(a.Signed)).Inc()
		}
	case evidence.KindExceptionGranted:
		if x := t.Exception; x != nil {
			if _, ok := p.exceptions[x.ID]; !ok && len(p.exceptions) < maxPending {
				p.exceptions[x.ID] = &exceptionState{env: env, grantedAt: at, expiresAt: x.ExpiresAt}
			}
		}
	case evidence.KindExceptionExpired:
		if x := t.Exception; x != nil {
			delete(p.exceptions, x.ID)
		}
	case evidence.KindBreakglassOpened:
		p.breakglass.WithLabelValues(env, "opened").Inc()
	case evidence.KindBreakglassClosed:
		p.breakglass.WithLabelValues(env, "closed").Inc()
	}
}

func driftKey(t *evidence.Transition) string {
	if k := appKey(t); k != "" {
		return "app:" + k
	}
	return "change:" + t.ChangeID + "/" + t.Target.Stack
}

func (p *Projection) applyTimes(env string, t *evidence.Transition) {
	if a := t.Apply; a != nil && !a.StartedAt.IsZero() && !a.CompletedAt.IsZero() && !a.CompletedAt.Before(a.StartedAt) {
		p.applyDuration.WithLabelValues(env).Observe(a.CompletedAt.Sub(a.StartedAt).Seconds())
	}
}

// recovered closes an open failure of key: a roll-forward and a recovery time.
func (p *Projection) recovered(env, key string, at time.Time) {
	if key == "" {
		return
	}
	if it, ok := p.failed.close(key); ok {
		p.rollforwards.WithLabelValues(env).Inc()
		if !at.Before(it.at) {
			p.recovery.WithLabelValues(it.env).Observe(at.Sub(it.at).Seconds())
		}
	}
}

// app returns the state of the record's application, creating it; nil when
// the record names none or the table is full.
func (p *Projection) app(t *evidence.Transition, env string) *appState {
	k := appKey(t)
	if k == "" {
		return nil
	}
	a, ok := p.apps[k]
	if !ok {
		if len(p.apps) >= maxPending {
			return nil
		}
		a = &appState{}
		p.apps[k] = a
	}
	a.env = env
	return a
}

func (p *Projection) sync(env string, t *evidence.Transition) {
	k := appKey(t)
	a := p.app(t, env)
	if a != nil && t.Sync != nil {
		if t.Sync.Policy != nil {
			a.autoSyncOff = !t.Sync.Policy.Automated
		}
		a.ignored = len(t.Sync.Ignored)
		if n := len(t.Sync.Pruned); n > 0 && t.Kind == evidence.KindSyncSucceeded {
			p.pruned.WithLabelValues(env).Add(float64(n))
		}
	}
	at := t.OccurredAt
	switch t.Kind {
	case evidence.KindSyncStarted:
		p.syncs.WithLabelValues(env, "started").Inc()
		if k != "" {
			p.syncStarted.open(k, at, env)
		}
	case evidence.KindSyncSucceeded:
		p.syncs.WithLabelValues(env, "succeeded").Inc()
		if a != nil {
			a.outOfSync, a.degraded = false, false
		}
		if k != "" {
			if it, ok := p.syncStarted.close(k); ok && !at.Before(it.at) {
				p.syncLatency.WithLabelValues(it.env).Observe(at.Sub(it.at).Seconds())
			}
			p.drift.close("app:" + k)
			p.recovered(env, k, at)
		}
		p.recovered(env, t.ChangeID, at)
	case evidence.KindSyncFailed:
		p.syncs.WithLabelValues(env, "failed").Inc()
		p.changeFailures.WithLabelValues(env, string(t.Kind)).Inc()
		if a != nil {
			a.outOfSync = true
		}
		if k != "" {
			p.syncStarted.close(k)
			p.failed.open(k, at, env)
		}
	}
}

// policy counts a policy decision's verdicts.
func (p *Projection) policy(env string, d *evidence.Policy, at time.Time) {
	p.policyResults.WithLabelValues(env, d.Result).Inc()
	for _, r := range d.Decisions {
		if r.Result == "deny" {
			rule := p.rules.get(r.RuleID)
			p.denials.WithLabelValues(env, rule).Inc()
			p.denied[rule]++
		}
		if r.ExceptionID != "" {
			x, ok := p.exceptions[r.ExceptionID]
			if !ok || (!x.expiresAt.IsZero() && at.After(x.expiresAt)) {
				p.expiredUse.WithLabelValues(env).Inc()
			}
		}
	}
}

// gauges is a snapshot of the projection's current-state values.
type gauges struct {
	apps       map[[2]string]float64 // {environment, state} → applications
	exceptions map[[2]string]float64 // {environment, age} → active exceptions
	drift      map[string]float64    // environment → unreconciled drift
	driftAge   map[string]float64    // environment → oldest unreconciled drift, seconds
	pending    map[string]float64    // environment → plans awaiting approval
}

// Ages of active exceptions, as bucket labels.
var exceptionAges = []struct {
	label string
	max   time.Duration
}{{"lt_7d", 7 * 24 * time.Hour}, {"7d_30d", 30 * 24 * time.Hour}, {"30d_90d", 90 * 24 * time.Hour}, {"gt_90d", 0}}

func exceptionAge(d time.Duration) string {
	for _, b := range exceptionAges {
		if b.max == 0 || d < b.max {
			return b.label
		}
	}
	return exceptionAges[len(exceptionAges)-1].label
}

func (p *Projection) snapshot(now time.Time) gauges {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := gauges{apps: map[[2]string]float64{}, exceptions: map[[2]string]float64{}, drift: map[string]float64{},
		driftAge: map[string]float64{}, pending: map[string]float64{}}
	for _, a := range p.apps {
		for state, on := range map[string]bool{"out_of_sync": a.outOfSync, "degraded": a.degraded, "suspended": a.suspended, "auto_sync_disabled": a.autoSyncOff} {
			if on {
				g.apps[[2]string{a.env, state}]++
			}
		}
		if a.ignored > 0 {
			g.apps[[2]string{a.env, "ignored_differences"}]++
		}
	}
	for _, x := range p.exceptions {
		age := "expired"
		if x.expiresAt.IsZero() || now.Before(x.expiresAt) {
			age = exceptionAge(now.Sub(x.grantedAt))
		}
		g.exceptions[[2]string{x.env, age}]++
	}
	for it := range p.drift.items() {
		g.drift[it.env]++
		if age := now.Sub(it.at).Seconds(); age > g.driftAge[it.env] {
			g.driftAge[it.env] = age
		}
	}
	for it := range p.planWait.items() {
		g.pending[it.env]++
	}
	return g
}

// sortedKeys returns m's keys in order, for stable exposition.
func sortedKeys[K ~string | ~[2]string, V any](m map[K]V, less func(a, b K) bool) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return less(ks[i], ks[j]) })
	return ks
}

func isProduction(env string) bool {
	return env == "prod" || env == "production" || strings.HasPrefix(env, "prod-")
}

func (p *Projection) countDay(env string, at time.Time, incomplete bool) {
	day := at.UTC().Unix() / 86400
	if day <= p.newest-maxDays {
		return
	}
	if day > p.newest {
		p.newest = day
		for k := range p.days {
			if k.day <= day-maxDays {
				delete(p.days, k)
			}
		}
	}
	c := p.days[dayKey{env, day}]
	if c == nil {
		c = &dayCount{}
		p.days[dayKey{env, day}] = c
	}
	c.applied++
	if incomplete {
		c.incomplete++
	}
}

func (p *Projection) addRecent(e *evidence.Entry, t *evidence.Transition, env string) {
	r := RecentChange{Index: e.Index, ChangeID: t.ChangeID, Kind: t.Kind, OccurredAt: t.OccurredAt, Env: env}
	for _, f := range e.Meta.Findings {
		r.Findings = append(r.Findings, f.Code)
	}
	p.recent = append(p.recent, r)
	if len(p.recent) > maxRecent {
		p.recent = append(p.recent[:0:0], p.recent[len(p.recent)-maxRecent:]...)
	}
}

// DayCompleteness is one environment's completeness on one day.
type DayCompleteness struct {
	Day        time.Time
	Applied    int
	Incomplete int
}

// Rate is the share of the day's applied changes with their evidence complete.
func (d DayCompleteness) Rate() float64 {
	if d.Applied == 0 {
		return 1
	}
	return float64(d.Applied-d.Incomplete) / float64(d.Applied)
}

// RuleCount is a rule and how often it denied.
type RuleCount struct {
	Rule  string
	Count int
}

// EnvCount is a count in one environment.
type EnvCount struct {
	Env   string
	Count int
}

// Overview is what the dashboard page shows.
type Overview struct {
	Entries      uint64
	Completeness map[string][]DayCompleteness // environment → days, oldest first
	Denials      []RuleCount                  // most frequent first, at most 10
	Drift        []EnvCount                   // unreconciled drift by environment
	Recent       []RecentChange               // newest first
}

// Overview returns the dashboard page's data.
func (p *Projection) Overview(now time.Time) Overview {
	g := p.snapshot(now)
	p.mu.Lock()
	defer p.mu.Unlock()
	o := Overview{Entries: p.applied, Completeness: map[string][]DayCompleteness{}}
	for k, c := range p.days {
		o.Completeness[k.env] = append(o.Completeness[k.env], DayCompleteness{Day: time.Unix(k.day*86400, 0).UTC(), Applied: c.applied, Incomplete: c.incomplete})
	}
	for _, days := range o.Completeness {
		sort.Slice(days, func(i, j int) bool { return days[i].Day.Before(days[j].Day) })
	}
	for r, n := range p.denied {
		o.Denials = append(o.Denials, RuleCount{r, n})
	}
	sort.Slice(o.Denials, func(i, j int) bool {
		return o.Denials[i].Count > o.Denials[j].Count || o.Denials[i].Count == o.Denials[j].Count && o.Denials[i].Rule < o.Denials[j].Rule
	})
	if len(o.Denials) > 10 {
		o.Denials = o.Denials[:10]
	}
	for _, env := range sortedKeys(g.drift, func(a, b string) bool { return a < b }) {
		o.Drift = append(o.Drift, EnvCount{env, int(g.drift[env])})
	}
	for i := len(p.recent) - 1; i >= 0; i-- {
		o.Recent = append(o.Recent, p.recent[i])
	}
	return o
}
