package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"evident.dev/evident/internal/secret"
	"evident.dev/evident/ledger"
	"evident.dev/evident/metrics"
	"evident.dev/evident/metrics/dashboard"
	"evident.dev/evident/query"
	"evident.dev/evident/replica"
)

// readRoutes registers the read side (GraphQL, the log endpoints, metrics,
// pages, health), served alike by the writer and by read replicas, whose
// ledger is a follower of the writer's. witnessed, if not nil, gives the
// latest checkpoint the witnesses cosigned. The caller closes the access
// log.
func readRoutes(cfg *Config, mux *http.ServeMux, lg *ledger.Log, witnessed func() []byte, projection *query.PolicyCompleteness, approvals query.ApprovalJudge, mets *metrics.Metrics, logger *slog.Logger) (*query.AccessLog, *query.Authenticator, error) {
	access, gql, err := readSide(cfg, lg, witnessed, projection, approvals, logger)
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
	logMux.Handle("GET /v1/checkpoint/witnessed", query.WitnessedCheckpoint(witnessed))
	for _, route := range []string{"GET /v1/checkpoint", "GET /v1/checkpoint/witnessed", "GET /v1/log-key", "GET /v1/log-keys", "GET /v1/proofs/inclusion", "GET /v1/proofs/consistency"} {
		mux.Handle(route, logMux)
	}
	for _, route := range []string{"GET /v1/entries/{index}", "GET /v1/entries", "GET /v1/export"} {
		mux.Handle(route, gql.Auth().RequireAuditor(logMux))
	}
	// The same log for tlog-tiles clients: the checkpoint and hash tiles
	// for everyone, entry bundles (whole entries) like the entries above.
	tileMux := http.NewServeMux()
	var tiles replica.TileLog = lg
	if witnessed != nil {
		tiles = witnessedTiles{Log: lg, witnessed: witnessed}
	}
	replica.NewTileServer(tiles, logger).Register(tileMux)
	mux.Handle("GET /checkpoint", tileMux)
	mux.Handle("GET /tile/", tileMux)
	mux.Handle("GET /tile/entries/", gql.Auth().RequireAuditor(tileMux))
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

// readSide builds the GraphQL handler: who may read, and the access log
// every query is recorded in.
func readSide(cfg *Config, lg *ledger.Log, witnessed func() []byte, projection *query.PolicyCompleteness, approvals query.ApprovalJudge, logger *slog.Logger) (*query.AccessLog, *query.GraphQL, error) {
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
	gc := query.GraphQLConfig{Store: lg, Auth: auth, Access: access, Logger: logger, Approvals: approvals, MaxBackfill: cfg.Limits.MaxBackfill, Witnessed: witnessed}
	if cfg.Access.CursorKey == "" && os.Getenv("EVIDENT_CURSOR_KEY") != "" {
		cfg.Access.CursorKey = secret.EnvPrefix + "EVIDENT_CURSOR_KEY"
	}
	if ref := cfg.Access.CursorKey; ref != "" {
		if gc.CursorKey, err = secret.Read("access.cursorKey", cfg.path(ref)); err != nil {
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
