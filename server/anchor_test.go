package server

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"evident.dev/evident/audit"
)

// The anchor settings in YAML reach the Anchorer: rekorVersion is read,
// checked, and a Rekor v2 key is told from a Rekor v1 one by its Origin.
func TestAnchorConfigRekorV2(t *testing.T) {
	dir := t.TempDir()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeKey := func(name string, k any, headers map[string]string) {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: headers, Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey("rekor.pub", &ec.PublicKey, nil)
	writeKey("rekor2.pub", ed, map[string]string{"Origin": "rekor2.example.internal"})

	keys, err := ReadRekorKeys(filepath.Join(dir, "rekor.pub") + ", " + filepath.Join(dir, "rekor2.pub"))
	if err != nil || len(keys) != 2 {
		t.Fatalf("ReadRekorKeys: %v %v", keys, err)
	}
	if k, ok := keys[1].(audit.RekorV2Key); !ok || k.Origin != "rekor2.example.internal" {
		t.Errorf("the key with an Origin header: %#v", keys[1])
	}
	if _, ok := keys[0].(*ecdsa.PublicKey); !ok {
		t.Errorf("the key without: %T", keys[0])
	}

	load := func(yaml string) *Config {
		t.Helper()
		path := filepath.Join(dir, "evident.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := load("anchor:\n  rekor: https://rekor2.example.internal\n  rekorVersion: 2\n  rekorKey: rekor2.pub\n")
	if cfg.Anchor.RekorVersion != 2 {
		t.Fatalf("rekorVersion %d", cfg.Anchor.RekorVersion)
	}
	// Without a log the Anchorer refuses, but only after the keys passed.
	if _, _, err := cfg.anchorer(nil, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "Log, LogKey and Recorder") {
		t.Errorf("a Rekor v2 configuration: %v", err)
	}
	cfg = load("anchor:\n  rekor: https://rekor2.example.internal\n  rekorVersion: 2\n  rekorKey: rekor.pub\n")
	if _, _, err := cfg.anchorer(nil, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "Origin header") {
		t.Errorf("Rekor v2 with a key pinned without its origin: %v", err)
	}
	for _, bad := range []string{
		"anchor:\n  rekorVersion: 2\n",
		"anchor:\n  rekor: https://rekor2.example.internal\n  rekorVersion: 3\n  rekorKey: rekor2.pub\n",
	} {
		if _, _, err := load(bad).anchorer(nil, nil, nil, nil); !errors.As(err, new(UsageError)) {
			t.Errorf("%q: %v, want a UsageError", bad, err)
		}
	}
}
