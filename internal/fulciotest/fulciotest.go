// Package fulciotest starts a real Fulcio for tests (the fulcio binary of
// scripts/setup.d/45-fulcio.sh, with an ephemeral CA) together with the
// OIDC issuer Fulcio trusts: a small issuer the test serves on 127.0.0.1
// with its own signing key, discovery document and JWKS, minting ID tokens
// for any e-mail identity the test names. The issuer also answers GitHub
// Actions' token request flow (ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN), since
// GitHub's own endpoint cannot be reached from here.
//
// When the binary is missing the test is skipped, or fails under
// EVIDENT_REQUIRE_TOOLS=1.
package fulciotest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/sigstore/sigstore-go/pkg/root"

	"evident.dev/evident/internal/testenv"
)

// Audience is the audience Fulcio's issuer configuration requires.
const Audience = "sigstore"

// Fulcio is a running Fulcio and the OIDC issuer it trusts.
type Fulcio struct {
	URL string // Fulcio's base URL
	// CA is the root certificate of Fulcio's ephemeral CA.
	CA *x509.Certificate
	// Issuer is the OIDC issuer URL (tokens' iss, the certificates'
	// issuer extension).
	Issuer string

	key *ecdsa.PrivateKey
	sig jose.Signer

	mu       sync.Mutex
	requests map[string]string // GitHub-style request token -> identity
}

// Start starts an OIDC issuer and a Fulcio trusting it; both stop when the
// test ends.
func Start(t testing.TB) *Fulcio {
	t.Helper()
	bin := testenv.Tool(t, "fulcio")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "test-key", Algorithm: string(jose.ES256)}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	f := &Fulcio{key: key, sig: sig, requests: map[string]string{}}
	issuer := httptest.NewServer(f.issuerHandler())
	t.Cleanup(issuer.Close)
	f.Issuer = issuer.URL

	dir := t.TempDir()
	cfg, err := json.Marshal(map[string]any{"OIDCIssuers": map[string]any{
		f.Issuer: map[string]string{"IssuerURL": f.Issuer, "ClientID": Audience, "Type": "email"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ports, err := testenv.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	f.URL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	logPath := filepath.Join(dir, "fulcio.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// HTTP and gRPC on two ports of 127.0.0.1 (the single-port "duplex"
	// mode of v1.8.8 panics registering its metrics twice). Fulcio takes
	// fixed ports, so another process could take one first; the start
	// then fails loudly. The legacy gRPC socket goes to the test's
	// directory, not the shared abstract name. Its Prometheus endpoint
	// binds every interface and a failed bind is fatal, so it gets a port
	// the kernel picks (":0"): it serves only metrics, and dies with the
	// test. No CT log: the verifier does not require SCTs.
	cmd := exec.Command(bin, "serve", "--ca=ephemeralca", "--ct-log-url=", "--config-path="+cfgPath,
		"--host=127.0.0.1", fmt.Sprintf("--port=%d", ports[0]), "--grpc-host=127.0.0.1", fmt.Sprintf("--grpc-port=%d", ports[1]),
		"--legacy-unix-domain-socket="+filepath.Join(dir, "legacy.sock"), "--metrics-port=0", "--log_type=prod")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start fulcio: %v", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("fulciotest: fulcio (pid %d) did not exit after kill", cmd.Process.Pid)
		}
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- fulcio.log (last bytes) ---\n%s", b)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		f.CA, err = f.fetchCA(ctx)
		if err == nil {
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("fulcio exited (%v) before serving: %s", waitErr, tail(b))
		case <-ctx.Done():
			t.Fatalf("fulcio not ready after a minute: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return f
}

// fetchCA reads the CA chain Fulcio serves and returns its root.
func (f *Fulcio) fetchCA(ctx context.Context) (*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL+"/api/v2/trustBundle", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("trustBundle: HTTP %d: %s", resp.StatusCode, tail(body))
	}
	var tb struct {
		Chains []struct {
			Certificates []string `json:"certificates"`
		} `json:"chains"`
	}
	if err := json.Unmarshal(body, &tb); err != nil {
		return nil, fmt.Errorf("trustBundle: %w", err)
	}
	if len(tb.Chains) == 0 || len(tb.Chains[0].Certificates) == 0 {
		return nil, errors.New("trustBundle: no chain")
	}
	certs := tb.Chains[0].Certificates
	block, _ := pem.Decode([]byte(certs[len(certs)-1]))
	if block == nil {
		return nil, errors.New("trustBundle: the root is not PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// Token mints an ID token for the e-mail identity, valid for ten minutes.
func (f *Fulcio) Token(t testing.TB, email string) string {
	t.Helper()
	tok, err := f.token(email)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *Fulcio) token(email string) (string, error) {
	now := time.Now()
	claims := map[string]any{
		"iss": f.Issuer, "sub": email, "aud": Audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"email": email, "email_verified": true,
	}
	return jwt.Signed(f.sig).Claims(claims).Serialize()
}

// GitHubRequest registers a GitHub Actions style token request for the
// identity and returns the URL and request token a job would find in
// ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN.
func (f *Fulcio) GitHubRequest(email string) (url, requestToken string) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	requestToken = hex.EncodeToString(b)
	f.mu.Lock()
	f.requests[requestToken] = email
	f.mu.Unlock()
	// GitHub's URL already carries a query string; the client must add
	// the audience to it, not replace it.
	return f.Issuer + "/github/token?api-version=2.0", requestToken
}

func (f *Fulcio) issuerHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer": f.Issuer, "jwks_uri": f.Issuer + "/jwks",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "test-key", Algorithm: string(jose.ES256), Use: "sig"}}})
	})
	mux.HandleFunc("GET /github/token", func(w http.ResponseWriter, r *http.Request) {
		const prefix = "Bearer "
		auth := r.Header.Get("Authorization")
		if len(auth) <= len(prefix) || r.URL.Query().Get("api-version") != "2.0" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		email, ok := f.requests[auth[len(prefix):]]
		f.mu.Unlock()
		if !ok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("audience") != Audience {
			http.Error(w, "wrong audience", http.StatusBadRequest)
			return
		}
		tok, err := f.token(email)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"count": 1, "value": tok})
	})
	return mux
}

// TrustedRoot is a trusted_root.json covering this Fulcio's CA and the
// Rekor at rekorURL with its public key.
func (f *Fulcio) TrustedRoot(rekorURL string, rekorKey crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(rekorKey)
	if err != nil {
		return nil, fmt.Errorf("rekor key: %w", err)
	}
	id := sha256.Sum256(der)
	start := f.CA.NotBefore.Add(-time.Minute)
	tlogs := map[string]*root.TransparencyLog{hex.EncodeToString(id[:]): {
		BaseURL: rekorURL, ID: id[:], ValidityPeriodStart: start,
		HashFunc: crypto.SHA256, PublicKey: rekorKey, SignatureHashFunc: crypto.SHA256,
	}}
	ca := &root.FulcioCertificateAuthority{Root: f.CA, ValidityPeriodStart: start, URI: f.URL}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{ca},
		map[string]*root.TransparencyLog{}, nil, tlogs)
	if err != nil {
		return nil, err
	}
	return tr.MarshalJSON()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}
