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
	rekorVersion := fs.Int("rekor-version", 0, "2 to anchor in Rekor v2 (rekor-tiles) (default: anchor.rekorVersion, else 1)")
	rekorKey := fs.String("rekor-key", "", "file with Rekor's pinned public key, PEM; a Rekor v2 key's block has an Origin header (default: anchor.rekorKey)")
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
	if *rekorVersion != 0 {
		cfg.Anchor.RekorVersion = *rekorVersion
	}
	if cfg.Anchor.Rekor == "" || firstOf(*rekorKey, cfg.Anchor.RekorKey) == "" {
		return errors.New("anchor: give --rekor and --rekor-key (or anchor.rekor and anchor.rekorKey in --config)")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := server.AnchorOnce(ctx, cfg, *rekorKey, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return err
	}
	a := res.Anchor
	// Rekor v2 gives no integration time (its entries carry none).
	var integrated *time.Time
	if a.IntegratedTime != 0 {
		t := time.Unix(a.IntegratedTime, 0).UTC()
		integrated = &t
	}
	if format.json() {
		return writeIndented(stdout, struct {
			CheckpointSize uint64     `json:"checkpointSize"`
			Root           string     `json:"root"`
			RekorVersion   int        `json:"rekorVersion"`
			RekorLogIndex  int64      `json:"rekorLogIndex"`
			IntegratedTime *time.Time `json:"integratedTime,omitempty"`
			Entry          uint64     `json:"entry"` // the anchor record's index in this log
		}{a.CheckpointSize, a.RootHash, max(a.Version, 1), a.LogIndex, integrated, res.Receipt.Index})
	}
	where := fmt.Sprintf("Rekor entry %d", a.LogIndex)
	if a.Version == 2 {
		where = fmt.Sprintf("Rekor v2 entry %d", a.LogIndex)
	}
	if integrated != nil {
		where += " (integrated " + integrated.Format(time.RFC3339) + ")"
	}
	_, err = fmt.Fprintf(stdout, "anchored checkpoint %d (root %s) as %s; recorded as entry %d\n",
		a.CheckpointSize, a.RootHash, where, res.Receipt.Index)
	return err
}
