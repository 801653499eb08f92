package server

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// logKeys are what a writer signs checkpoints with: the log key and, while
// the log key is being rotated, the key it replaces.
type logKeys struct {
	key     ed25519.PrivateKey
	signer  *checkpoint.Signer
	prevKey ed25519.PrivateKey // nil unless log.previousKeyFile is set
	prev    *checkpoint.Signer // nil unless log.previousKeyFile is set
}

// loadLogKey reads the log key, or generates one for a new log.
func (c *Config) loadLogKey(logger *slog.Logger) (ed25519.PrivateKey, error) {
	keyFile := c.keyFile()
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) && !strings.HasPrefix(keyFile, secret.EnvPrefix) {
		// Refuse before creating anything: a new key cannot sign a log
		// that another key has signed, and would be left behind.
		has, err := ledger.HasEntries(c.ledgerDir())
		if err != nil {
			return nil, err
		}
		if has {
			return nil, fmt.Errorf("log key %s is missing, but %s holds a log signed with a log key: put that key back at %s or point log.keyFile at it (see docs/keys.md); a new key cannot sign this log", keyFile, c.Data, keyFile)
		}
	}
	logKey, err := loadOrCreateKey(keyFile, logger)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	edKey, ok := logKey.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("log key %s: must be ed25519 (checkpoints are ed25519 signed notes)", keyFile)
	}
	return edKey, nil
}

// signers makes the checkpoint signers of key and of log.previousKeyFile.
func (c *Config) signers(key ed25519.PrivateKey) (*logKeys, error) {
	signer, err := checkpoint.NewSigner(c.Log.Origin, key)
	if err != nil {
		return nil, err
	}
	k := &logKeys{key: key, signer: signer}
	if c.Log.PreviousKeyFile == "" {
		return k, nil
	}
	if k.prevKey, err = readLogKey(c.path(c.Log.PreviousKeyFile)); err != nil {
		return nil, fmt.Errorf("previous log key: %w", err)
	}
	if k.prev, err = checkpoint.NewSigner(c.Log.Origin, k.prevKey); err != nil {
		return nil, err
	}
	if k.prev.VerifierKey() == signer.VerifierKey() {
		return nil, errors.New("log.previousKeyFile holds the same key as log.keyFile")
	}
	return k, nil
}

// readLogKey reads an existing ed25519 log key, refusing one others may read.
func readLogKey(path string) (ed25519.PrivateKey, error) {
	b, err := secret.ReadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	k, err := verifier.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a log key must be ed25519 (checkpoints are ed25519 signed notes)", path)
	}
	return ed, nil
}

// loadOrCreateKey reads a PKCS#8 key, or creates an ed25519 one (mode 0600)
// if the file does not exist. A key readable by others is refused.
func loadOrCreateKey(path string, logger *slog.Logger) (any, error) {
	if strings.HasPrefix(path, secret.EnvPrefix) { // held by a secret store: never generated
		return readLogKey(path)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		priv, _, err := verifier.GenerateKey("ed25519")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, priv, 0o600); err != nil {
			return nil, err
		}
		logger.Info("generated a new log key", "file", path)
		b = priv
	} else if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	return verifier.ParsePrivateKey(b)
}
