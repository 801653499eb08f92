package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"evident.dev/evident/client"
	"evident.dev/evident/verifier"
)

// TestSigningFlags checks how the runner picks its signer: an explicit
// --key or --oidc-token-env wins, else a token the CI environment offers
// (SIGSTORE_ID_TOKEN before GitHub Actions' request flow) means keyless,
// else it refuses. The token is never in what it prints.
func TestSigningFlags(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ci.key")
	keyPEM, _, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJydW5uZXJAY2kuZXhhbXBsZSJ9.c2lnbmF0dXJl"
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		keyless bool
		how     string // in the sentence, or the error
		fails   bool
	}{
		{name: "key file", args: []string{"--key", keyFile}, env: map[string]string{"SIGSTORE_ID_TOKEN": token}, how: "signing with the key"},
		{name: "named token", args: []string{"--oidc-token-env", "MY_TOKEN"}, env: map[string]string{"MY_TOKEN": token}, keyless: true, how: "OIDC token from MY_TOKEN"},
		{name: "named token missing", args: []string{"--oidc-token-env", "MY_TOKEN"}, fails: true, how: "MY_TOKEN (--oidc-token-env) is not set"},
		{name: "sigstore variable", env: map[string]string{"SIGSTORE_ID_TOKEN": token, "ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh.example/t", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "r"},
			keyless: true, how: "OIDC token from SIGSTORE_ID_TOKEN"},
		{name: "github actions", env: map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh.example/t", "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "r"},
			keyless: true, how: "OIDC token from GitHub Actions"},
		{name: "github actions without its token", env: map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": "https://gh.example/t"}, fails: true, how: "no signing identity"},
		{name: "nothing", fails: true, how: "no signing identity"},
		{name: "both", args: []string{"--key", keyFile, "--oidc-token-env", "MY_TOKEN"}, env: map[string]string{"MY_TOKEN": token}, fails: true, how: "not both"},
		{name: "bad fulcio url", args: []string{"--fulcio-url", "fulcio"}, env: map[string]string{"SIGSTORE_ID_TOKEN": token}, fails: true, how: "not an http(s) URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			sf := addSigningFlags(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			s, how, err := sf.signer(func(k string) string { return c.env[k] })
			if c.fails {
				if err == nil || !strings.Contains(err.Error(), c.how) {
					t.Fatalf("err = %v, want one saying %q", err, c.how)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(how, c.how) || strings.Contains(how, token) {
				t.Errorf("how = %q, want %q and no token", how, c.how)
			}
			if _, ok := s.(*client.KeylessSigner); ok != c.keyless {
				t.Errorf("signer %T, keyless %v", s, c.keyless)
			}
		})
	}
}
