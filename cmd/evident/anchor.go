package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"evident.dev/evident/server"
)

// runAnchor anchors the latest checkpoint of a stopped server's log once.
// A running server anchors by itself with the anchor option of its
// configuration; the data directory is locked while it runs.
func runAnchor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("anchor", stderr)
	sf := addServerFlags(fs, "the server's YAML configuration file (for data, log.origin, log.keyFile, anchor)", "data directory of a stopped server (default ./evident-data)")
	sf.addOrigin(fs, "log origin (default evident.local/log)")
	rekor := fs.String("rekor", "", "Rekor's base URL (default: anchor.rekor of the configuration)")
	rekorKey := fs.String("rekor-key", "", "file with Rekor's pinned public key, PEM (default: anchor.rekorKey)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	format := addOutputFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := format.check(); err != nil {
		return err
	}
	cfg, err := sf.load()
	if err != nil {
		return err
	}
	cfg.Anchor.Rekor = firstOf(*rekor, cfg.Anchor.Rekor)
	if cfg.Anchor.Rekor == "" || firstOf(*rekorKey, cfg.Anchor.RekorKey) == "" {
		return errors.New("anchor: give --rekor and --rekor-key (or anchor.rekor and anchor.rekorKey in --config)")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := server.AnchorOnce(ctx, cfg, *rekorKey, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return err
	}
	if format.json() {
		return writeIndented(stdout, struct {
			CheckpointSize uint64    `json:"checkpointSize"`
			Root           string    `json:"root"`
			RekorLogIndex  int64     `json:"rekorLogIndex"`
			IntegratedTime time.Time `json:"integratedTime"`
			Entry          uint64    `json:"entry"` // the anchor record's index in this log
		}{res.Anchor.CheckpointSize, res.Anchor.RootHash, res.Anchor.LogIndex, time.Unix(res.Anchor.IntegratedTime, 0).UTC(), res.Receipt.Index})
	}
	_, err = fmt.Fprintf(stdout, "anchored checkpoint %d (root %s) as Rekor entry %d (integrated %s); recorded as entry %d\n",
		res.Anchor.CheckpointSize, res.Anchor.RootHash, res.Anchor.LogIndex,
		time.Unix(res.Anchor.IntegratedTime, 0).UTC().Format(time.RFC3339), res.Receipt.Index)
	return err
}
