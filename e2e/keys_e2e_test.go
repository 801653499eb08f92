package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/verifier"
)

// writeKeyPair writes name.key (0600) and name.pub in dir.
func writeKeyPair(t *testing.T, dir, name string) {
	t.Helper()
	priv, pub, err := verifier.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, name+".pub"), string(pub))
}

// A revoked runner key: records it signs are refused from the revocation on,
// its replacement key (same runner name) is accepted, and `evident verify`
// finds the entries signed before the revocation valid and says so.
func TestRevokedKeyRotation(t *testing.T) {
	work := t.TempDir()
	writeKeyPair(t, work, "old")
	writeKeyPair(t, work, "new")
	data := filepath.Join(work, "data")
	cfgFile := filepath.Join(work, "evident.yaml")
	writeFile(t, cfgFile, `listen: 127.0.0.1:0
trust:
  runners:
  - name: ci
    publicKey: old.pub
    scope: {environments: ["*"]}
`)
	oldKey, newKey := newSigner(t, filepath.Join(work, "old.key")), newSigner(t, filepath.Join(work, "new.key"))
	srv := startServe(t, work, "--config", cfgFile, "--data", data)
	before, _ := srv.postRecord(sign(t, oldKey, planRecord("CHG-1", "prod", 1)), 201)
	srv.stop()

	revokedAt := time.Now().UTC().Add(time.Second).Truncate(time.Second)
	writeFile(t, cfgFile, fmt.Sprintf(`listen: 127.0.0.1:0
trust:
  runners:
  - name: ci
    publicKey: old.pub
    scope: {environments: ["*"]}
    revokedAt: %s
  - name: ci
    publicKey: new.pub
    scope: {environments: ["*"]}
`, revokedAt.Format(time.RFC3339)))
	srv = startServe(t, work, "--config", cfgFile, "--data", data)
	_, refusal := srv.postRecord(sign(t, oldKey, planRecord("CHG-2", "prod", 2)), 403)
	if refusal.Code != "untrusted_signer" {
		t.Fatalf("a record signed with the revoked key: code %q, want untrusted_signer", refusal.Code)
	}
	mustContain(t, "refusal", refusal.Error, "revoked at "+revokedAt.Format(time.RFC3339), `"ci"`)
	after, _ := srv.postRecord(sign(t, newKey, planRecord("CHG-2", "prod", 2)), 201)
	if after.Signer.Name != "ci" || after.Signer.KeyID == before.Signer.KeyID {
		t.Fatalf("the new key's record is signed by %+v, the old one's by %+v", after.Signer, before.Signer)
	}
	// A duplicate of an entry signed before the revocation is refused too:
	// the key is no longer trusted to say anything.
	srv.postRecord(sign(t, oldKey, planRecord("CHG-1", "prod", 1)), 403)
	logKey := srv.LogKey
	srv.stop()

	out := evident(t, work, "verify", "--data", data, "--log-key", logKey)
	mustContain(t, "verify", out.stdout, "OK: ", "revoked key "+before.Signer.KeyID[:16]+" (ci, revoked at "+revokedAt.Format(time.RFC3339)+"): 1 entries signed before the revocation: valid")
}

// testCA issues certificates for the mTLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evident test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate for cn (a server certificate for
// 127.0.0.1 when server is set) and its key, in PEM.
func (ca *testCA) issue(t *testing.T, cn string, server bool, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// mTLS: a runner's client certificate maps to its runner identity; a record
// signed by another runner over that connection is refused, as is a
// certificate the configuration maps to no runner. Without a certificate
// (not required here) the signature alone decides.
func TestServeMutualTLS(t *testing.T) {
	work := t.TempDir()
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "evident", true, 2)
	writeFile(t, filepath.Join(work, "ca.pem"), string(ca.pem))
	writeFile(t, filepath.Join(work, "tls.crt"), string(srvCert))
	writeFile(t, filepath.Join(work, "tls.key"), string(srvKey))
	writeKeyPair(t, work, "ci")
	writeKeyPair(t, work, "deploy")
	writeFile(t, filepath.Join(work, "evident.yaml"), `listen: 127.0.0.1:0
tls:
  certFile: tls.crt
  keyFile: tls.key
  clientCAFile: ca.pem
access:
  tokens:
    - {name: audit, sha256: `+fmt.Sprintf("%x", sha256.Sum256([]byte("auditor-token")))+`, role: auditor}
trust:
  runners:
  - name: ci
    publicKey: ci.pub
    scope: {environments: ["*"]}
    clientCertificate: ci.runners.example
  - name: deploy
    publicKey: deploy.pub
    scope: {environments: ["*"]}
    clientCertificate: deploy.runners.example
`)
	srv := startServe(t, work, "--config", filepath.Join(work, "evident.yaml"), "--data", filepath.Join(work, "data"))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	clientFor := func(cn string, serial int64) *http.Client {
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if cn != "" {
			c, k := ca.issue(t, cn, false, serial)
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	ci, deploy := newSigner(t, filepath.Join(work, "ci.key")), newSigner(t, filepath.Join(work, "deploy.key"))
	for _, c := range []struct {
		name   string
		client *http.Client
		record []byte
		status int
		want   string
	}{
		{"ci's certificate, ci's signature", clientFor("ci.runners.example", 3), sign(t, ci, planRecord("CHG-1", "prod", 1)), 201, `"signer":{"name":"ci"`},
		{"ci's certificate, deploy's signature", clientFor("ci.runners.example", 4), sign(t, deploy, planRecord("CHG-2", "prod", 2)), 403,
			`the client certificate authenticates runner \"ci\" but the record is signed by \"deploy\"`},
		{"an unmapped certificate", clientFor("someone.example", 5), sign(t, ci, planRecord("CHG-3", "prod", 3)), 403, "is not mapped to a runner"},
		{"no certificate", clientFor("", 0), sign(t, deploy, planRecord("CHG-4", "prod", 4)), 201, `"signer":{"name":"deploy"`},
	} {
		status, body, err := post(c.client, srv.URL, c.record)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if status != c.status || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %s, want %d and %s", c.name, status, body, c.status, c.want)
		}
		if status == 403 && !strings.Contains(string(body), `"code":"transport_mismatch"`) {
			t.Errorf("%s: refusal code: %s", c.name, body)
		}
	}
	// With access configured, the apply gate takes a runner's certificate
	// in place of a bearer token; no certificate, or an unmapped one, is
	// not enough.
	gate := `{"changeId":"CHG-1","commitSha":"` + strings.Repeat("a", 40) + `","planSha256":"` + strings.Repeat("b", 64) + `","target":{"environment":"prod"},"actor":"ci"}`
	for _, g := range []struct {
		name   string
		client *http.Client
		status int
	}{
		{"ci's certificate", clientFor("ci.runners.example", 8), 200},
		{"no certificate", clientFor("", 0), 401},
		{"an unmapped certificate", clientFor("someone.example", 9), 401},
	} {
		resp, err := g.client.Post(srv.URL+"/v1/gate/apply", "application/json", strings.NewReader(gate))
		if err != nil {
			t.Fatalf("gate, %s: %v", g.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != g.status {
			t.Errorf("gate, %s: %d %s, want %d", g.name, resp.StatusCode, body, g.status)
		}
	}

	// The command line presents a runner's certificate too.
	c, k := ca.issue(t, "ci.runners.example", false, 7)
	writeFile(t, filepath.Join(work, "ci-tls.crt"), string(c))
	if err := os.WriteFile(filepath.Join(work, "ci-tls.key"), k, 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(work, "plan.json"), `{"kind":"plan.created","changeId":"CHG-6","actor":"ci","source":{"repository":"infra-live","commitSha":"`+strings.Repeat("a", 40)+`"},"target":{"environment":"prod"},"plan":{"planSha256":"`+strings.Repeat("b", 64)+`","engine":"opentofu"}}`)
	tlsArgs := []string{"--file", "plan.json", "--server", srv.URL, "--tls-ca", "ca.pem", "--tls-cert", "ci-tls.crt", "--tls-key", "ci-tls.key"}
	out := evident(t, work, append([]string{"record", "post", "--key", "ci.key"}, tlsArgs...)...)
	mustContain(t, "record post over mTLS", out.stdout, `"name": "ci"`)
	out = evidentFails(t, work, -1, append([]string{"record", "post", "--key", "deploy.key"}, tlsArgs...)...)
	mustContain(t, "record post over mTLS signed by another runner", out.stderr, "403", `authenticates runner "ci" but the record is signed by "deploy"`)

	// A certificate from another CA does not even complete the handshake.
	other := newTestCA(t)
	c, k = other.issue(t, "ci.runners.example", false, 6)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	forged := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	if status, body, err := post(forged, srv.URL, sign(t, ci, planRecord("CHG-5", "prod", 5))); err == nil {
		t.Fatalf("a certificate from an unknown CA was accepted: %d %s", status, body)
	}
}

// Origin binding: a record signed for one log is refused by another; a log
// with log.requireOrigin refuses records bound to no log.
func TestOriginBinding(t *testing.T) {
	work := t.TempDir()
	writeKeyPair(t, work, "ci")
	writeFile(t, filepath.Join(work, "evident.yaml"), `listen: 127.0.0.1:0
trust:
  runners:
  - name: ci
    publicKey: ci.pub
    scope: {environments: ["*"]}
`)
	writeFile(t, filepath.Join(work, "strict.yaml"), `listen: 127.0.0.1:0
log:
  requireOrigin: true
trust:
  runners:
  - name: ci
    publicKey: ci.pub
    scope: {environments: ["*"]}
`)
	a := startServe(t, work, "--config", filepath.Join(work, "evident.yaml"), "--data", filepath.Join(work, "a"), "--origin", "a.example/log")
	b := startServe(t, work, "--config", filepath.Join(work, "strict.yaml"), "--data", filepath.Join(work, "b"), "--origin", "b.example/log")
	ci := newSigner(t, filepath.Join(work, "ci.key"))

	ci.Origin = "a.example/log"
	forA := sign(t, ci, planRecord("CHG-1", "prod", 1))
	a.postRecord(forA, 201)
	_, refusal := b.postRecord(forA, 403)
	if refusal.Code != "wrong_log" {
		t.Fatalf("a record for a replayed into b: %+v", refusal)
	}
	mustContain(t, "refusal", refusal.Error, `predicate.logOrigin "a.example/log" names another log; this log is "b.example/log"`)

	ci.Origin = ""
	unbound := sign(t, ci, planRecord("CHG-2", "prod", 2))
	a.postRecord(unbound, 201) // a does not require binding
	_, refusal = b.postRecord(unbound, 403)
	mustContain(t, "refusal", refusal.Error, "predicate.logOrigin is required")

	ci.Origin = "b.example/log"
	b.postRecord(sign(t, ci, planRecord("CHG-3", "prod", 3)), 201)

	// The command line binds a record too.
	writeFile(t, filepath.Join(work, "plan.json"), `{"kind":"plan.created","changeId":"CHG-4","actor":"ci","source":{"repository":"infra-live","commitSha":"`+strings.Repeat("a", 40)+`"},"target":{"environment":"prod"},"plan":{"planSha256":"`+strings.Repeat("b", 64)+`","engine":"opentofu"}}`)
	out := evident(t, work, "record", "post", "--key", "ci.key", "--file", "plan.json", "--server", b.URL, "--log-origin", "b.example/log")
	mustContain(t, "record post", out.stdout, `"changeId": "CHG-4"`)
	out = evidentFails(t, work, -1, "record", "post", "--key", "ci.key", "--file", "plan.json", "--server", a.URL, "--log-origin", "b.example/log")
	mustContain(t, "record post to the other log", out.stderr, "names another log")
}

// Private keys: a file others may read is refused with a clear message; a
// key from the environment works, and a missing variable is named without
// any value.
func TestPrivateKeySources(t *testing.T) {
	work := t.TempDir()
	writeKeyPair(t, work, "ci")
	writeFile(t, filepath.Join(work, "plan.json"), `{"kind":"plan.created","changeId":"CHG-1","actor":"ci","source":{"repository":"infra-live","commitSha":"`+strings.Repeat("a", 40)+`"},"target":{"environment":"prod"},"plan":{"planSha256":"`+strings.Repeat("b", 64)+`","engine":"opentofu"}}`)
	evident(t, work, "record", "sign", "--key", "ci.key", "--file", "plan.json")

	if err := os.Chmod(filepath.Join(work, "ci.key"), 0o640); err != nil {
		t.Fatal(err)
	}
	out := evidentFails(t, work, -1, "record", "sign", "--key", "ci.key", "--file", "plan.json")
	mustContain(t, "group-readable key", out.stderr, "private key ci.key is accessible by group or others (mode -rw-r-----); run chmod 600 ci.key")

	pemBytes, err := os.ReadFile(filepath.Join(work, "ci.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("EVIDENT_TEST_RUNNER_KEY", string(pemBytes))
	out = evident(t, work, "record", "sign", "--key", "env:EVIDENT_TEST_RUNNER_KEY", "--file", "plan.json")
	mustContain(t, "key from the environment", out.stdout, `"payloadType":"application/vnd.in-toto+json"`)
	out = evidentFails(t, work, -1, "record", "sign", "--key", "env:EVIDENT_TEST_NO_SUCH_KEY", "--file", "plan.json")
	mustContain(t, "missing variable", out.stderr, "the environment variable EVIDENT_TEST_NO_SUCH_KEY is not set or empty")
	if strings.Contains(out.stderr+out.stdout, "PRIVATE KEY") {
		t.Fatal("key material printed")
	}
}

// The apply gate names approvers and writes an entry per call: once access
// is configured, it answers only runners and auditors.
func TestGateNeedsARunnerOnceAccessIsConfigured(t *testing.T) {
	work := t.TempDir()
	hash := func(tok string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(tok))) }
	writeFile(t, filepath.Join(work, "evident.yaml"), `listen: 127.0.0.1:0
access:
  tokens:
    - {name: ci, sha256: `+hash("runner-token")+`, role: runner}
    - {name: team, sha256: `+hash("tenant-token")+`, role: tenant, scope: {environments: [staging]}}
`)
	srv := startServe(t, work, "--config", filepath.Join(work, "evident.yaml"), "--data", filepath.Join(work, "data"))
	request := `{"changeId":"CHG-1","commitSha":"` + strings.Repeat("a", 40) + `","planSha256":"` + strings.Repeat("b", 64) + `","target":{"environment":"prod"},"actor":"ci"}`
	for _, c := range []struct {
		token  string
		status int
	}{{"", 401}, {"wrong", 401}, {"tenant-token", 403}, {"runner-token", 200}} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/gate/apply", strings.NewReader(request))
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("gate with token %q: %d %s, want %d", c.token, resp.StatusCode, body, c.status)
		}
		if c.status == 200 && !strings.Contains(string(body), `"decision":"deny"`) {
			t.Errorf("gate with a runner token: %s", body)
		}
	}
}

// tls.requireClientCert: no connection without a client certificate from
// the configured CA; and it makes no sense without one.
func TestServeRequiresClientCertificate(t *testing.T) {
	work := t.TempDir()
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "evident", true, 2)
	writeFile(t, filepath.Join(work, "ca.pem"), string(ca.pem))
	writeFile(t, filepath.Join(work, "tls.crt"), string(srvCert))
	writeFile(t, filepath.Join(work, "tls.key"), string(srvKey))
	writeFile(t, filepath.Join(work, "nocas.yaml"), "listen: 127.0.0.1:0\ntls:\n  certFile: tls.crt\n  keyFile: tls.key\n  requireClientCert: true\n")
	out := evidentFails(t, work, -1, "serve", "--config", "nocas.yaml", "--data", filepath.Join(work, "data0"))
	mustContain(t, "requireClientCert without a CA", out.stderr, "tls.requireClientCert needs tls.clientCAFile")

	writeFile(t, filepath.Join(work, "evident.yaml"), "listen: 127.0.0.1:0\ntls:\n  certFile: tls.crt\n  keyFile: tls.key\n  clientCAFile: ca.pem\n  requireClientCert: true\n")
	srv := startServe(t, work, "--config", filepath.Join(work, "evident.yaml"), "--data", filepath.Join(work, "data"))
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	anonymous := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := anonymous.Get(srv.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}
	c, k := ca.issue(t, "auditor.example", false, 3)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	resp, err := withCert.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatalf("a client with a certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a client with a certificate: %d", resp.StatusCode)
	}
}
