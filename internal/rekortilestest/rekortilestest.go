// Package rekortilestest starts a real Rekor v2 for tests: rekor-tiles'
// server with its POSIX backend (rekor-tiles-server), a fresh signer key and
// its tiles in a temporary directory, all on 127.0.0.1. The process is
// killed when the test ends.
//
// The POSIX server answers writes only; a Rekor v2 deployment serves the
// checkpoint and tiles from its storage behind the same host name. So does
// the test: one front server on 127.0.0.1 passes /api/v2/ and /healthz to
// rekor-tiles and serves /checkpoint and /tile/ from the storage directory.
//
// The binary comes from scripts/setup.d/42-rekor-tiles.sh (the tools bin
// directory, on PATH under scripts/test.sh). Without it the test is
// skipped, or fails under EVIDENT_REQUIRE_TOOLS=1.
package rekortilestest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/internal/testenv"
)

// Origin is the test Rekor's host name, the origin of its checkpoints.
const Origin = "rekor-tiles.test"

// RekorV2 is a running Rekor v2.
type RekorV2 struct {
	// URL is the base URL of both the write API (URL/api/v2/log/entries)
	// and the tiles (URL/checkpoint, URL/tile/...): http://127.0.0.1:port.
	URL    string
	Origin string
	// PublicKey signs Rekor's checkpoints: ed25519.PublicKey, or
	// *ecdsa.PublicKey with WithECDSAKey.
	PublicKey crypto.PublicKey
	// StorageDir holds the tiles and the checkpoint.
	StorageDir string
	// Started is how long starting it took.
	Started time.Duration
}

// PinnedKeyPEM is the public key as Evident pins a Rekor v2 key: a PEM
// PUBLIC KEY block with an Origin header naming the log.
func (r *RekorV2) PinnedKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(r.PublicKey)
	if err != nil {
		panic(err) // a key this package generated
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Origin": r.Origin}, Bytes: der})
}

type options struct{ ecdsa bool }

// Option changes how Start sets Rekor up.
type Option func(*options)

// WithECDSAKey signs checkpoints with an ECDSA P-256 key instead of
// ed25519: the log ID is then the key's SHA-256 alone, without the origin.
func WithECDSAKey() Option { return func(o *options) { o.ecdsa = true } }

// find looks the server up on PATH, then in the tools bin directory.
func find() (string, error) {
	const name = "rekor-tiles-server"
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dir := os.Getenv("EVIDENT_TOOLS")
	if dir == "" {
		if c, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(c, "evident-tools")
		}
	}
	p := filepath.Join(dir, "bin", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	return "", fmt.Errorf("%s not found (run scripts/setup.sh)", name)
}

// Start starts a Rekor v2 for the test, or skips the test when
// rekor-tiles-server is not installed (fails under EVIDENT_REQUIRE_TOOLS=1).
func Start(t testing.TB, opts ...Option) *RekorV2 {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	bin, err := find()
	if err != nil {
		if os.Getenv("EVIDENT_REQUIRE_TOOLS") == "1" {
			t.Fatalf("rekor-tiles test set-up: %v", err)
		}
		t.Skipf("rekor-tiles test set-up: %v", err)
	}
	begin := time.Now()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "signer.pem")
	pub, err := writeKey(keyPath, o.ecdsa)
	if err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(dir, "log")
	if err := os.Mkdir(storage, 0o755); err != nil {
		t.Fatal(err)
	}
	ports, err := testenv.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "rekor-tiles.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve",
		"--http-address=127.0.0.1", "--http-port="+strconv.Itoa(ports[0]),
		"--grpc-address=127.0.0.1", "--grpc-port="+strconv.Itoa(ports[1]),
		"--http-metrics-port="+strconv.Itoa(ports[2]),
		"--hostname="+Origin, "--storage-dir="+storage, "--signer-filepath="+keyPath,
		// Each write waits for a checkpoint that covers it: short
		// intervals keep an anchor under two seconds (the server polls
		// its own checkpoint once a second).
		"--checkpoint-interval=200ms", "--batch-max-age=50ms",
		// As the public instances run: duplicates are found across
		// restarts, not only in the in-memory cache.
		"--persistent-antispam")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start rekor-tiles-server: %v", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		logf.Close()
		close(done)
	}()
	dump := func() {
		b, _ := os.ReadFile(logPath)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("--- rekor-tiles-server (last bytes) ---\n%s", b)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("rekortilestest: rekor-tiles-server (pid %d) did not exit after kill", cmd.Process.Pid)
		}
		if t.Failed() {
			dump()
		}
	})

	direct := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitHealthy(ctx, direct, storage, done); err != nil {
		if errors.Is(err, errExited) {
			err = fmt.Errorf("%w (%v)", err, waitErr)
		}
		dump()
		t.Fatalf("rekor-tiles test set-up: %v", err)
	}
	front := httptest.NewServer(frontHandler(direct, storage))
	t.Cleanup(front.Close)
	return &RekorV2{URL: front.URL, Origin: Origin, PublicKey: pub, StorageDir: storage, Started: time.Since(begin)}
}

// frontHandler is the one host a client sees: writes and the health check
// go to rekor-tiles, reads of the checkpoint and tiles to the storage
// directory. Nothing else of the directory is served (.state holds the
// sequencer's and the antispam index's files).
func frontHandler(direct, storage string) http.Handler {
	u, err := url.Parse(direct)
	if err != nil {
		panic(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	files := http.FileServer(http.Dir(storage))
	mux := http.NewServeMux()
	mux.Handle("/api/v2/", proxy)
	mux.Handle("GET /healthz", proxy)
	mux.Handle("GET /checkpoint", files)
	mux.Handle("GET /tile/", files)
	return mux
}

var errExited = errors.New("rekor-tiles-server exited")

// waitHealthy polls the health check until the server serves and its
// storage holds the first (empty) checkpoint.
func waitHealthy(ctx context.Context, direct, storage string, done <-chan struct{}) error {
	var last error
	for {
		if last = healthy(ctx, direct); last == nil {
			if _, err := os.Stat(filepath.Join(storage, "checkpoint")); err == nil {
				return nil
			} else {
				last = err
			}
		}
		select {
		case <-done:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("rekor-tiles-server not healthy: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func healthy(ctx context.Context, direct string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, direct+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "SERVING") {
		return fmt.Errorf("healthz: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}

// writeKey writes a fresh signer key (PKCS#8 PEM) and returns its public key.
func writeKey(path string, useECDSA bool) (crypto.PublicKey, error) {
	var priv crypto.Signer
	var err error
	if useECDSA {
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return priv.Public(), nil
}
