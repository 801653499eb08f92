package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"evident.dev/evident/anchor"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// AnchorConfig turns on anchoring of the log's checkpoints in Rekor
// (docs/anchoring.md). Anchoring is off without rekor.
type AnchorConfig struct {
	Rekor string `yaml:"rekor"` // Rekor's base URL
	// RekorKey is a file with Rekor's public key (PEM), pinned: every
	// answer of Rekor is checked against it.
	RekorKey string        `yaml:"rekorKey"`
	Interval time.Duration `yaml:"interval"` // default 1m
}

// anchorer builds the serve option's anchorer, or nil when anchoring is off.
func (c *Config) anchorer(lg *ledger.Log, logKey ed25519.PrivateKey, rec *ingest.Recorder, logger *slog.Logger) (*anchor.Anchorer, time.Duration, error) {
	a := c.Anchor
	if a.Rekor == "" {
		if a.RekorKey != "" || a.Interval != 0 {
			return nil, 0, usageErrorf("anchor: rekor (the Rekor URL) is required to anchor")
		}
		return nil, 0, nil
	}
	if a.RekorKey == "" {
		return nil, 0, usageErrorf("anchor: rekorKey (a file with Rekor's public key) is required")
	}
	keys, err := readRekorKeys(c.path(a.RekorKey))
	if err != nil {
		return nil, 0, err
	}
	if a.Interval == 0 {
		a.Interval = time.Minute
	}
	if a.Interval < time.Second {
		return nil, 0, fmt.Errorf("anchor: interval %v is below 1s; each anchor is an entry in Rekor", a.Interval)
	}
	anc, err := anchor.New(anchor.Config{
		Rekor: a.Rekor, RekorKeys: keys, Log: lg, LogKey: logKey, Recorder: rec, Logger: logger,
	})
	if err != nil {
		return nil, 0, err
	}
	return anc, a.Interval, nil
}

// readRekorKeys reads Rekor public keys from comma-separated PEM files
// (each may hold several PUBLIC KEY blocks: the keys of Rekor's shards).
func readRekorKeys(files string) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for _, f := range strings.Split(files, ",") {
		b, err := os.ReadFile(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("read the Rekor key: %w", err)
		}
		for {
			var block *pem.Block
			block, b = pem.Decode(b)
			if block == nil {
				break
			}
			if block.Type != "PUBLIC KEY" {
				continue
			}
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the Rekor key %s: %w", f, err)
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("the Rekor key: no PEM PUBLIC KEY in %s", files)
	}
	return keys, nil
}

// runAnchor anchors the latest checkpoint of a stopped server's log once.
// A running server anchors by itself with the anchor option of its
// configuration; the data directory is locked while it runs.
func runAnchor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("anchor", stderr)
	configPath := fs.String("config", "", "the server's YAML configuration file (for data, log.origin, log.keyFile, anchor)")
	data := fs.String("data", "", "data directory of a stopped server (default ./evident-data)")
	origin := fs.String("origin", "", "log origin (default evident.local/log)")
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
	cfg, err := loadConfig(*configPath)
	if err != nil {
		return err
	}
	cfg.Data = firstOf(*data, cfg.path(cfg.Data), "evident-data")
	cfg.Log.Origin = firstOf(*origin, cfg.Log.Origin, "evident.local/log")
	keyFiles := cfg.path(cfg.Anchor.RekorKey)
	if *rekorKey != "" {
		keyFiles = *rekorKey
	}
	cfg.Anchor.Rekor = firstOf(*rekor, cfg.Anchor.Rekor)
	if cfg.Anchor.Rekor == "" || keyFiles == "" {
		return errors.New("anchor: give --rekor and --rekor-key (or anchor.rekor and anchor.rekorKey in --config)")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	logger := newLogger(stderr, slog.LevelWarn)

	ledgerDir := filepath.Join(cfg.Data, "ledger")
	if _, err := os.Stat(filepath.Join(ledgerDir, "entries")); err != nil {
		return fmt.Errorf("anchor: no log in %s: %w", cfg.Data, err)
	}
	keyFile := firstOf(cfg.path(cfg.Log.KeyFile), filepath.Join(cfg.Data, "log.key"))
	b, err := readPrivateKey(keyFile)
	if err != nil {
		return fmt.Errorf("anchor: log key: %w", err)
	}
	k, err := verifier.ParsePrivateKey(b)
	if err != nil {
		return fmt.Errorf("anchor: log key %s: %w", keyFile, err)
	}
	edKey, ok := k.(ed25519.PrivateKey)
	if !ok {
		return fmt.Errorf("anchor: log key %s is not ed25519", keyFile)
	}
	signer, err := checkpoint.NewSigner(cfg.Log.Origin, edKey)
	if err != nil {
		return err
	}
	if err := checkIdentity(ledgerDir, cfg.Log.Origin, ""); err != nil {
		return err
	}
	lg, err := ledger.Open(ledger.Config{Dir: ledgerDir, Origin: cfg.Log.Origin, Signer: signer, Logger: logger})
	if err != nil {
		return fmt.Errorf("anchor: open the log (is its server running? it anchors by itself with the anchor option): %w", err)
	}
	if keys := lg.LogKeys(); len(keys) > 0 && keys[len(keys)-1].VerifierKey != signer.VerifierKey() {
		return errors.Join(fmt.Errorf("anchor: the log is signed with the log key %s, not with %s's", keys[len(keys)-1].VerifierKey, keyFile), lg.Close())
	}
	// Only the log's own records pass through this handler.
	v, err := verifier.New(verifier.TrustConfig{}, edKey.Public())
	if err != nil {
		return errors.Join(err, lg.Close())
	}
	rec := ingest.New(ingest.Config{Log: lg, Verifier: v, Logger: logger}).Recorder(edKey)
	keys, err := readRekorKeys(keyFiles)
	if err != nil {
		return errors.Join(err, lg.Close())
	}
	anc, err := anchor.New(anchor.Config{Rekor: cfg.Anchor.Rekor, RekorKeys: keys, Log: lg, LogKey: edKey, Recorder: rec, Logger: logger})
	if err != nil {
		return errors.Join(err, lg.Close())
	}
	res, err := anc.Anchor(ctx)
	if err := errors.Join(err, lg.Close()); err != nil {
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
