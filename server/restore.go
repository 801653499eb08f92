package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/replica"
)

// Restore copies the log in cfg.ObjectStore.URL into cfg.Data: all of it
// into an empty data directory, what is missing into one holding a prefix
// of it. cfg.Log.VerifierKey and cfg.Log.Origin name the log (RestoreKey,
// KeyOrigin). While it copies, progress, if not nil, is called every half
// second with the number of entries restored so far. It returns the
// restored log's size and the size its latest signed checkpoint covers.
func Restore(ctx context.Context, cfg *Config, logger *slog.Logger, progress func(entries uint64)) (size, checkpoint uint64, err error) {
	store, err := openObjectStore(ctx, cfg.ObjectStore)
	if err != nil {
		return 0, 0, err
	}
	lg, err := openFollower(cfg)
	if err != nil {
		return 0, 0, err
	}
	stopProgress := func() {}
	if progress != nil {
		pctx, stop := context.WithCancel(ctx)
		stopProgress = stop
		go func() { // the follower ledger's size is the count
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					progress(lg.Size())
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

// RestoreKey is the log's verifier key: given, configured, or derived from
// the log key file the writer that continues the log will sign with.
func RestoreKey(cfg *Config, given string) (string, error) {
	if k := firstOf(given, cfg.Log.VerifierKey); k != "" {
		return k, nil
	}
	keyFile := cfg.keyFile()
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(keyFile, secret.EnvPrefix) {
		return "", fmt.Errorf("restore: give --log-key, or the log key file (%s) the log is signed with", keyFile)
	}
	ed, err := readLogKey(keyFile)
	if err != nil {
		return "", err
	}
	origin := firstOf(cfg.Log.Origin, DefaultOrigin)
	s, err := checkpoint.NewSigner(origin, ed)
	if err != nil {
		return "", err
	}
	return s.VerifierKey(), nil
}
