package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Relative paths in the file are relative to the file, the data directory
// included; settings the server does not know are refused.
func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "evident.yaml")
	if err := os.WriteFile(path, []byte("data: data\nlog:\n  keyFile: keys/log.key\naccess:\n  cursorKey: env:CURSOR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "data"); cfg.Data != want {
		t.Errorf("data %q, want %q", cfg.Data, want)
	}
	if want := filepath.Join(dir, "keys", "log.key"); cfg.keyFile() != want {
		t.Errorf("log key file %q, want %q", cfg.keyFile(), want)
	}
	if got := cfg.path(cfg.Access.CursorKey); got != "env:CURSOR" {
		t.Errorf("a secret in the environment became the path %q", got)
	}

	cfg, err = LoadConfig("")
	if err != nil || cfg.Data != "" || cfg.keyFile() != "log.key" {
		t.Errorf("no file: %+v, %v", cfg, err)
	}

	if err := os.WriteFile(path, []byte("listen: 127.0.0.1:0\nlimits:\n  maxBody: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "maxBody") {
		t.Errorf("an unknown setting: %v", err)
	}
}

// A setting without the one it needs is a UsageError (the command exits 2).
func TestAnchorNeedsRekor(t *testing.T) {
	cfg := &Config{}
	cfg.Anchor.RekorKey = "rekor.pem"
	_, _, err := cfg.anchorer(nil, nil, nil, nil)
	if !errors.As(err, new(UsageError)) {
		t.Errorf("anchor.rekorKey without anchor.rekor: %v, want a UsageError", err)
	}
}
