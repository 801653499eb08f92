package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// checkIdentity refuses to serve an existing log under another origin than
// its genesis entry names (or, given genesisKey, another genesis key): the
// checkpoints and entries it would add could never verify. It runs before
// the ledger opens, since opening may already sign a checkpoint. The log key
// itself is checked against the chain of keys once the log is open
// (followKeyChain); the ledger never signs with a key the chain does not
// name.
func checkIdentity(ledgerDir, origin, genesisKey string) error {
	if _, err := os.Stat(filepath.Join(ledgerDir, "entries")); errors.Is(err, fs.ErrNotExist) {
		return nil // a new log
	}
	store, err := ledger.OpenStore(ledgerDir, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	snap, err := store.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	if snap.Size() == 0 {
		return nil
	}
	haveOrigin, haveKey, err := genesisIdentity(snap)
	if err != nil {
		return err
	}
	if haveOrigin != origin {
		return fmt.Errorf("the log in %s is %q, but this server would sign as %q: "+
			"set the origin (--origin, log.origin) the log was created with", ledgerDir, haveOrigin, origin)
	}
	if genesisKey != "" && haveKey != genesisKey {
		return fmt.Errorf("the log in %s was created with the log key %s, not %s", ledgerDir, haveKey, genesisKey)
	}
	return nil
}

// genesisIdentity reads the log origin and key its bootstrap record names.
func genesisIdentity(snap *ledger.Snapshot) (origin, key string, err error) {
	leaf, err := snap.Leaf(0)
	if err != nil {
		return "", "", fmt.Errorf("genesis: %w", err)
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return "", "", fmt.Errorf("entry 0: %w", err)
	}
	_, payload, err := verifier.DecodeEnvelope(e.Envelope)
	if err != nil {
		return "", "", fmt.Errorf("entry 0: %w", err)
	}
	st, err := evidence.Decode(payload)
	if err != nil || st.Predicate.Bootstrap == nil {
		return "", "", fmt.Errorf("entry 0 is not a bootstrap record (%v)", err)
	}
	return st.Predicate.Bootstrap.LogOrigin, st.Predicate.Bootstrap.LogKey, nil
}

// followKeyChain checks the log key against the log's chain of keys (the
// genesis key and every rotation since) and performs a requested rotation:
//
//   - the key is the chain's last: the server signs as before. If the
//     log crashed between a rotation entry and its cross-signed checkpoint,
//     the previous key must be configured to finish it.
//   - the previous key is the chain's last: rotate, appending the
//     trust.updated entry that names the new key, signed by the previous
//     one; the ledger cross-signs the next checkpoint.
//   - anything else is refused: a key the log never announced.
func followKeyChain(ctx context.Context, lg *ledger.Log, signer, prev *checkpoint.Signer, prevKey ed25519.PrivateKey, operator string, logger *slog.Logger) error {
	keys := lg.LogKeys()
	if len(keys) == 0 {
		if prev != nil {
			logger.Warn("log.previousKeyFile is ignored: the log is new, its genesis names log.keyFile's key")
		}
		return nil
	}
	last := keys[len(keys)-1]
	hint := "set log.keyFile to the key the log is signed with now"
	switch {
	case last.VerifierKey == signer.VerifierKey():
		if len(keys) > 1 && lg.CheckpointSize() <= last.At {
			if before := keys[len(keys)-2].VerifierKey; prev == nil || prev.VerifierKey() != before {
				return fmt.Errorf("entry %d rotated the log key to %s but no checkpoint is signed by both keys yet: set log.previousKeyFile to the key it replaced (%s) so the server can write it", last.At, last.VerifierKey, before)
			}
		}
		return nil
	case prev != nil && last.VerifierKey == prev.VerifierKey():
		if err := ingest.RotateLogKey(ctx, lg, prevKey, signer.VerifierKey(), operator, time.Now()); err != nil {
			return fmt.Errorf("rotate the log key: %w", err)
		}
		logger.Info("rotated the log key", "from", prev.VerifierKey(), "to", signer.VerifierKey(), "entry", lg.Size()-1)
		return nil
	case prev != nil:
		hint = "log.previousKeyFile does not hold it either"
	}
	from := "the genesis"
	if last.At > 0 {
		from = fmt.Sprintf("entry %d", last.At)
	}
	return fmt.Errorf("the log is signed with the log key %s (named by %s), not with log.keyFile's %s: %s; to rotate to a new key, set log.keyFile to the new key and log.previousKeyFile to the current one",
		last.VerifierKey, from, signer.VerifierKey(), hint)
}

// pinKey is the key auditors pin, which serve prints: the genesis key;
// after a rotation the key signing now follows from it (GET /v1/log-keys,
// docs/keys.md).
func pinKey(lg *ledger.Log, logger *slog.Logger) string {
	keys := lg.LogKeys()
	if len(keys) == 0 {
		return lg.VerifierKey()
	}
	if len(keys) > 1 {
		logger.Info("the log key was rotated", "genesis", keys[0].VerifierKey, "current", lg.VerifierKey(), "rotations", len(keys)-1)
	}
	return keys[0].VerifierKey
}
