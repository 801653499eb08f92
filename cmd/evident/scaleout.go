package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/klog/v2"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
	"evident.dev/evident/query"
	"evident.dev/evident/replica"
)

// ObjectStoreConfig locates the bucket the log is exported to as tlog-tiles.
// Credentials come only from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY), never from the configuration file.
type ObjectStoreConfig struct {
	URL      string `yaml:"url"`      // s3://bucket/prefix; empty: no export
	Endpoint string `yaml:"endpoint"` // host:port; default $EVIDENT_S3_ENDPOINT
	Secure   bool   `yaml:"secure"`   // TLS to the endpoint
	Region   string `yaml:"region"`   // default $EVIDENT_S3_REGION

	// claim is the writer's claim on the bucket when it was taken before
	// restoring from it (serve --lease); otherwise the exporter claims it.
	claim *replica.Claim
}

const (
	durabilityLocal       = "local"
	durabilityObjectStore = "object-store"
)

// maxBodyWithTiles bounds posted records when the log is exported: an entry
// bundle holds leaves of at most 65535 bytes, and a leaf adds the log's
// metadata (signer, findings, decision) to the record.
const maxBodyWithTiles = 48 << 10

func openObjectStore(ctx context.Context, c ObjectStoreConfig) (*replica.S3, error) {
	return replica.OpenS3(ctx, replica.S3Config{
		URL:       c.URL,
		Endpoint:  firstOf(c.Endpoint, os.Getenv("EVIDENT_S3_ENDPOINT")),
		Secure:    c.Secure || os.Getenv("EVIDENT_S3_SECURE") == "true",
		Region:    firstOf(c.Region, os.Getenv("EVIDENT_S3_REGION")),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
	})
}

// startExport checks the durability settings and, with an object store
// configured, returns the exporter the server runs, started: the bucket is
// claimed for this writer, or refused, before the server listens.
func startExport(ctx context.Context, cfg *Config, lg *ledger.Log, logger *slog.Logger) (*replica.Exporter, error) {
	switch cfg.Durability {
	case "", durabilityLocal:
	case durabilityObjectStore:
		if cfg.ObjectStore.URL == "" {
			return nil, errors.New("durability object-store needs objectStore.url")
		}
	default:
		return nil, fmt.Errorf("durability %q: want %s or %s", cfg.Durability, durabilityLocal, durabilityObjectStore)
	}
	if cfg.ObjectStore.URL == "" {
		return nil, nil
	}
	if cfg.Limits.MaxBodyBytes == 0 {
		cfg.Limits.MaxBodyBytes = maxBodyWithTiles
	}
	if cfg.Limits.MaxBodyBytes > maxBodyWithTiles {
		return nil, fmt.Errorf("limits.maxBodyBytes %d: at most %d when the log is exported to object storage (entry bundles hold leaves of at most 64 KiB)",
			cfg.Limits.MaxBodyBytes, maxBodyWithTiles)
	}
	store, err := openObjectStore(ctx, cfg.ObjectStore)
	if err != nil {
		return nil, err
	}
	logger.Info("exporting the log as tlog-tiles", "to", cfg.ObjectStore.URL, "durability", firstOf(cfg.Durability, durabilityLocal))
	exp, err := replica.NewExporter(replica.ExporterConfig{Log: lg, Store: store, Logger: logger.With("component", "export"),
		Writer: writerIdentity(), Claim: cfg.ObjectStore.claim})
	if err != nil {
		return nil, err
	}
	if err := exp.Start(ctx); err != nil {
		return nil, fmt.Errorf("object store %s: %w", cfg.ObjectStore.URL, err)
	}
	return exp, nil
}

// writerIdentity names this process in the bucket's writer claim.
func writerIdentity() string {
	return fmt.Sprintf("%s pid %d", firstOf(os.Getenv("POD_NAME"), hostname()), os.Getpid())
}

// startReplica serves the read endpoints from a follower of the log in
// cfg.ObjectStore.URL.
func startReplica(ctx context.Context, cfg *Config, logger *slog.Logger) (*server, error) {
	if cfg.Log.VerifierKey == "" {
		return nil, errors.New("--follow needs the followed log's verifier key (--log-key or log.verifierKey), as the writer prints it")
	}
	origin, err := keyOrigin(cfg.Log.VerifierKey)
	if err != nil {
		return nil, err
	}
	cfg.Log.Origin = origin
	store, err := openObjectStore(ctx, cfg.ObjectStore)
	if err != nil {
		return nil, err
	}
	lg, err := openFollower(cfg)
	if err != nil {
		return nil, err
	}
	f, err := replica.NewFollower(replica.FollowerConfig{Log: lg, Store: store, Logger: logger.With("component", "follow")})
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/records", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":"this server is a read replica: post records to the writer","code":"read_replica"}`+"\n")
	})
	// Metrics are computed from the ledger, so a replica shows the writer's
	// (but for ingest figures and completeness, which only the writer has).
	mets := metrics.New(metrics.Config{Logger: logger, Version: buildVersion()})
	mets.SetLog(lg)
	// The approval judge needs the directory: with trust configured here
	// as on the writer, GraphQL says of each approval whether it counts;
	// without, those fields are null, as completeness is.
	trust, err := cfg.trust()
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	var approvals query.ApprovalJudge
	if len(trust.Groups) > 0 {
		a, err := cfg.Approvals.build(lg, trust)
		if err != nil {
			return nil, errors.Join(err, lg.Close())
		}
		approvals = a
	}
	ready := &readiness{}
	ready.add(synced(f.LastSync))
	ready.add(metricsCaughtUp(lg, mets))
	mux.Handle("GET /readyz", ready)
	access, _, err := readRoutes(cfg, mux, lg, nil, approvals, mets, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	srv, err := listen(cfg, lg, access, mux, logger)
	if err != nil {
		return nil, err
	}
	srv.metrics = mets
	logger.Info("following", "from", cfg.ObjectStore.URL, "origin", origin)
	srv.background = append(srv.background, f.Run)
	return srv, nil
}

// openFollower opens the follower ledger in the data directory, after
// checking that a log already there is the followed one.
func openFollower(cfg *Config) (*ledger.Log, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	dir := filepath.Join(cfg.Data, "ledger")
	if err := checkIdentity(dir, cfg.Log.Origin, cfg.Log.VerifierKey); err != nil {
		return nil, err
	}
	return ledger.Open(ledger.Config{
		Dir:         dir,
		Origin:      cfg.Log.Origin,
		VerifierKey: cfg.Log.VerifierKey,
		CacheMB:     cfg.CacheMB,
	})
}

// keyOrigin is the name of a note verifier key: the log's origin.
func keyOrigin(vkey string) (string, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("log verifier key: %w", err)
	}
	return v.Name(), nil
}

// runRestore rebuilds a data directory from the tiles in object storage.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("restore", stderr)
	from := fs.String("from", "", "s3://bucket/prefix the log was exported to (default objectStore.url)")
	configPath := fs.String("config", "", "YAML configuration file (objectStore endpoint, log key)")
	data := fs.String("data", "", "data directory to restore into (default ./evident-data)")
	logKey := fs.String("log-key", "", "note verifier key of the log (default: log.verifierKey, or derived from the log key file)")
	out := addOutputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	cfg.Data = firstOf(*data, cfg.path(cfg.Data), "evident-data")
	cfg.ObjectStore.URL = firstOf(*from, cfg.ObjectStore.URL)
	if cfg.ObjectStore.URL == "" {
		return usageErrorf("restore: --from s3://bucket/prefix is required")
	}
	logger := newLogger(stderr, slog.LevelInfo)
	if cfg.Log.VerifierKey, err = restoreKey(cfg, keyOrFile(*logKey)); err != nil {
		return err
	}
	if cfg.Log.Origin, err = keyOrigin(cfg.Log.VerifierKey); err != nil {
		return err
	}
	p := newProgress(stderr, "restore", 0)
	n, cpSize, err := restoreInto(ctx, cfg, logger, p)
	if err != nil {
		return err
	}
	if out.json() {
		return writeIndented(stdout, map[string]any{"entries": n, "checkpointSize": cpSize, "origin": cfg.Log.Origin, "data": cfg.Data})
	}
	fmt.Fprintf(stdout, "restored %d entries (signed checkpoint of %d) of %s into %s\n", n, cpSize, cfg.Log.Origin, cfg.Data)
	return nil
}

// restoreInto copies the bucket's log into the data directory: all of it
// into an empty one, what is missing into one holding a prefix of it.
func restoreInto(ctx context.Context, cfg *Config, logger *slog.Logger, p *progress) (size, checkpoint uint64, err error) {
	store, err := openObjectStore(ctx, cfg.ObjectStore)
	if err != nil {
		return 0, 0, err
	}
	lg, err := openFollower(cfg)
	if err != nil {
		return 0, 0, err
	}
	stopProgress := func() {}
	if p != nil {
		pctx, stop := context.WithCancel(ctx)
		stopProgress = stop
		go p.run(pctx)
		go func() { // the follower ledger's size is the count
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					p.done.Store(lg.Size())
				}
			}
		}()
	}
	size, err = replica.Restore(ctx, lg, store, logger)
	stopProgress()
	checkpoint = lg.CheckpointSize()
	if cerr := lg.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return size, checkpoint, fmt.Errorf("restore from %s: %w", cfg.ObjectStore.URL, err)
	}
	return size, checkpoint, nil
}

// restoreKey is the log's verifier key: given, configured, or derived from
// the log key file the writer that continues the log will sign with.
func restoreKey(cfg *Config, flagKey string) (string, error) {
	if k := firstOf(flagKey, cfg.Log.VerifierKey); k != "" {
		return k, nil
	}
	keyFile := firstOf(cfg.path(cfg.Log.KeyFile), filepath.Join(cfg.Data, "log.key"))
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(keyFile, envKeyPrefix) {
		return "", fmt.Errorf("restore: give --log-key, or the log key file (%s) the log is signed with", keyFile)
	}
	ed, err := readLogKey(keyFile)
	if err != nil {
		return "", err
	}
	origin := firstOf(cfg.Log.Origin, "evident.local/log")
	s, err := checkpoint.NewSigner(origin, ed)
	if err != nil {
		return "", err
	}
	return s.VerifierKey(), nil
}

// serveWithLease runs this server as one of several writer candidates: it
// waits for the Kubernetes Lease, restores what the bucket holds beyond its
// data directory, and serves as the writer until it loses the lease, then
// exits (the orchestrator restarts it as a standby).
func serveWithLease(ctx context.Context, cfg *Config, lease, kubeconfig string, logger *slog.Logger, stdout io.Writer) error {
	ns, name, ok := strings.Cut(lease, "/")
	if !ok || ns == "" || name == "" {
		return usageErrorf("--lease %q: want NAMESPACE/NAME", lease)
	}
	if cfg.ObjectStore.URL == "" {
		return errors.New("--lease needs objectStore.url: a new leader resumes the log from it")
	}
	if cfg.Durability != durabilityObjectStore {
		logger.Warn("--lease without durability object-store: records acknowledged but not yet exported are lost when the writer's disk is")
	}
	restCfg, err := kubeConfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("--lease: Kubernetes API: %w", err)
	}
	leases, err := coordinationv1.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("--lease: Kubernetes API: %w", err)
	}
	identity := firstOf(os.Getenv("POD_NAME"), hostname())
	klog.SetSlogLogger(logger.With("component", "lease"))
	return replica.Lead(ctx, replica.LeaseConfig{
		Leases: leases, Namespace: ns, Name: name, Identity: identity, Logger: logger,
	}, func(ctx context.Context) error {
		if cfg.Log.VerifierKey == "" {
			if cfg.Log.VerifierKey, err = restoreKey(cfg, ""); err != nil {
				return err
			}
		}
		// Claim the bucket before reading it: from then on the previous
		// leader, if it still runs, cannot acknowledge a record this
		// restore would miss.
		store, err := openObjectStore(ctx, cfg.ObjectStore)
		if err != nil {
			return err
		}
		if cfg.ObjectStore.claim, err = replica.ClaimBucket(ctx, store, writerIdentity()); err != nil {
			return err
		}
		n, cpSize, err := restoreInto(ctx, cfg, logger, nil)
		if err != nil {
			return err
		}
		logger.Info("resumed from object storage", "entries", n, "checkpoint", cpSize)
		srv, err := startServer(ctx, cfg, logger)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "evident serving on %s://%s\nlog origin: %s\nlog key: %s\n", srv.scheme, srv.addr, cfg.Log.Origin, pinKey(srv.log, logger))
		return srv.wait(ctx)
	})
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "evident"
	}
	return h
}
