package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeMetrics: the real binary serves /metrics computed from its log,
// promtool accepts it, and a restarted server reports the same ledger values.
func TestServeMetrics(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	postMany(t, srv, newSigner(t, filepath.Join(data, "dev-runner.key")), "CHG-METRICS", "prod", 5, 2)
	want := `evident_ledger_entries_total{environment="prod",kind="plan.created"} 5`
	body := waitMetric(t, srv, want)
	if tool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(tool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	}
	page := string(srv.get("/", 200))
	if !strings.Contains(page, "Evidence completeness by environment") {
		t.Errorf("GET / is not the dashboard:\n%s", page)
	}
	srv.stop()
	srv = startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	waitMetric(t, srv, want)
}

// waitMetric scrapes until the exposition has line (the projection tails
// the log asynchronously) and returns the body.
func waitMetric(t *testing.T, srv *testServer, line string) []byte {
	t.Helper()
	var body []byte
	for range 500 {
		body = srv.get("/metrics", 200)
		for l := range strings.SplitSeq(string(body), "\n") {
			if l == line {
				return body
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("/metrics never had %q:\n%s", line, body)
	return nil
}

// TestServeTLS: with tls.certFile and tls.keyFile the server speaks only
// HTTPS (TLS 1.2 and later) with that certificate.
func TestServeTLS(t *testing.T) {
	work := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evident test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(work, "tls.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, filepath.Join(work, "tls.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	writeFile(t, filepath.Join(work, "evident.yaml"), "listen: 127.0.0.1:0\ntls:\n  certFile: tls.crt\n  keyFile: tls.key\n")
	srv := startServe(t, work, "--config", filepath.Join(work, "evident.yaml"), "--data", filepath.Join(work, "data"))
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("serve prints %s, want an https URL", srv.URL)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("GET /metrics over TLS: %d %+v", resp.StatusCode, resp.TLS)
	}
	// Plain HTTP gets no answer it could take for Evident's.
	plain := strings.Replace(srv.URL, "https://", "http://", 1)
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(plain + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the TLS listener answered plain HTTP with 200")
		}
	}
	// TLS 1.1 is refused.
	old := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(srv.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("TLS 1.1 was accepted")
	}
}
