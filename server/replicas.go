package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"golang.org/x/mod/sumdb/note"

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
	// restoring from it (Lead); otherwise the exporter claims it.
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

// StartReplica opens a read replica of the log exported to
// cfg.ObjectStore.URL, whose note verifier key is cfg.Log.VerifierKey (its
// name is the origin), and listens; Wait serves it, following the bucket.
func StartReplica(ctx context.Context, cfg *Config, logger *slog.Logger) (*Server, error) {
	if cfg.Log.VerifierKey == "" {
		return nil, errors.New("--follow needs the followed log's verifier key (--log-key or log.verifierKey), as the writer prints it")
	}
	origin, err := KeyOrigin(cfg.Log.VerifierKey)
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
	srv, err := serveReplica(cfg, lg, f, logger)
	if err != nil {
		return nil, err
	}
	logger.Info("following", "from", cfg.ObjectStore.URL, "origin", origin)
	srv.background = append(srv.background, f.Run)
	return srv, nil
}

// serveReplica registers a replica's routes, the read side's, and listens.
func serveReplica(cfg *Config, lg *ledger.Log, f *replica.Follower, logger *slog.Logger) (*Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/records", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":"this server is a read replica: post records to the writer","code":"read_replica"}`+"\n")
	})
	// Metrics are computed from the ledger, so a replica shows the writer's
	// (but for ingest figures and completeness, which only the writer has).
	mets := metrics.New(metrics.Config{Logger: logger, Version: cfg.Version})
	mets.SetLog(lg)
	approvals, err := replicaApprovals(cfg, lg)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	ready := &readiness{}
	ready.add(synced(f.LastSync))
	ready.add(metricsCaughtUp(lg, mets))
	mux.Handle("GET /readyz", ready)
	access, _, err := readRoutes(cfg, mux, lg, nil, nil, approvals, mets, logger)
	if err != nil {
		return nil, errors.Join(err, lg.Close())
	}
	srv, err := listen(cfg, lg, access, mux, logger)
	if err != nil {
		return nil, err
	}
	srv.metrics = mets
	return srv, nil
}

// replicaApprovals is the approval judge a replica's GraphQL answers with.
// It needs the directory: with trust configured here as on the writer,
// GraphQL says of each approval whether it counts; without, those fields
// are null, as completeness is.
func replicaApprovals(cfg *Config, lg *ledger.Log) (query.ApprovalJudge, error) {
	trust, err := cfg.trust()
	if err != nil || len(trust.Groups) == 0 {
		return nil, err
	}
	return cfg.Approvals.build(lg, trust)
}

// openFollower opens the follower ledger in the data directory, after
// checking that a log already there is the followed one.
func openFollower(cfg *Config) (*ledger.Log, error) {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := checkIdentity(cfg.ledgerDir(), cfg.Log.Origin, cfg.Log.VerifierKey); err != nil {
		return nil, err
	}
	return ledger.Open(ledger.Config{
		Dir:         cfg.ledgerDir(),
		Origin:      cfg.Log.Origin,
		VerifierKey: cfg.Log.VerifierKey,
		CacheMB:     cfg.CacheMB,
	})
}

// KeyOrigin is the name of a note verifier key: the log's origin.
func KeyOrigin(vkey string) (string, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("log verifier key: %w", err)
	}
	return v.Name(), nil
}
