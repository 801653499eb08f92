package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
	"evident.dev/evident/policies"
	"evident.dev/evident/replica"
	"evident.dev/evident/verifier"
)

// writer is the write side as Start assembles it, step by step.
type writer struct {
	cfg       *Config
	logger    *slog.Logger
	keys      *logKeys
	trust     verifier.TrustConfig
	verifier  *verifier.Verifier
	metrics   *metrics.Metrics
	log       *ledger.Log
	policies  *serverPolicies // nil with the policies off
	approvals *approvals.Approvals
	judges    []ingest.Judge // besides the approval and artifact judges
}

// Start opens the log in cfg.Data as its writer, creating it with its
// genesis entry if it is new, and listens on cfg.Listen; Wait serves it.
// cfg's empty settings must have been given their defaults (Data, Listen,
// Log.Origin, Operator).
func Start(ctx context.Context, cfg *Config, logger *slog.Logger) (*Server, error) {
	w, err := openWriter(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	if err := w.judge(ctx); err != nil {
		return nil, errors.Join(err, w.log.Close())
	}
	return w.serve(ctx)
}

// openWriter opens the log with the log key, after checking that the key
// and the origin are the log's, and performs a requested key rotation.
func openWriter(ctx context.Context, cfg *Config, logger *slog.Logger) (*writer, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	w := &writer{cfg: cfg, logger: logger}
	key, err := cfg.loadLogKey(logger)
	if err != nil {
		return nil, err
	}
	if w.trust, err = cfg.writerTrust(logger); err != nil {
		return nil, err
	}
	if w.keys, err = cfg.signers(key); err != nil {
		return nil, err
	}
	// The key is checked against the log's chain of keys once it is open.
	if err := checkIdentity(cfg.ledgerDir(), cfg.Log.Origin, ""); err != nil {
		return nil, err
	}
	if w.verifier, err = verifier.New(w.trust, key.Public()); err != nil {
		return nil, err
	}
	// The metrics exist before the log so its commit hook can feed them.
	w.metrics = metrics.New(metrics.Config{Logger: logger, Version: cfg.Version})
	w.metrics.Projection().Known(w.trust.Environments()...)
	w.log, err = ledger.Open(ledger.Config{
		Dir:                cfg.ledgerDir(),
		Origin:             cfg.Log.Origin,
		Signer:             w.keys.signer,
		PreviousSigner:     w.keys.prev,
		Logger:             logger,
		MaxBatch:           cfg.Limits.MaxBatch,
		QueueSize:          cfg.Limits.QueueSize,
		CheckpointInterval: cfg.CheckpointInterval,
		CacheMB:            cfg.CacheMB,
		OnCommit:           w.metrics.BatchCommitted,
		MinFreeBytes:       int64(cfg.Limits.MinFreeMB) << 20,
	})
	if err != nil {
		return nil, err
	}
	w.metrics.SetLog(w.log)
	if err := followKeyChain(ctx, w.log, w.keys.signer, w.keys.prev, w.keys.prevKey, cfg.Operator, logger); err != nil {
		return nil, errors.Join(err, w.log.Close())
	}
	return w, nil
}

// judge records the trust and the policy set in the log (the genesis entry
// of a new log, a trust.updated entry when they changed) and makes what
// judges records: the approvals, the policies and the artifact store.
func (w *writer) judge(ctx context.Context) error {
	cfg, lg := w.cfg, w.log
	pol, err := loadPolicies(ctx, cfg)
	if err != nil {
		return err
	}
	w.policies = pol
	err = ingest.EnsureTrust(ctx, lg, w.keys.key, w.trust, ingest.Genesis{
		Operator: cfg.Operator,
		Origin:   cfg.Log.Origin,
		LogKey:   w.keys.signer.VerifierKey(),
		Versions: map[string]string{"evident": cfg.Version, "go": runtime.Version()},
		Now:      time.Now(),
		Policies: pol.info(),
	})
	if err != nil {
		return err
	}
	// One approval judge for every consumer: the ingest findings, the
	// policies' input and the gate.
	if w.approvals, err = cfg.Approvals.build(lg, w.trust); err != nil {
		return err
	}
	if w.judges, err = pol.start(ctx, cfg, lg, w.approvals, w.logger); err != nil {
		return err
	}
	if cfg.Artifacts.Configured() {
		cfg.Artifacts.Dir = cfg.path(cfg.Artifacts.Dir)
		store, err := cfg.Artifacts.Open(ctx)
		if err != nil {
			return err
		}
		w.judges = append(w.judges, ingest.ArtifactStoreJudge{Store: store})
	}
	if pol != nil {
		w.metrics.SetCompleteness(pol.tracker)
	}
	return nil
}

// serve registers the write side, the apply gate and the read side, starts
// the export, and listens.
func (w *writer) serve(ctx context.Context) (*Server, error) {
	cfg, lg, pol, logger := w.cfg, w.log, w.policies, w.logger
	ready := &readiness{}
	ready.add(metricsCaughtUp(lg, w.metrics))
	if pol != nil {
		ready.add(projectionCaughtUp("policies' completeness tracker", lg, pol.tracker.Processed))
	}
	exp, err := startExport(ctx, cfg, lg, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	var appender ingest.Appender = lg
	if exp != nil && cfg.Durability == durabilityObjectStore {
		appender = replica.DurableAppender{Log: lg, Exporter: exp}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", ready)
	ih := w.ingest(appender)
	ih.Register(mux)
	rec := ih.Recorder(w.keys.key)
	anc, anchorEvery, err := cfg.anchorer(lg, w.keys.key, rec, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	col, err := cfg.collector(lg, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	var witnessed func() []byte
	if col != nil {
		witnessed = col.Witnessed
		w.metrics.SetWitnessing(col)
	}
	access, auth, err := readRoutes(cfg, mux, lg, witnessed, pol.projection(lg), w.approvals, w.metrics, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	// The apply gate is the writer's alone: its answer names approvers
	// and every call appends a gate.decided entry (docs/security.md).
	gateMux := http.NewServeMux()
	decider := policies.Gate{Approvals: w.approvals}
	if pol != nil {
		decider.Policies = pol.judge
	}
	ingest.NewGate(ingest.GateConfig{Decider: decider, Recorder: rec, Logger: logger}).Register(gateMux)
	mux.Handle("POST /v1/gate/apply", gateAuth(auth, cfg.certRunners(), gateMux))
	srv, err := listen(cfg, lg, access, mux, logger)
	if err != nil {
		return nil, err
	}
	srv.anchor, srv.anchorEvery, srv.metrics = anc, anchorEvery, w.metrics
	if exp != nil {
		srv.background = append(srv.background, exp.Run)
	}
	if col != nil {
		srv.background = append(srv.background, col.Run)
	}
	return srv, nil
}

// ingest is the handler of POST /v1/records.
func (w *writer) ingest(appender ingest.Appender) *ingest.Handler {
	cfg := w.cfg
	return ingest.New(ingest.Config{
		Log:           appender,
		Verifier:      w.verifier,
		Judges:        append([]ingest.Judge{ingest.ApprovalJudge{Approvals: w.approvals}, ingest.ArtifactJudge{Verifier: w.verifier}}, w.judges...),
		Logger:        w.logger,
		MaxBodyBytes:  cfg.Limits.MaxBodyBytes,
		MaxClockSkew:  cfg.Limits.MaxClockSkew,
		MaxBackfill:   cfg.Limits.MaxBackfill,
		Observer:      w.metrics,
		Transport:     cfg.certRunners(),
		Origin:        cfg.Log.Origin,
		RequireOrigin: cfg.Log.RequireOrigin,
		RateLimit:     ingest.RateLimit{PerSecond: cfg.Limits.RatePerSigner, Burst: cfg.Limits.RateBurst},
	})
}
