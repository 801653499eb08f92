package e2e

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readPEM reads a file holding one PEM block of the given type.
func readPEM(t *testing.T, path, typ string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != typ || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("%s is not one PEM %q block:\n%s", path, typ, b)
	}
	return block.Bytes
}

// TestKeysGenerate pins the key files: PKCS#8 private key (0600) and PKIX
// public key, ed25519 by default, never overwritten.
func TestKeysGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys") // created on demand
	r := evident(t, t.TempDir(), "keys", "generate", "--name", "ci-runner", "--dir", dir)
	keyPath, pubPath := filepath.Join(dir, "ci-runner.key"), filepath.Join(dir, "ci-runner.pub")
	mustContain(t, "keys generate", r.stdout, keyPath, pubPath, "keyid")

	st, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", keyPath, st.Mode().Perm())
	}
	priv, err := x509.ParsePKCS8PrivateKey(readPEM(t, keyPath, "PRIVATE KEY"))
	if err != nil {
		t.Fatalf("private key is not PKCS#8: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(readPEM(t, pubPath, "PUBLIC KEY"))
	if err != nil {
		t.Fatalf("public key is not PKIX: %v", err)
	}
	edPriv, ok := priv.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("default key type %T, want ed25519", priv)
	}
	if !edPriv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Error("the public key is not the private key's")
	}

	// Never overwritten, whatever the algorithm asked for.
	keyBefore, _ := os.ReadFile(keyPath)
	pubBefore, _ := os.ReadFile(pubPath)
	for _, alg := range []string{"ed25519", "ecdsa-p256"} {
		r = evidentFails(t, dir, -1, "keys", "generate", "--name", "ci-runner", "--dir", dir, "--alg", alg)
		mustContain(t, "keys generate over an existing key", r.stderr, "already exists")
	}
	keyAfter, _ := os.ReadFile(keyPath)
	pubAfter, _ := os.ReadFile(pubPath)
	if string(keyBefore) != string(keyAfter) || string(pubBefore) != string(pubAfter) {
		t.Error("keys generate overwrote an existing key")
	}

	evident(t, dir, "keys", "generate", "--name", "approvals", "--dir", dir, "--alg", "ecdsa-p256")
	priv, err = x509.ParsePKCS8PrivateKey(readPEM(t, filepath.Join(dir, "approvals.key"), "PRIVATE KEY"))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := priv.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("--alg ecdsa-p256 made a %T", priv)
	}

	// -o json: where the keys are, and a log key's verifier key; never a private key.
	r = evident(t, dir, "keys", "generate", "--name", "log", "--dir", dir, "--origin", "evident.example/log", "-o", "json")
	var keys struct{ Key, PublicKey, KeyID, VerifierKeyFile, VerifierKey string }
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || keys.Key != filepath.Join(dir, "log.key") ||
		keys.VerifierKeyFile != filepath.Join(dir, "log.vkey") || !strings.HasPrefix(keys.VerifierKey, "evident.example/log+") || keys.KeyID == "" {
		t.Fatalf("keys generate -o json: %+v %v\n%s", keys, err, r.stdout)
	}
	if vkey, err := os.ReadFile(keys.VerifierKeyFile); err != nil || strings.TrimSpace(string(vkey)) != keys.VerifierKey {
		t.Errorf("log.vkey holds %q (%v), -o json says %q", vkey, err, keys.VerifierKey)
	}
	if strings.Contains(r.stdout, "PRIVATE") {
		t.Errorf("keys generate -o json prints a private key:\n%s", r.stdout)
	}

	evidentFails(t, dir, -1, "keys", "generate", "--dir", dir)                                     // no name
	evidentFails(t, dir, -1, "keys", "generate", "--name", "../escape", "--dir", dir)              // not a plain name
	evidentFails(t, dir, -1, "keys", "generate", "--name", "x", "--dir", dir, "--alg", "rsa-2048") // unknown algorithm
	if _, err := os.Stat(filepath.Join(dir, "x.key")); err == nil {
		t.Error("a refused algorithm still wrote a key")
	}
}

// TestConfigTrustScopes runs a server from a YAML configuration trusting two
// runners: one may report on staging only, the other (ECDSA) on everything.
func TestConfigTrustScopes(t *testing.T) {
	cfgDir := t.TempDir()
	keys := filepath.Join(cfgDir, "keys")
	evident(t, cfgDir, "keys", "generate", "--name", "staging-ci", "--dir", keys)
	evident(t, cfgDir, "keys", "generate", "--name", "platform-ci", "--dir", keys, "--alg", "ecdsa-p256")
	evident(t, cfgDir, "keys", "generate", "--name", "rogue", "--dir", keys)
	cfg := filepath.Join(cfgDir, "evident.yaml")
	// Relative paths are relative to the configuration file.
	writeFile(t, cfg, `# Evident server
listen: 127.0.0.1:0
data: data
operator: platform-team@example.com
log:
  origin: evident.example.com/payments
checkpointInterval: 100ms
cacheMB: 32
limits:
  maxBodyBytes: 262144
  queueSize: 1024
  maxBatch: 256
  maxClockSkew: 5m
trust:
  runners:
    - name: staging-ci
      publicKey: keys/staging-ci.pub
      scope:
        environments: [staging]
    - name: platform-ci
      publicKey: keys/platform-ci.pub
      scope:
        environments: ["*"]
`)
	work := t.TempDir() // serve runs elsewhere than the configuration
	srv := startServe(t, work, "--config", cfg)
	data := filepath.Join(cfgDir, "data")
	if _, err := os.Stat(filepath.Join(data, "ledger")); err != nil {
		t.Fatalf("data: data did not resolve next to the configuration file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "dev-runner.key")); err == nil {
		t.Error("a server with configured runners generated a dev runner key")
	}
	if srv.Origin != "evident.example.com/payments" || !strings.HasPrefix(srv.LogKey, "evident.example.com/payments+") {
		t.Errorf("origin %q, log key %q", srv.Origin, srv.LogKey)
	}

	// The genesis entry records who bootstrapped and the trust in force.
	genesis := statementOf(t, srv.entry(0).Envelope)["predicate"].(map[string]any)
	boot, _ := json.Marshal(genesis["bootstrap"])
	mustContain(t, "the bootstrap record", string(boot),
		`"operator":"platform-team@example.com"`, `"logOrigin":"evident.example.com/payments"`, srv.LogKey)
	var trust struct {
		Runners []struct {
			Name  string `json:"name"`
			Scope struct {
				Environments []string `json:"environments"`
			} `json:"scope"`
		} `json:"runners"`
	}
	if err := json.Unmarshal(trustConfig(t, genesis["bootstrap"]), &trust); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(trust.Runners); got != "[{staging-ci {[staging]}} {platform-ci {[*]}}]" {
		t.Errorf("recorded trust %s", got)
	}

	staging := newSigner(t, filepath.Join(keys, "staging-ci.key"))
	platform := newSigner(t, filepath.Join(keys, "platform-ci.key"))
	rogue := newSigner(t, filepath.Join(keys, "rogue.key"))

	rc, _ := srv.postRecord(sign(t, staging, planRecord("CHG-STAGING-1", "staging", 1)), http.StatusCreated)
	if rc.Signer.Name != "staging-ci" {
		t.Errorf("staging record signed by %+v", rc.Signer)
	}
	_, refusal := srv.postRecord(sign(t, staging, planRecord("CHG-PROD-BY-STAGING", "prod", 2)), http.StatusForbidden)
	if refusal.Code != "out_of_scope" || !strings.Contains(refusal.Error, `runner "staging-ci": environment "prod" is outside the signer's scope`) {
		t.Errorf("staging runner posting prod: %+v", refusal)
	}
	rc, _ = srv.postRecord(sign(t, platform, planRecord("CHG-PROD-1", "prod", 3)), http.StatusCreated)
	if rc.Signer.Name != "platform-ci" {
		t.Errorf("prod record signed by %+v", rc.Signer)
	}
	_, refusal = srv.postRecord(sign(t, rogue, planRecord("CHG-ROGUE", "staging", 4)), http.StatusForbidden)
	if refusal.Code != "untrusted_signer" {
		t.Errorf("untrusted key: %+v", refusal)
	}

	// The command line says the same, and fails.
	pred := filepath.Join(work, "prod.json")
	raw, err := os.ReadFile("testdata/plan.created.json")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, pred, string(raw))
	r := evidentFails(t, work, -1, "record", "post", "--key", filepath.Join(keys, "staging-ci.key"), "--file", pred, "--server", srv.URL)
	mustContain(t, "record post out of scope", r.stderr, "403", `environment "prod" is outside the signer's scope`)
	evident(t, work, "record", "post", "--key", filepath.Join(keys, "platform-ci.key"), "--file", pred, "--server", srv.URL)

	// Refused records are not in the log.
	for _, c := range []string{"CHG-PROD-BY-STAGING", "CHG-ROGUE"} {
		var got struct {
			Indexes []uint64 `json:"indexes"`
		}
		srv.getJSON("/v1/entries?change="+c, &got)
		if len(got.Indexes) != 0 {
			t.Errorf("refused change %s is in the log at %v", c, got.Indexes)
		}
	}
	if n := srv.size(); n != 4 {
		t.Errorf("log size %d, want 4 (bootstrap and three accepted records)", n)
	}
	// A body larger than limits.maxBodyBytes is refused (whitespace is
	// valid JSON, so only the size is wrong).
	big := append(sign(t, platform, planRecord("CHG-BIG", "prod", 5)), strings.Repeat(" ", 262144)...)
	_, refusal = srv.postRecord(big, http.StatusRequestEntityTooLarge)
	if refusal.Code != "too_large" {
		t.Errorf("oversized record: %+v", refusal)
	}
	// Limits: a record from the future beyond maxClockSkew is refused.
	future := planRecord("CHG-FUTURE", "prod", 6)
	future.OccurredAt = time.Now().Add(time.Hour).UTC()
	_, refusal = srv.postRecord(sign(t, platform, future), http.StatusBadRequest)
	if refusal.Code != "clock_skew" || !strings.Contains(refusal.Error, "5m0s") {
		t.Errorf("record an hour ahead: %+v", refusal)
	}
	srv.stop()
	evident(t, work, "verify", "--data", data)

	// Restarted without the staging runner: the trust change is itself an
	// entry, and the staging runner is no longer trusted.
	writeFile(t, cfg, strings.Replace(mustRead(t, cfg), `    - name: staging-ci
      publicKey: keys/staging-ci.pub
      scope:
        environments: [staging]
`, "", 1))
	srv = startServe(t, work, "--config", cfg)
	var updates struct {
		Indexes []uint64 `json:"indexes"`
	}
	srv.getJSON("/v1/entries?kind=trust.updated", &updates)
	if fmt.Sprint(updates.Indexes) != "[4]" {
		t.Errorf("trust.updated entries at %v, want [4]", updates.Indexes)
	}
	_, refusal = srv.postRecord(sign(t, staging, planRecord("CHG-STAGING-2", "staging", 7)), http.StatusForbidden)
	if refusal.Code != "untrusted_signer" {
		t.Errorf("removed runner: %+v", refusal)
	}
	srv.stop()
	r = evident(t, work, "verify", "--data", data)
	mustContain(t, "verify after a trust change", r.stdout, "OK: 5 entries")
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// trustConfig returns the canonical trust configuration a bootstrap block
// records (JSON bytes, base64 in the statement).
func trustConfig(t *testing.T, bootstrap any) []byte {
	t.Helper()
	b, _ := json.Marshal(bootstrap)
	var boot struct {
		Trust json.RawMessage `json:"trust"`
	}
	if err := json.Unmarshal(b, &boot); err != nil {
		t.Fatal(err)
	}
	var asBytes []byte
	if json.Unmarshal(boot.Trust, &asBytes) == nil {
		return asBytes
	}
	return boot.Trust
}

// TestConfigRefused: a configuration serve cannot honour exactly stops it
// before it touches anything, naming the problem.
func TestConfigRefused(t *testing.T) {
	dir := t.TempDir()
	evident(t, dir, "keys", "generate", "--name", "ci", "--dir", dir)
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level field", "listen: 127.0.0.1:0\nlisen: 127.0.0.1:9\n", []string{"lisen"}},
		{"unknown nested field", "listen: 127.0.0.1:0\ntrust:\n  runners:\n    - name: ci\n      publicKey: ci.pub\n      scope:\n        environment: [prod]\n", []string{"environment", "not found"}},
		{"unknown limits field", "listen: 127.0.0.1:0\nlimits:\n  maxBodySize: 10\n", []string{"maxBodySize"}},
		{"runner without scope", "listen: 127.0.0.1:0\ntrust:\n  runners:\n    - name: ci\n      publicKey: ci.pub\n", []string{"scope.environments is required"}},
		{"runner key missing", "listen: 127.0.0.1:0\ntrust:\n  runners:\n    - name: ci\n      publicKey: nope.pub\n      scope: {environments: [prod]}\n", []string{"nope.pub"}},
		{"bad duration", "listen: 127.0.0.1:0\ncheckpointInterval: soon\n", []string{"soon"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfgDir := t.TempDir()
			if err := os.Link(filepath.Join(dir, "ci.pub"), filepath.Join(cfgDir, "ci.pub")); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(cfgDir, "evident.yaml")
			writeFile(t, cfg, c.yaml+"data: data\n")
			r := runIn(t, cfgDir, 30*time.Second, "serve", "--config", cfg)
			if r.code == 0 || strings.Contains(r.stdout, "evident serving on") {
				t.Fatalf("serve accepted the configuration: %s", r)
			}
			mustContain(t, "serve's error", r.stderr, c.want...)
			if c.name != "runner without scope" && c.name != "runner key missing" {
				if _, err := os.Stat(filepath.Join(cfgDir, "data")); err == nil {
					t.Error("serve created the data directory before refusing its configuration")
				}
			}
		})
	}
}
