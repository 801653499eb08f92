package server

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"evident.dev/evident/internal/secret"
	"evident.dev/evident/query"
	"evident.dev/evident/verifier"
)

// The defaults of the settings that commands may also give as flags.
const (
	DefaultListen = "127.0.0.1:8080"
	DefaultData   = "evident-data"
	DefaultOrigin = "evident.local/log"
)

// Config is the server's YAML configuration. Relative paths in it are
// relative to the configuration file.
type Config struct {
	Listen   string `yaml:"listen"`   // default 127.0.0.1:8080
	Data     string `yaml:"data"`     // default ./evident-data
	Operator string `yaml:"operator"` // recorded in the genesis entry
	Log      struct {
		Origin  string `yaml:"origin"`  // default evident.local/log
		KeyFile string `yaml:"keyFile"` // default <data>/log.key, generated on first start
		// PreviousKeyFile rotates the log key: the key the log is signed
		// with now, which keyFile's key replaces (docs/keys.md). Kept until
		// the cross-signed checkpoint is written; harmless after.
		PreviousKeyFile string `yaml:"previousKeyFile"`
		// VerifierKey is the note verifier key of the log a read replica
		// (--follow) or a restore mirrors; it names the origin.
		VerifierKey string `yaml:"verifierKey"`
		// RequireOrigin refuses records whose predicate.logOrigin is not
		// set (origin binding, docs/keys.md); one naming another log is
		// refused always.
		RequireOrigin bool `yaml:"requireOrigin"`
	} `yaml:"log"`
	// ObjectStore is where the log is exported as tlog-tiles (replicas.go).
	ObjectStore ObjectStoreConfig `yaml:"objectStore"`
	// Durability is "local" (default: acknowledged once fsynced) or
	// "object-store" (acknowledged once its entry bundle is in ObjectStore).
	Durability string `yaml:"durability"`
	Limits     struct {
		MaxBodyBytes int64         `yaml:"maxBodyBytes"` // default 1 MiB
		QueueSize    int           `yaml:"queueSize"`    // default 8192
		MaxBatch     int           `yaml:"maxBatch"`     // default 1024
		MaxClockSkew time.Duration `yaml:"maxClockSkew"` // default 10m
		// MaxBackfill: a record whose occurredAt is older than this at
		// receipt is judged at its receipt (verifier.JudgedAt); default 7 days.
		MaxBackfill time.Duration `yaml:"maxBackfill"`
		// RatePerSigner is the records per second one verified signer may
		// post (429 with Retry-After beyond it); 0, the default, is no limit.
		RatePerSigner float64 `yaml:"ratePerSigner"`
		RateBurst     int     `yaml:"rateBurst"` // default max(1, ratePerSigner)
		// MaxConnections bounds open client connections (each costs a
		// goroutine and buffers); beyond it new ones wait in the kernel's
		// accept queue. Default 4096.
		MaxConnections int `yaml:"maxConnections"`
		// MinFreeMB is the free space kept on the data directory's
		// filesystem: below it, posts get 503 before anything is written.
		// Default 64; -1: no reserve.
		MinFreeMB int `yaml:"minFreeMB"`
	} `yaml:"limits"`
	CheckpointInterval time.Duration `yaml:"checkpointInterval"` // default 500ms
	CacheMB            int           `yaml:"cacheMB"`            // default 24
	MemoryLimitMB      int           `yaml:"memoryLimitMB"`      // Go runtime soft limit; default 256, GOMEMLIMIT wins
	// Access is who may read (docs/audit-queries.md): bearer tokens stored
	// hashed, OIDC issuers, tenant scopes, and the access log's file.
	Access struct {
		query.AccessConfig `yaml:",inline"`
		AccessLog          string `yaml:"accessLog"` // default <data>/access.jsonl
		// CursorKey is a secret ("env:NAME" or a file only its owner
		// reads) shared by the writer and its read replicas, so that
		// GraphQL cursors work on every server of the log. Default
		// $EVIDENT_CURSOR_KEY.
		CursorKey string `yaml:"cursorKey"`
	} `yaml:"access"`
	Trust struct {
		Runners []struct {
			Name      string         `yaml:"name"`
			PublicKey string         `yaml:"publicKey"` // path to a PKIX PEM file
			Scope     verifier.Scope `yaml:"scope"`     // environments, stacks, clusters
			Approver  string         `yaml:"approver"`  // the person (e-mail) whose approvals this key signs
			// RevokedAt ends the key's trust (docs/keys.md); recorded in the log.
			RevokedAt *time.Time `yaml:"revokedAt"`
			// ClientCertificate is the subject common name or a DNS, URI or
			// e-mail SAN of the runner's mTLS client certificate: records it
			// posts over such a connection must be signed by this runner.
			ClientCertificate string `yaml:"clientCertificate"`
		} `yaml:"runners"`
		keylessTrust `yaml:",inline"` // identities, sigstore, groups (trust.go)
	} `yaml:"trust"`
	Anchor    AnchorConfig    `yaml:"anchor"`    // anchor checkpoints in Rekor (docs/anchoring.md)
	Witness   WitnessConfig   `yaml:"witness"`   // witnesses cosign checkpoints (docs/anchoring.md)
	Approvals approvalsConfig `yaml:"approvals"` // approval rules and freshness windows (trust.go)
	Policies  PoliciesConfig  `yaml:"policies"`  // policy set, contracts, exceptions (docs/policies.md)
	// Artifacts, when set, is the store the server checks records'
	// artifacts against (finding artifact.missing).
	Artifacts ArtifactsConfig `yaml:"artifacts"`
	// TLS, when certFile and keyFile are set, serves HTTPS (TLS 1.2 and
	// later) instead of plain HTTP; the files are re-read at start only.
	TLS struct {
		CertFile string `yaml:"certFile"` // PEM certificate chain
		KeyFile  string `yaml:"keyFile"`  // PEM private key
		// ClientCAFile, when set, asks clients for a certificate issued by
		// one of these CAs (mTLS, docs/keys.md). Without RequireClientCert a
		// client without a certificate is still served (auditors with
		// bearer tokens).
		ClientCAFile      string `yaml:"clientCAFile"`
		RequireClientCert bool   `yaml:"requireClientCert"`
	} `yaml:"tls"`

	// Version is the server's version: recorded in a new log's genesis and
	// reported in its metrics. The binary knows it, not the file.
	Version string `yaml:"-"`

	dir string // the configuration file's directory
}

// LoadConfig reads the configuration file at path, refusing settings it
// does not know; "" is the empty configuration. A relative data directory
// is resolved against the file's directory, as every path in it is.
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{dir: "."}
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg.dir = filepath.Dir(path)
	cfg.Data = cfg.path(cfg.Data)
	return cfg, nil
}

func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, secret.EnvPrefix) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// keyFile is the log key's file: log.keyFile, else <data>/log.key.
func (c *Config) keyFile() string {
	return firstOf(c.path(c.Log.KeyFile), filepath.Join(c.Data, "log.key"))
}

// ledgerDir is where the log is in the data directory.
func (c *Config) ledgerDir() string { return filepath.Join(c.Data, "ledger") }

// LimitMemory sets the Go runtime's soft memory limit to memoryLimitMB,
// unless GOMEMLIMIT set one.
func (c *Config) LimitMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit makes the collector return memory before the heap
		// doubles (GOGC's default) while Badger compacts.
		debug.SetMemoryLimit(int64(cmp.Or(c.MemoryLimitMB, 256)) << 20)
	}
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// UsageError is a configuration that cannot work in any environment (a
// setting without the one it needs): the command answers it as it answers
// a bad flag, with exit status 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}
