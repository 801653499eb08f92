package main

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"evident.dev/evident/internal/loadgen"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/verifier"
)

// runQueryLoad measures the read side: many concurrent clients run the audit
// queries of docs/audit-queries.md and one change's timeline for a while,
// optionally while records are ingested at a fixed rate, and it reports the
// latency of each query. --seed first posts a data set of that many records
// (the demo changes, repeated under new change ids) so the figures are
// measured at scale.
func runQueryLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("query-load", stderr)
	var q loadgen.Queries
	fs.StringVar(&q.Server, "server", defaultServer(), "server URL")
	token := fs.String("token", "", "bearer token of an auditor (default: $EVIDENT_TOKEN)")
	fs.IntVar(&q.Clients, "clients", 100, "concurrent query clients")
	fs.DurationVar(&q.Duration, "duration", 20*time.Second, "how long to query")
	fs.IntVar(&q.Seed, "seed", 0, "first post this many records (needs --key)")
	keyFile := fs.String("key", "", "runner key trusted for prod and staging, for --seed and --ingest-rate (a file only its owner may read, or env:VAR)")
	fs.IntVar(&q.IngestRate, "ingest-rate", 0, "records per second to post while querying (needs --key)")
	fs.StringVar(&q.TimelineChange, "timeline-change", "CHG-2026-06-24-0101", "change whose timeline is timed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if q.Clients < 1 || q.Duration <= 0 || q.Seed < 0 || q.IngestRate < 0 {
		return usageErrorf("query-load: --clients and --duration must be positive, --seed and --ingest-rate not negative")
	}
	if q.Seed > 0 || q.IngestRate > 0 {
		if *keyFile == "" {
			return errors.New("query-load: --seed and --ingest-rate need --key")
		}
		pemBytes, err := secret.ReadPrivateKey(*keyFile)
		if err != nil {
			return err
		}
		if q.Key, err = verifier.ParsePrivateKey(pemBytes); err != nil {
			return err
		}
	}
	q.Token = firstOf(*token, os.Getenv("EVIDENT_TOKEN"))
	return q.Run(ctx, stdout, stderr)
}
