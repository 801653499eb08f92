package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"evident.dev/evident/server"
)

// runRestore rebuilds a data directory from the tiles in object storage.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("restore", stderr)
	from := fs.String("from", "", "s3://bucket/prefix the log was exported to (default objectStore.url)")
	sf := addServerFlags(fs, "YAML configuration file (objectStore endpoint, log key)", "data directory to restore into (default ./evident-data)")
	logKey := fs.String("log-key", "", "note verifier key of the log (default: log.verifierKey, or derived from the log key file)")
	out := addOutputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	cfg, err := sf.load()
	if err != nil {
		return err
	}
	cfg.ObjectStore.URL = firstOf(*from, cfg.ObjectStore.URL)
	if cfg.ObjectStore.URL == "" {
		return usageErrorf("restore: --from s3://bucket/prefix is required")
	}
	logger := newLogger(stderr, slog.LevelInfo)
	if cfg.Log.VerifierKey, err = server.RestoreKey(cfg, keyOrFile(*logKey)); err != nil {
		return err
	}
	if cfg.Log.Origin, err = server.KeyOrigin(cfg.Log.VerifierKey); err != nil {
		return err
	}
	p := newProgress(stderr, "restore", 0)
	pctx, stop := context.WithCancel(ctx)
	go p.run(pctx)
	n, cpSize, err := server.Restore(ctx, cfg, logger, p.done.Store)
	stop()
	if err != nil {
		return err
	}
	if out.json() {
		return writeIndented(stdout, map[string]any{"entries": n, "checkpointSize": cpSize, "origin": cfg.Log.Origin, "data": cfg.Data})
	}
	fmt.Fprintf(stdout, "restored %d entries (signed checkpoint of %d) of %s into %s\n", n, cpSize, cfg.Log.Origin, cfg.Data)
	return nil
}
