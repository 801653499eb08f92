package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"evident.dev/evident/evidence"
	"evident.dev/evident/policies"
	"evident.dev/evident/witness"
)

// Log is the ledger as the metrics need it: its size and checkpoint, and its
// entries to tail. Safe for concurrent use.
type Log interface {
	Size() uint64
	CheckpointSize() uint64
	// Wait blocks until the log holds more than size entries or ctx ends,
	// and returns the log's size.
	Wait(ctx context.Context, size uint64) (uint64, error)
	// Entry returns entry i; a recent one comes with its statement decoded.
	Entry(ctx context.Context, index uint64) (*evidence.Entry, error)
}

// Completeness is the policies' completeness projection over the evidence
// contracts (*policies.Tracker). Rates must be safe for concurrent use.
type Completeness interface {
	Rates() []policies.Rate
}

// Witnessing is the witness collector as the metrics read it
// (*witness.Collector).
type Witnessing interface {
	Progress() witness.Progress
}

// Config configures the metrics.
type Config struct {
	// Log is the ledger to tail. It may be set later with SetLog, since the
	// ledger's commit hook needs the metrics before the ledger opens.
	Log    Log
	Logger *slog.Logger
	// Clock is the time checkpoint and exception ages are measured at; nil
	// means time.Now.
	Clock func() time.Time
	// Version is the server's version, exported as evident_build_info.
	Version string
}

// Metrics is Evident's Prometheus registry: the ledger projection, the
// service's health and the Go runtime. Create it with New, run Tail, and
// serve Handler at /metrics.
type Metrics struct {
	cfg        Config
	registry   *prometheus.Registry
	collectors []prometheus.Collector // everything registered
	proj       *Projection

	ingestDuration *prometheus.HistogramVec
	ingestTotal    *prometheus.CounterVec
	commitDuration prometheus.Histogram
	commitRecords  prometheus.Histogram

	// logMu guards log and completeness, which SetLog and SetCompleteness
	// may set once after New.
	logMu        sync.RWMutex
	log          Log
	completeness Completeness
	witnessing   Witnessing

	// cpMu guards the checkpoint's last observed size and when it changed.
	cpMu      sync.Mutex
	cpSize    uint64
	cpChanged time.Time
}

// New builds the registry. Nothing is read from the log until Tail runs.
func New(cfg Config) *Metrics {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	m := &Metrics{
		cfg:      cfg,
		log:      cfg.Log,
		registry: prometheus.NewRegistry(),
		proj:     NewProjection(),
		ingestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "evident", Name: "ingest_request_duration_seconds",
			Help:    "Time to answer POST /v1/records (verify, judge, append and fsync), by outcome class.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"outcome"}),
		ingestTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "evident", Name: "ingest_requests_total",
			Help: "Posted records by result: accepted, duplicate, or the refusal's error code.",
		}, []string{"result"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "evident", Name: "ledger_commit_duration_seconds",
			Help:    "Time to make one batch durable: segment write, fdatasync and index transaction.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		commitRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "evident", Name: "ledger_commit_batch_records",
			Help:    "Records per committed batch (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
	}
	// Refusals are counted by error code as they happen; the outcomes a
	// dashboard shows from the start are created at zero.
	for _, r := range []string{"accepted", "duplicate"} {
		m.ingestTotal.WithLabelValues(r)
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "evident", Name: "build_info",
		Help: "Always 1: the server's version and the Go release that built it."}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(cmp.Or(cfg.Version, "unknown"), runtime.Version()).Set(1)
	m.collectors = append(m.proj.collectors(), buildInfo, m.ingestDuration, m.ingestTotal, m.commitDuration, m.commitRecords, stateCollector{m, newStateDescs()},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registry.MustRegister(m.collectors...)
	return m
}

// SetLog names the ledger to tail, when Config.Log was left nil.
func (m *Metrics) SetLog(l Log) {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	m.log = l
}

// SetCompleteness adds the evidence contracts' completeness rates
// (evident_evidence_completeness_ratio and evident_evidence_changes).
func (m *Metrics) SetCompleteness(c Completeness) {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	m.completeness = c
}

// SetWitnessing adds the witnesses' progress (evident_witnessed_checkpoint_*
// and evident_witness_cosigned_size).
func (m *Metrics) SetWitnessing(w Witnessing) {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	m.witnessing = w
}

func (m *Metrics) witnessProgress() (witness.Progress, bool) {
	m.logMu.RLock()
	w := m.witnessing
	m.logMu.RUnlock()
	if w == nil {
		return witness.Progress{}, false
	}
	return w.Progress(), true
}

func (m *Metrics) rates() []policies.Rate {
	m.logMu.RLock()
	c := m.completeness
	m.logMu.RUnlock()
	if c == nil {
		return nil
	}
	return c.Rates()
}

func (m *Metrics) ledger() Log {
	m.logMu.RLock()
	defer m.logMu.RUnlock()
	return m.log
}

// Describe sends the descriptions of every metric the server exposes,
// also those with no sample yet (dashboards and alerts are checked
// against them).
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// Registry is the private registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.cfg.Logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Register serves GET /metrics on mux.
func (m *Metrics) Register(mux *http.ServeMux) { mux.Handle("GET /metrics", m.Handler()) }

// Projection is the ledger-derived state, read by the dashboard pages.
func (m *Metrics) Projection() *Projection { return m.proj }

// IngestObserved records one answered POST /v1/records; ingest calls it
// through its Observer hook. result is "accepted", "duplicate" or the
// refusal's code, a small fixed set.
func (m *Metrics) IngestObserved(result string, took time.Duration) {
	class := "refused"
	switch result {
	case "accepted", "duplicate":
		class = result
	}
	m.ingestTotal.WithLabelValues(result).Inc()
	m.ingestDuration.WithLabelValues(class).Observe(took.Seconds())
}

// BatchCommitted records one durable batch; the ledger calls it through
// its OnCommit hook.
func (m *Metrics) BatchCommitted(records int, took time.Duration) {
	m.commitDuration.Observe(took.Seconds())
	m.commitRecords.Observe(float64(records))
}

// Tail folds every entry of the log into the projection, from the first,
// then follows the log until ctx ends or the log closes, and returns why.
func (m *Metrics) Tail(ctx context.Context) error {
	log := m.ledger()
	if log == nil {
		return errors.New("metrics: no log to tail")
	}
	if err := m.initCheckpoint(ctx, log); err != nil {
		return err
	}
	done := m.proj.Applied()
	for {
		size, err := log.Wait(ctx, done)
		if err != nil {
			return err
		}
		for ; done < size; done++ {
			e, err := log.Entry(ctx, done)
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				// The log checked every leaf it wrote: count a damaged one and
				// go on; the figures of every other entry stay right.
				m.cfg.Logger.Error("metrics: unreadable entry", "index", done, "err", err)
				m.proj.mu.Lock()
				m.proj.applied = done + 1
				m.proj.mu.Unlock()
				m.proj.malformed.Inc()
				continue
			}
			m.proj.Apply(e)
		}
	}
}

// initCheckpoint dates the current checkpoint by the entry it ends with, so
// a restarted server reports the checkpoint's real age, not zero.
func (m *Metrics) initCheckpoint(ctx context.Context, log Log) error {
	size := log.CheckpointSize()
	at := m.cfg.Clock()
	if size > 0 {
		e, err := log.Entry(ctx, size-1)
		if err != nil {
			return fmt.Errorf("metrics: entry %d: %w", size-1, err)
		}
		at = e.ReceivedAt
	}
	m.cpMu.Lock()
	defer m.cpMu.Unlock()
	if m.cpChanged.IsZero() {
		m.cpSize, m.cpChanged = size, at
	}
	return nil
}

// checkpointAge is how long the checkpoint has kept its size, noting a
// change seen now.
func (m *Metrics) checkpointAge(size uint64, now time.Time) float64 {
	m.cpMu.Lock()
	defer m.cpMu.Unlock()
	if size != m.cpSize || m.cpChanged.IsZero() {
		m.cpSize, m.cpChanged = size, now
	}
	return max(0, now.Sub(m.cpChanged).Seconds())
}

// stateCollector exposes the values read at scrape time: log size,
// checkpoint, projection lag and the projection's current-state gauges.
type stateCollector struct {
	m *Metrics
	d stateDescs
}

// stateDescs describes the values read at scrape time.
type stateDescs struct {
	logSize, cpSize, cpAge, projected, apps, exceptions, drift, driftAge, pending *prometheus.Desc
	ratio, changes                                                                *prometheus.Desc
	witnessedSize, witnessedAge, cosigned                                         *prometheus.Desc
}

func newStateDescs() stateDescs {
	return stateDescs{
		logSize:    prometheus.NewDesc("evident_log_entries", "Durable entries in the log.", nil, nil),
		cpSize:     prometheus.NewDesc("evident_checkpoint_size", "Tree size of the latest signed checkpoint.", nil, nil),
		cpAge:      prometheus.NewDesc("evident_checkpoint_age_seconds", "Seconds since the signed checkpoint last grew.", nil, nil),
		projected:  prometheus.NewDesc("evident_projection_entries", "Entries the metrics projection has applied.", nil, nil),
		apps:       prometheus.NewDesc("evident_gitops_applications", "GitOps applications by current state (out_of_sync, degraded, suspended, auto_sync_disabled, ignored_differences).", []string{"environment", "state"}, nil),
		exceptions: prometheus.NewDesc("evident_policy_exceptions_active", "Granted exceptions without an exception.expired record, by age (lt_7d, 7d_30d, 30d_90d, gt_90d; expired: past expiresAt).", []string{"environment", "age"}, nil),
		drift:      prometheus.NewDesc("evident_drift_unreconciled", "Drift detected and not yet reconciled.", []string{"environment"}, nil),
		driftAge:   prometheus.NewDesc("evident_drift_unreconciled_oldest_seconds", "Age of the oldest unreconciled drift.", []string{"environment"}, nil),
		pending:    prometheus.NewDesc("evident_plans_awaiting_approval", "Changes planned and not yet approved.", []string{"environment"}, nil),
		ratio: prometheus.NewDesc("evident_evidence_completeness_ratio",
			"Evidence contracts: share of closed changes with all their class's required evidence (1 when none is closed).", []string{"environment", "class"}, nil),
		changes: prometheus.NewDesc("evident_evidence_changes",
			"Evidence contracts: changes by state (open, closed, complete: closed with all required evidence).", []string{"environment", "class", "state"}, nil),
		witnessedSize: prometheus.NewDesc("evident_witnessed_checkpoint_size", "Tree size of the latest checkpoint that gathered the witnesses' quorum of cosignatures.", nil, nil),
		witnessedAge:  prometheus.NewDesc("evident_witnessed_checkpoint_age_seconds", "Seconds since the witnessed checkpoint last grew (or since the server started, before the first).", nil, nil),
		cosigned:      prometheus.NewDesc("evident_witness_cosigned_size", "Tree size of the checkpoint each witness last cosigned since the server started.", []string{"witness"}, nil),
	}
}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	s := c.d
	for _, d := range []*prometheus.Desc{s.logSize, s.cpSize, s.cpAge, s.projected, s.apps, s.exceptions, s.drift, s.driftAge, s.pending, s.ratio, s.changes, s.witnessedSize, s.witnessedAge, s.cosigned} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.m.cfg.Clock()
	if log := c.m.ledger(); log != nil {
		cp := log.CheckpointSize()
		ch <- prometheus.MustNewConstMetric(c.d.logSize, prometheus.GaugeValue, float64(log.Size()))
		ch <- prometheus.MustNewConstMetric(c.d.cpSize, prometheus.GaugeValue, float64(cp))
		ch <- prometheus.MustNewConstMetric(c.d.cpAge, prometheus.GaugeValue, c.m.checkpointAge(cp, now))
	}
	ch <- prometheus.MustNewConstMetric(c.d.projected, prometheus.GaugeValue, float64(c.m.proj.Applied()))
	if p, ok := c.m.witnessProgress(); ok {
		ch <- prometheus.MustNewConstMetric(c.d.witnessedSize, prometheus.GaugeValue, float64(p.Size))
		ch <- prometheus.MustNewConstMetric(c.d.witnessedAge, prometheus.GaugeValue, now.Sub(p.At).Seconds())
		for _, name := range sortedKeys(p.Cosigned, func(a, b string) bool { return a < b }) {
			ch <- prometheus.MustNewConstMetric(c.d.cosigned, prometheus.GaugeValue, float64(p.Cosigned[name]), name)
		}
	}
	g := c.m.proj.snapshot(now)
	less2 := func(a, b [2]string) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }
	less1 := func(a, b string) bool { return a < b }
	for _, k := range sortedKeys(g.apps, less2) {
		ch <- prometheus.MustNewConstMetric(c.d.apps, prometheus.GaugeValue, g.apps[k], k[0], k[1])
	}
	for _, k := range sortedKeys(g.exceptions, less2) {
		ch <- prometheus.MustNewConstMetric(c.d.exceptions, prometheus.GaugeValue, g.exceptions[k], k[0], k[1])
	}
	for _, k := range sortedKeys(g.drift, less1) {
		ch <- prometheus.MustNewConstMetric(c.d.drift, prometheus.GaugeValue, g.drift[k], k)
		ch <- prometheus.MustNewConstMetric(c.d.driftAge, prometheus.GaugeValue, g.driftAge[k], k)
	}
	for _, k := range sortedKeys(g.pending, less1) {
		ch <- prometheus.MustNewConstMetric(c.d.pending, prometheus.GaugeValue, g.pending[k], k)
	}
	// Contract classes are few and named in the configuration; the
	// environments are capped like every other environment label.
	envs := newLabelSet(maxEnvironments)
	for _, r := range c.m.rates() {
		env := envs.get(r.Environment)
		if env == labelOther {
			continue // several environments would collide on one series
		}
		ch <- prometheus.MustNewConstMetric(c.d.ratio, prometheus.GaugeValue, r.Rate, env, r.Class)
		ch <- prometheus.MustNewConstMetric(c.d.changes, prometheus.GaugeValue, float64(r.Changes-r.Closed), env, r.Class, "open")
		ch <- prometheus.MustNewConstMetric(c.d.changes, prometheus.GaugeValue, float64(r.Closed), env, r.Class, "closed")
		ch <- prometheus.MustNewConstMetric(c.d.changes, prometheus.GaugeValue, float64(r.Complete), env, r.Class, "complete")
	}
}
