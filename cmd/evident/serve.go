package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // only reachable through --pprof's own listener
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"evident.dev/evident/anchor"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
	"evident.dev/evident/metrics/dashboard"
	"evident.dev/evident/policies"
	"evident.dev/evident/query"
	"evident.dev/evident/replica"
	"evident.dev/evident/verifier"
)

// Config is the server's YAML configuration. Relative paths in it are
// relative to the configuration file.
type Config struct {
	Listen   string `yaml:"listen"`   // default 127.0.0.1:8080
	Data     string `yaml:"data"`     // default ./evident-data
	Operator string `yaml:"operator"` // recorded in the genesis entry
	Log      struct {
		Origin  string `yaml:"origin"`  // default evident.local/log
		KeyFile string `yaml:"keyFile"` // default <data>/log.key, generated on first start
		// PreviousKeyFile rotates the log key: the key the log is signed
		// with now, which keyFile's key replaces (docs/keys.md). Kept until
		// the cross-signed checkpoint is written; harmless after.
		PreviousKeyFile string `yaml:"previousKeyFile"`
		// VerifierKey is the note verifier key of the log a read replica
		// (--follow) or a restore mirrors; it names the origin.
		VerifierKey string `yaml:"verifierKey"`
		// RequireOrigin refuses records whose predicate.logOrigin is not
		// set (origin binding, docs/keys.md); one naming another log is
		// refused always.
		RequireOrigin bool `yaml:"requireOrigin"`
	} `yaml:"log"`
	// ObjectStore is where the log is exported as tlog-tiles (scaleout.go).
	ObjectStore ObjectStoreConfig `yaml:"objectStore"`
	// Durability is "local" (default: acknowledged once fsynced) or
	// "object-store" (acknowledged once its entry bundle is in ObjectStore).
	Durability string `yaml:"durability"`
	Limits     struct {
		MaxBodyBytes int64         `yaml:"maxBodyBytes"` // default 1 MiB
		QueueSize    int           `yaml:"queueSize"`    // default 8192
		MaxBatch     int           `yaml:"maxBatch"`     // default 1024
		MaxClockSkew time.Duration `yaml:"maxClockSkew"` // default 10m
		// MaxBackfill: a record whose occurredAt is older than this at
		// receipt is judged at its receipt (verifier.JudgedAt); default 7 days.
		MaxBackfill time.Duration `yaml:"maxBackfill"`
		// RatePerSigner is the records per second one verified signer may
		// post (429 with Retry-After beyond it); 0, the default, is no limit.
		RatePerSigner float64 `yaml:"ratePerSigner"`
		RateBurst     int     `yaml:"rateBurst"` // default max(1, ratePerSigner)
		// MaxConnections bounds open client connections (each costs a
		// goroutine and buffers); beyond it new ones wait in the kernel's
		// accept queue. Default 4096.
		MaxConnections int `yaml:"maxConnections"`
		// MinFreeMB is the free space kept on the data directory's
		// filesystem: below it, posts get 503 before anything is written.
		// Default 64; -1: no reserve.
		MinFreeMB int `yaml:"minFreeMB"`
	} `yaml:"limits"`
	CheckpointInterval time.Duration `yaml:"checkpointInterval"` // default 500ms
	CacheMB            int           `yaml:"cacheMB"`            // default 24
	MemoryLimitMB      int           `yaml:"memoryLimitMB"`      // Go runtime soft limit; default 256, GOMEMLIMIT wins
	// Access is who may read (docs/audit-queries.md): bearer tokens stored
	// hashed, OIDC issuers, tenant scopes, and the access log's file.
	Access struct {
		query.AccessConfig `yaml:",inline"`
		AccessLog          string `yaml:"accessLog"` // default <data>/access.jsonl
		// CursorKey is a secret ("env:NAME" or a file only its owner
		// reads) shared by the writer and its read replicas, so that
		// GraphQL cursors work on every server of the log. Default
		// $EVIDENT_CURSOR_KEY.
		CursorKey string `yaml:"cursorKey"`
	} `yaml:"access"`
	Trust struct {
		Runners []struct {
			Name      string         `yaml:"name"`
			PublicKey string         `yaml:"publicKey"` // path to a PKIX PEM file
			Scope     verifier.Scope `yaml:"scope"`     // environments, stacks, clusters
			Approver  string         `yaml:"approver"`  // the person (e-mail) whose approvals this key signs
			// RevokedAt ends the key's trust (docs/keys.md); recorded in the log.
			RevokedAt *time.Time `yaml:"revokedAt"`
			// ClientCertificate is the subject common name or a DNS, URI or
			// e-mail SAN of the runner's mTLS client certificate: records it
			// posts over such a connection must be signed by this runner.
			ClientCertificate string `yaml:"clientCertificate"`
		} `yaml:"runners"`
		keylessTrust `yaml:",inline"` // identities, sigstore, groups (gate.go)
	} `yaml:"trust"`
	Anchor    AnchorConfig    `yaml:"anchor"`    // anchor checkpoints in Rekor (docs/anchoring.md)
	Approvals approvalsConfig `yaml:"approvals"` // approval rules and freshness windows (gate.go)
	Policies  PoliciesConfig  `yaml:"policies"`  // policy set, contracts, exceptions (docs/policies.md)
	// Artifacts, when set, is the store the server checks records'
	// artifacts against (finding artifact.missing).
	Artifacts artifactsConfig `yaml:"artifacts"`
	// TLS, when certFile and keyFile are set, serves HTTPS (TLS 1.2 and
	// later) instead of plain HTTP; the files are re-read at start only.
	TLS struct {
		CertFile string `yaml:"certFile"` // PEM certificate chain
		KeyFile  string `yaml:"keyFile"`  // PEM private key
		// ClientCAFile, when set, asks clients for a certificate issued by
		// one of these CAs (mTLS, docs/keys.md). Without RequireClientCert a
		// client without a certificate is still served (auditors with
		// bearer tokens).
		ClientCAFile      string `yaml:"clientCAFile"`
		RequireClientCert bool   `yaml:"requireClientCert"`
	} `yaml:"tls"`

	dir string // the configuration file's directory
}

func loadConfig(path string) (*Config, error) {
	cfg := &Config{dir: "."}
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.dir = filepath.Dir(path)
	return cfg, nil
}

func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, envKeyPrefix) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// trust reads the runners' public keys into the trust configuration.
func (c *Config) trust() (verifier.TrustConfig, error) {
	var t verifier.TrustConfig
	for i, r := range c.Trust.Runners {
		if r.PublicKey == "" {
			return t, fmt.Errorf("trust.runners[%d] (%s): publicKey is required", i, r.Name)
		}
		pem, err := os.ReadFile(c.path(r.PublicKey))
		if err != nil {
			return t, fmt.Errorf("trust.runners[%d] (%s): %w", i, r.Name, err)
		}
		t.Runners = append(t.Runners, verifier.Runner{Name: r.Name, PublicKey: string(pem), Scope: r.Scope, Approver: r.Approver, RevokedAt: r.RevokedAt})
	}
	return t, c.Trust.keylessTrust.apply(c, &t)
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	configPath := fs.String("config", "", "YAML configuration file")
	data := fs.String("data", "", "data directory (default ./evident-data)")
	listen := fs.String("listen", "", "listen address (default 127.0.0.1:8080)")
	operator := fs.String("operator", "", "operator identity recorded in the genesis entry")
	origin := fs.String("origin", "", "log origin (default evident.local/log)")
	verbose := fs.Bool("v", false, "debug logging")
	pprofAddr := fs.String("pprof", "", "serve Go profiling endpoints on this address (e.g. 127.0.0.1:6060)")
	follow := fs.String("follow", "", "serve as a read replica of the log exported to this s3://bucket/prefix")
	logKey := fs.String("log-key", "", "with --follow: note verifier key of the followed log, or a file holding it (default log.verifierKey)")
	lease := fs.String("lease", "", "writer high availability: lead through this Kubernetes Lease (NAMESPACE/NAME), resuming from the object store")
	kubeconfig := fs.String("kubeconfig", "", "with --lease: kubeconfig file (default in-cluster configuration, or $KUBECONFIG)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	cfg.Data = firstOf(*data, cfg.path(cfg.Data), "evident-data")
	cfg.Listen = firstOf(*listen, cfg.Listen, "127.0.0.1:8080")
	cfg.Operator = firstOf(*operator, cfg.Operator, currentUser())
	cfg.Log.Origin = firstOf(*origin, cfg.Log.Origin, "evident.local/log")
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := newLogger(stderr, level)
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit makes the collector return memory before the heap
		// doubles (GOGC's default) while Badger compacts.
		debug.SetMemoryLimit(int64(cmp.Or(cfg.MemoryLimitMB, 256)) << 20)
	}
	if *lease != "" {
		return serveWithLease(ctx, cfg, *lease, *kubeconfig, logger, stdout)
	}
	var srv *server
	if *follow != "" {
		cfg.ObjectStore.URL = *follow
		cfg.Log.VerifierKey = keyOrFile(firstOf(*logKey, cfg.Log.VerifierKey))
		srv, err = startReplica(ctx, cfg, logger)
	} else {
		srv, err = startServer(ctx, cfg, logger)
	}
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		go func() {
			// The default mux holds only net/http/pprof's handlers.
			// A CPU profile streams for its ?seconds= (30 by default).
			ps := &http.Server{Addr: *pprofAddr, Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second,
				WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute}
			err := ps.ListenAndServe()
			logger.Error("pprof listener stopped", "err", err)
		}()
	}
	fmt.Fprintf(stdout, "evident serving on %s://%s\nlog origin: %s\nlog key: %s\n", srv.scheme, srv.addr, cfg.Log.Origin, pinKey(srv.log, logger))
	return srv.wait(ctx)
}

// pinKey is the key auditors pin, which serve prints: the genesis key;
// after a rotation the key signing now follows from it (GET /v1/log-keys,
// docs/keys.md).
func pinKey(lg *ledger.Log, logger *slog.Logger) string {
	keys := lg.LogKeys()
	if len(keys) == 0 {
		return lg.VerifierKey()
	}
	if len(keys) > 1 {
		logger.Info("the log key was rotated", "genesis", keys[0].VerifierKey, "current", lg.VerifierKey(), "rotations", len(keys)-1)
	}
	return keys[0].VerifierKey
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}

type server struct {
	addr   string
	scheme string // http, or https when TLS is configured
	log    *ledger.Log
	access *query.AccessLog
	http   *http.Server
	ln     net.Listener
	logger *slog.Logger
	// anchor, if set, anchors new checkpoints in Rekor every anchorEvery.
	anchor      *anchor.Anchorer
	anchorEvery time.Duration
	// metrics tails the log for GET /metrics while the server runs.
	metrics *metrics.Metrics
	// background runs alongside the HTTP server (export, follow) until the
	// server stops; an error from it stops the server.
	background []func(ctx context.Context) error
}

func startServer(ctx context.Context, cfg *Config, logger *slog.Logger) (*server, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	keyFile := firstOf(cfg.path(cfg.Log.KeyFile), filepath.Join(cfg.Data, "log.key"))
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(keyFile, envKeyPrefix) {
		// Refuse before creating anything: a new key cannot sign a log
		// that another key has signed, and would be left behind.
		has, err := ledger.HasEntries(filepath.Join(cfg.Data, "ledger"))
		if err != nil {
			return nil, err
		}
		if has {
			return nil, fmt.Errorf("log key %s is missing, but %s holds a log signed with a log key: put that key back at %s or point log.keyFile at it (see docs/keys.md); a new key cannot sign this log", keyFile, cfg.Data, keyFile)
		}
	}
	logKey, err := loadOrCreateKey(keyFile, logger)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	edKey, ok := logKey.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("log key %s: must be ed25519 (checkpoints are ed25519 signed notes)", keyFile)
	}
	trust, err := cfg.trust()
	if err != nil {
		return nil, err
	}
	if len(trust.Runners) == 0 && len(trust.Identities) == 0 {
		groups := trust.Groups
		if trust, err = devTrust(cfg.Data, logger); err != nil {
			return nil, err
		}
		trust.Groups = groups
		if len(groups) == 0 {
			// A development server judges approvals as a configured one
			// does, against a directory: the demo data set's, whose
			// approvers are example.com addresses.
			trust.Groups = query.DemoGroups()
			logger.Warn("no approver directory configured: using the demo's (example.com approvers only)")
		}
	}
	signer, err := checkpoint.NewSigner(cfg.Log.Origin, edKey)
	if err != nil {
		return nil, err
	}
	var prevKey ed25519.PrivateKey
	var prevSigner *checkpoint.Signer
	if cfg.Log.PreviousKeyFile != "" {
		if prevKey, err = readLogKey(cfg.path(cfg.Log.PreviousKeyFile)); err != nil {
			return nil, fmt.Errorf("previous log key: %w", err)
		}
		if prevSigner, err = checkpoint.NewSigner(cfg.Log.Origin, prevKey); err != nil {
			return nil, err
		}
		if prevSigner.VerifierKey() == signer.VerifierKey() {
			return nil, errors.New("log.previousKeyFile holds the same key as log.keyFile")
		}
	}
	// The key is checked against the log's chain of keys once it is open.
	if err := checkIdentity(filepath.Join(cfg.Data, "ledger"), cfg.Log.Origin, ""); err != nil {
		return nil, err
	}
	v, err := verifier.New(trust, edKey.Public())
	if err != nil {
		return nil, err
	}
	// The metrics exist before the log so its commit hook can feed them.
	mets := metrics.New(metrics.Config{Logger: logger, Version: buildVersion()})
	mets.Projection().Known(trust.Environments()...)
	lg, err := ledger.Open(ledger.Config{
		Dir:                filepath.Join(cfg.Data, "ledger"),
		Origin:             cfg.Log.Origin,
		Signer:             signer,
		PreviousSigner:     prevSigner,
		Logger:             logger,
		MaxBatch:           cfg.Limits.MaxBatch,
		QueueSize:          cfg.Limits.QueueSize,
		CheckpointInterval: cfg.CheckpointInterval,
		CacheMB:            cfg.CacheMB,
		OnCommit:           mets.BatchCommitted,
		MinFreeBytes:       int64(cfg.Limits.MinFreeMB) << 20,
	})
	if err != nil {
		return nil, err
	}
	mets.SetLog(lg)
	if err := followKeyChain(ctx, lg, signer, prevSigner, prevKey, cfg.Operator, logger); err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	pol, err := loadPolicies(ctx, cfg)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	err = ingest.EnsureTrust(ctx, lg, edKey, trust, ingest.Genesis{
		Operator: cfg.Operator,
		Origin:   cfg.Log.Origin,
		LogKey:   signer.VerifierKey(),
		Versions: map[string]string{"evident": buildVersion(), "go": runtime.Version()},
		Now:      time.Now(),
		Policies: pol.info(),
	})
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	// One approval judge for every consumer: the ingest findings, the
	// policies' input and the gate.
	approvals, err := cfg.Approvals.build(lg, trust)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	judges, err := pol.start(ctx, cfg, lg, approvals, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	if cfg.Artifacts.configured() {
		cfg.Artifacts.Dir = cfg.path(cfg.Artifacts.Dir)
		store, err := cfg.Artifacts.open(ctx)
		if err != nil {
			return nil, errors.Join(err, lg.Close())
		}
		judges = append(judges, ingest.ArtifactStoreJudge{Store: store})
	}
	if pol != nil {
		mets.SetCompleteness(pol.tracker)
	}
	ready := &readiness{}
	ready.add(metricsCaughtUp(lg, mets))
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
	ih := ingest.New(ingest.Config{
		Log:           appender,
		Verifier:      v,
		Judges:        append([]ingest.Judge{ingest.ApprovalJudge{Approvals: approvals}, ingest.ArtifactJudge{Verifier: v}}, judges...),
		Logger:        logger,
		MaxBodyBytes:  cfg.Limits.MaxBodyBytes,
		MaxClockSkew:  cfg.Limits.MaxClockSkew,
		MaxBackfill:   cfg.Limits.MaxBackfill,
		Observer:      mets,
		Transport:     cfg.certRunners(),
		Origin:        cfg.Log.Origin,
		RequireOrigin: cfg.Log.RequireOrigin,
		RateLimit:     ingest.RateLimit{PerSecond: cfg.Limits.RatePerSigner, Burst: cfg.Limits.RateBurst},
	})
	ih.Register(mux)
	anc, anchorEvery, err := cfg.anchorer(lg, edKey, ih.Recorder(edKey), logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	access, auth, err := readRoutes(cfg, mux, lg, pol.projection(lg), approvals, mets, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	// The apply gate is the writer's alone: its answer names approvers
	// and every call appends a gate.decided entry (docs/security.md).
	gateMux := http.NewServeMux()
	decider := policies.Gate{Approvals: approvals}
	if pol != nil {
		decider.Policies = pol.judge
	}
	ingest.NewGate(ingest.GateConfig{Decider: decider, Recorder: ih.Recorder(edKey), Logger: logger}).Register(gateMux)
	mux.Handle("POST /v1/gate/apply", gateAuth(auth, cfg.certRunners(), gateMux))
	srv, err := listen(cfg, lg, access, mux, logger)
	if err != nil {
		return nil, err
	}
	srv.anchor, srv.anchorEvery, srv.metrics = anc, anchorEvery, mets
	if exp != nil {
		srv.background = append(srv.background, exp.Run)
	}
	return srv, nil
}

// readRoutes registers the read side (GraphQL, the log endpoints, metrics,
// pages, health), served alike by the writer and by read replicas, whose
// ledger is a follower of the writer's. The caller closes the access log.
func readRoutes(cfg *Config, mux *http.ServeMux, lg *ledger.Log, projection *query.PolicyCompleteness, approvals query.ApprovalJudge, mets *metrics.Metrics, logger *slog.Logger) (*query.AccessLog, *query.Authenticator, error) {
	access, gql, err := readSide(cfg, lg, projection, approvals, logger)
	if err != nil {
		return nil, nil, err
	}
	gql.Register(mux)
	// The log endpoints: checkpoints and proofs are for everyone; whole
	// entries, term lookups and exports cannot be filtered by tenant, so
	// once access is configured only auditors reach them.
	logMux := http.NewServeMux()
	query.NewProofHandler(lg, logger).Register(logMux)
	query.NewExportHandler(lg, logger).Register(logMux)
	for _, route := range []string{"GET /v1/checkpoint", "GET /v1/log-key", "GET /v1/log-keys", "GET /v1/proofs/inclusion", "GET /v1/proofs/consistency"} {
		mux.Handle(route, logMux)
	}
	for _, route := range []string{"GET /v1/entries/{index}", "GET /v1/entries", "GET /v1/export"} {
		mux.Handle(route, gql.Auth().RequireAuditor(logMux))
	}
	mets.Register(mux)
	pages, err := dashboard.New(dashboard.Config{Log: lg, Source: mets.Projection(), Logger: logger})
	if err != nil {
		return nil, nil, errors.Join(err, access.Close())
	}
	// The pages show every change, across tenants: like the whole-log
	// endpoints, only auditors reach them once access is configured.
	pagesMux := http.NewServeMux()
	pages.Register(pagesMux)
	for _, route := range []string{"GET /{$}", "GET /changes", "GET /changes/{id...}", "GET /assets/"} {
		mux.Handle(route, gql.Auth().RequireAuditor(pagesMux))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %d\n", lg.Size())
	})
	return access, gql.Auth(), nil
}

// listen opens the listener; on failure it closes the access log and the log.
func listen(cfg *Config, lg *ledger.Log, access *query.AccessLog, mux *http.ServeMux, logger *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen: %w", err), access.Close(), lg.Close())
	}
	ln = netutil.LimitListener(ln, cmp.Or(cfg.Limits.MaxConnections, 4096))
	scheme := "http"
	if cfg.TLS.CertFile != "" || cfg.TLS.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.path(cfg.TLS.CertFile), cfg.path(cfg.TLS.KeyFile))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("tls: %w", err), ln.Close(), access.Close(), lg.Close())
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if err := cfg.clientAuth(tc); err != nil {
			return nil, errors.Join(err, ln.Close(), access.Close(), lg.Close())
		}
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // exports stream for a while
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("serving", "addr", ln.Addr().String(), "origin", cfg.Log.Origin, "entries", lg.Size())
	return &server{addr: ln.Addr().String(), scheme: scheme, log: lg, access: access, http: hs, ln: ln, logger: logger}, nil
}

// wait serves until ctx ends, then drains requests and closes the log.
func (s *server) wait(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if s.anchor != nil {
		g.Go(func() error { return s.anchor.Run(gctx, s.anchorEvery) })
	}
	for _, fn := range s.background {
		g.Go(func() error {
			if err := fn(gctx); err != nil && gctx.Err() == nil {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		err := s.metrics.Tail(gctx)
		// Once shutdown has begun the log is closed under the tail, whose
		// next read fails with ledger.ErrClosed.
		if !errors.Is(err, context.Canceled) && !errors.Is(err, ledger.ErrClosed) && gctx.Err() == nil {
			// A damaged entry stops the metrics, not the server: auditors
			// still need its proofs and export to find the damage.
			s.logger.Error("metrics stopped: /metrics no longer advances", "err", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.http.Shutdown(shutdownCtx)
		if err != nil {
			// Requests still running (a long export) lose their
			// connections, so they end and release their snapshots: the
			// log's Close waits for those.
			err = errors.Join(err, s.http.Close())
		}
		return errors.Join(err, s.access.Close(), s.log.Close())
	})
	err := g.Wait()
	s.logger.Info("stopped", "entries", s.log.Size())
	return err
}

// checkIdentity refuses to serve an existing log under another origin than
// its genesis entry names (or, given genesisKey, another genesis key): the
// checkpoints and entries it would add could never verify. It runs before
// the ledger opens, since opening may already sign a checkpoint. The log key
// itself is checked against the chain of keys once the log is open
// (followKeyChain); the ledger never signs with a key the chain does not
// name.
func checkIdentity(ledgerDir, origin, genesisKey string) error {
	if _, err := os.Stat(filepath.Join(ledgerDir, "entries")); errors.Is(err, fs.ErrNotExist) {
		return nil // a new log
	}
	store, err := ledger.OpenStore(ledgerDir, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	snap, err := store.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	if snap.Size() == 0 {
		return nil
	}
	haveOrigin, haveKey, err := genesisIdentity(snap)
	if err != nil {
		return err
	}
	if haveOrigin != origin {
		return fmt.Errorf("the log in %s is %q, but this server would sign as %q: "+
			"set the origin (--origin, log.origin) the log was created with", ledgerDir, haveOrigin, origin)
	}
	if genesisKey != "" && haveKey != genesisKey {
		return fmt.Errorf("the log in %s was created with the log key %s, not %s", ledgerDir, haveKey, genesisKey)
	}
	return nil
}

// followKeyChain checks the log key against the log's chain of keys (the
// genesis key and every rotation since) and performs a requested rotation:
//
//   - the key is the chain's last: the server signs as before. If the
//     log crashed between a rotation entry and its cross-signed checkpoint,
//     the previous key must be configured to finish it.
//   - the previous key is the chain's last: rotate, appending the
//     trust.updated entry that names the new key, signed by the previous
//     one; the ledger cross-signs the next checkpoint.
//   - anything else is refused: a key the log never announced.
func followKeyChain(ctx context.Context, lg *ledger.Log, signer, prev *checkpoint.Signer, prevKey ed25519.PrivateKey, operator string, logger *slog.Logger) error {
	keys := lg.LogKeys()
	if len(keys) == 0 {
		if prev != nil {
			logger.Warn("log.previousKeyFile is ignored: the log is new, its genesis names log.keyFile's key")
		}
		return nil
	}
	last := keys[len(keys)-1]
	hint := "set log.keyFile to the key the log is signed with now"
	switch {
	case last.VerifierKey == signer.VerifierKey():
		if len(keys) > 1 && lg.CheckpointSize() <= last.At {
			if before := keys[len(keys)-2].VerifierKey; prev == nil || prev.VerifierKey() != before {
				return fmt.Errorf("entry %d rotated the log key to %s but no checkpoint is signed by both keys yet: set log.previousKeyFile to the key it replaced (%s) so the server can write it", last.At, last.VerifierKey, before)
			}
		}
		return nil
	case prev != nil && last.VerifierKey == prev.VerifierKey():
		if err := ingest.RotateLogKey(ctx, lg, prevKey, signer.VerifierKey(), operator, time.Now()); err != nil {
			return fmt.Errorf("rotate the log key: %w", err)
		}
		logger.Info("rotated the log key", "from", prev.VerifierKey(), "to", signer.VerifierKey(), "entry", lg.Size()-1)
		return nil
	case prev != nil:
		hint = "log.previousKeyFile does not hold it either"
	}
	from := "the genesis"
	if last.At > 0 {
		from = fmt.Sprintf("entry %d", last.At)
	}
	return fmt.Errorf("the log is signed with the log key %s (named by %s), not with log.keyFile's %s: %s; to rotate to a new key, set log.keyFile to the new key and log.previousKeyFile to the current one",
		last.VerifierKey, from, signer.VerifierKey(), hint)
}

// readLogKey reads an existing ed25519 log key, refusing one others may read.
func readLogKey(path string) (ed25519.PrivateKey, error) {
	b, err := readPrivateKey(path)
	if err != nil {
		return nil, err
	}
	k, err := verifier.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a log key must be ed25519 (checkpoints are ed25519 signed notes)", path)
	}
	return ed, nil
}

// loadOrCreateKey reads a PKCS#8 key, or creates an ed25519 one (mode 0600)
// if the file does not exist. A key readable by others is refused.
func loadOrCreateKey(path string, logger *slog.Logger) (any, error) {
	if strings.HasPrefix(path, envKeyPrefix) { // held by a secret store: never generated
		return readLogKey(path)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, _, err := verifier.GenerateKey("ed25519")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, priv, 0o600); err != nil {
			return nil, err
		}
		logger.Info("generated a new log key", "file", path)
		b = priv
	} else if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	return verifier.ParsePrivateKey(b)
}

// devTrust trusts one generated key for every environment, so that a server
// started with no configuration accepts records at once. It says so loudly.
// The key also relays approvals: on a development machine it stands in for
// the code host's review webhook as well as for the runners.
func devTrust(dataDir string, logger *slog.Logger) (verifier.TrustConfig, error) {
	keyPath := filepath.Join(dataDir, "dev-runner.key")
	pubPath := filepath.Join(dataDir, "dev-runner.pub")
	if _, err := os.Stat(pubPath); errors.Is(err, fs.ErrNotExist) {
		priv, pub, err := verifier.GenerateKey("ed25519")
		if err != nil {
			return verifier.TrustConfig{}, err
		}
		if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
			return verifier.TrustConfig{}, err
		}
		if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
			return verifier.TrustConfig{}, err
		}
	}
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		return verifier.TrustConfig{}, err
	}
	logger.Warn("no trusted runners configured: trusting the development key for every environment, and to relay approvals", "key", keyPath)
	return verifier.TrustConfig{Runners: []verifier.Runner{{
		Name: "dev-runner", PublicKey: string(pub), Scope: verifier.Scope{Environments: []string{"*"}, RelayApprovals: true},
	}}}, nil
}

// readSide builds the GraphQL handler: who may read, and the access log
// every query is recorded in.
func readSide(cfg *Config, lg *ledger.Log, projection *query.PolicyCompleteness, approvals query.ApprovalJudge, logger *slog.Logger) (*query.AccessLog, *query.GraphQL, error) {
	auth, err := query.NewAuthenticator(cfg.Access.AccessConfig)
	if err != nil {
		return nil, nil, err
	}
	if auth.Open() {
		logger.Warn("no access configured: every caller reads the whole log as an auditor (configure access before exposing this server)")
	}
	access, err := query.OpenAccessLog(firstOf(cfg.path(cfg.Access.AccessLog), filepath.Join(cfg.Data, "access.jsonl")))
	if err != nil {
		return nil, nil, err
	}
	gc := query.GraphQLConfig{Store: lg, Auth: auth, Access: access, Logger: logger, Approvals: approvals, MaxBackfill: cfg.Limits.MaxBackfill}
	if cfg.Access.CursorKey == "" && os.Getenv("EVIDENT_CURSOR_KEY") != "" {
		cfg.Access.CursorKey = envKeyPrefix + "EVIDENT_CURSOR_KEY"
	}
	if ref := cfg.Access.CursorKey; ref != "" {
		if gc.CursorKey, err = readSecret("access.cursorKey", cfg.path(ref)); err != nil {
			return nil, nil, errors.Join(err, access.Close())
		}
	}
	if projection != nil {
		// Completeness and exceptions in force from the policies' tracker;
		// with the policies off, completeness is null and expiring
		// exceptions come from the log's expiry index.
		gc.Completeness, gc.Exceptions = *projection, *projection
	}
	gql, err := query.NewGraphQL(gc)
	if err != nil {
		return nil, nil, errors.Join(err, access.Close())
	}
	return access, gql, nil
}
