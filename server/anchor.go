package server

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"evident.dev/evident/anchor"
	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/ingest"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// AnchorConfig turns on anchoring of the log's checkpoints in Rekor
// (docs/anchoring.md). Anchoring is off without rekor.
type AnchorConfig struct {
	Rekor string `yaml:"rekor"` // Rekor's base URL
	// RekorVersion is 2 to anchor in Rekor v2 (rekor-tiles); default 1.
	RekorVersion int `yaml:"rekorVersion"`
	// RekorKey is a file with Rekor's public key (PEM), pinned: every
	// answer of Rekor is checked against it. A Rekor v2 key's PEM block
	// names the log's origin in an Origin header (audit.ParseRekorKeys).
	RekorKey string        `yaml:"rekorKey"`
	Interval time.Duration `yaml:"interval"` // default 1m
}

// anchorer builds the writer's anchorer, or nil when anchoring is off.
func (c *Config) anchorer(lg *ledger.Log, logKey ed25519.PrivateKey, rec *ingest.Recorder, logger *slog.Logger) (*anchor.Anchorer, time.Duration, error) {
	a := c.Anchor
	if a.Rekor == "" {
		if a.RekorKey != "" || a.Interval != 0 || a.RekorVersion != 0 {
			return nil, 0, usageErrorf("anchor: rekor (the Rekor URL) is required to anchor")
		}
		return nil, 0, nil
	}
	if a.RekorKey == "" {
		return nil, 0, usageErrorf("anchor: rekorKey (a file with Rekor's public key) is required")
	}
	if a.RekorVersion < 0 || a.RekorVersion > 2 {
		return nil, 0, usageErrorf("anchor: rekorVersion %d: 1 (Rekor v1, the default) or 2 (Rekor v2)", a.RekorVersion)
	}
	keys, err := ReadRekorKeys(c.path(a.RekorKey))
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
		Rekor: a.Rekor, RekorVersion: a.RekorVersion, RekorKeys: keys, Log: lg, LogKey: logKey, Recorder: rec, Logger: logger,
	})
	if err != nil {
		return nil, 0, err
	}
	return anc, a.Interval, nil
}

// ReadRekorKeys reads Rekor public keys from comma-separated PEM files
// (each may hold several PUBLIC KEY blocks: the keys of Rekor's shards). A
// block with an Origin header is a Rekor v2 key (audit.RekorV2Key).
func ReadRekorKeys(files string) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for _, f := range strings.Split(files, ",") {
		b, err := os.ReadFile(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("read the Rekor key: %w", err)
		}
		ks, err := audit.ParseRekorKeys(b)
		if err != nil {
			return nil, fmt.Errorf("the Rekor key %s: %w", f, err)
		}
		keys = append(keys, ks...)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("the Rekor key: no PEM PUBLIC KEY in %s", files)
	}
	return keys, nil
}

// AnchorOnce anchors the latest checkpoint of a stopped server's log in
// the Rekor at cfg.Anchor.Rekor (of cfg.Anchor.RekorVersion), and records
// the anchor in the log. A
// running server anchors by itself (anchor.rekor in its configuration);
// the data directory is locked while it runs. rekorKeyFiles, if not "",
// replaces anchor.rekorKey.
func AnchorOnce(ctx context.Context, cfg *Config, rekorKeyFiles string, logger *slog.Logger) (*anchor.Result, error) {
	keyFiles := cfg.path(cfg.Anchor.RekorKey)
	if rekorKeyFiles != "" {
		keyFiles = rekorKeyFiles
	}
	ledgerDir := cfg.ledgerDir()
	if _, err := os.Stat(filepath.Join(ledgerDir, "entries")); err != nil {
		return nil, fmt.Errorf("anchor: no log in %s: %w", cfg.Data, err)
	}
	edKey, err := anchorLogKey(cfg.keyFile())
	if err != nil {
		return nil, err
	}
	signer, err := checkpoint.NewSigner(cfg.Log.Origin, edKey)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(ledgerDir, cfg.Log.Origin, ""); err != nil {
		return nil, err
	}
	lg, err := ledger.Open(ledger.Config{Dir: ledgerDir, Origin: cfg.Log.Origin, Signer: signer, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("anchor: open the log (is its server running? it anchors by itself with the anchor option): %w", err)
	}
	res, err := anchorOpen(ctx, lg, cfg.Anchor, keyFiles, edKey, signer, cfg.keyFile(), logger)
	return res, errors.Join(err, lg.Close())
}

// anchorLogKey reads the log key AnchorOnce signs its record with.
func anchorLogKey(keyFile string) (ed25519.PrivateKey, error) {
	b, err := secret.ReadPrivateKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("anchor: log key: %w", err)
	}
	k, err := verifier.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("anchor: log key %s: %w", keyFile, err)
	}
	edKey, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("anchor: log key %s is not ed25519", keyFile)
	}
	return edKey, nil
}

// anchorOpen anchors lg's latest checkpoint; the caller closes lg.
func anchorOpen(ctx context.Context, lg *ledger.Log, ac AnchorConfig, keyFiles string, edKey ed25519.PrivateKey, signer *checkpoint.Signer, keyFile string, logger *slog.Logger) (*anchor.Result, error) {
	if keys := lg.LogKeys(); len(keys) > 0 && keys[len(keys)-1].VerifierKey != signer.VerifierKey() {
		return nil, fmt.Errorf("anchor: the log is signed with the log key %s, not with %s's", keys[len(keys)-1].VerifierKey, keyFile)
	}
	// Only the log's own records pass through this handler.
	v, err := verifier.New(verifier.TrustConfig{}, edKey.Public())
	if err != nil {
		return nil, err
	}
	rec := ingest.New(ingest.Config{Log: lg, Verifier: v, Logger: logger}).Recorder(edKey)
	keys, err := ReadRekorKeys(keyFiles)
	if err != nil {
		return nil, err
	}
	anc, err := anchor.New(anchor.Config{Rekor: ac.Rekor, RekorVersion: ac.RekorVersion, RekorKeys: keys, Log: lg, LogKey: edKey, Recorder: rec, Logger: logger})
	if err != nil {
		return nil, err
	}
	return anc.Anchor(ctx)
}
