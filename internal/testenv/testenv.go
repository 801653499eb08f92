// Package testenv finds the real tools tests run against (OpenTofu, MinIO),
// installed by scripts/setup.sh, and starts them for a test. Under
// scripts/test.sh (EVIDENT_REQUIRE_TOOLS=1) a missing tool fails the test;
// otherwise the test is skipped and says how to install the tool.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Tool returns the path of an installed tool: on PATH, or in the setup
// script's cache directory.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if cache := toolsCache(); cache != "" {
		p := filepath.Join(cache, "bin", name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not installed: run scripts/setup.sh and put its bin directory on PATH", name)
	if os.Getenv("EVIDENT_REQUIRE_TOOLS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// toolsCache is the directory scripts/setup.sh installs tools into.
func toolsCache() string {
	if cache := os.Getenv("EVIDENT_TOOLS"); cache != "" {
		return cache
	}
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "evident-tools")
	}
	return ""
}

// TofuEnv returns the environment OpenTofu runs with in tests: an empty CLI
// configuration file, so no user setting or plugin cache takes part.
func TofuEnv(t testing.TB) map[string]string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "tofurc")
	if err := os.WriteFile(cfg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"TF_CLI_CONFIG_FILE": cfg, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
}

// MinIO is a MinIO server started for one test.
type MinIO struct {
	Endpoint  string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
}

// StartMinIO starts the installed MinIO on a free 127.0.0.1 port with a
// fresh data directory and random root credentials, waits until it is
// ready, and stops it when the test ends.
func StartMinIO(t testing.TB) MinIO {
	t.Helper()
	bin := Tool(t, "minio")
	port := freePort(t)
	m := MinIO{
		Endpoint:  "127.0.0.1:" + strconv.Itoa(port),
		AccessKey: "evident" + randomHex(t, 4),
		SecretKey: randomHex(t, 16),
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "server", t.TempDir(), "--address", m.Endpoint, "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey, "MINIO_BROWSER=off",
		"MINIO_CI_CD=1", "MINIO_UPDATE=off")
	logPath := filepath.Join(t.TempDir(), "minio.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait() // killed by the cancel: its exit status says nothing
		logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + m.Endpoint + "/minio/health/cluster")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("minio not ready (health/cluster) after 60s (last error %v); its log:\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FreePorts picks n distinct ports on 127.0.0.1 that are free now, for
// servers that take fixed ports (port 0 not supported): another process
// could take one before they bind it, and their start then fails loudly.
func FreePorts(n int) ([]int, error) {
	// All listeners are held at once so that the n ports differ.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Browser starts headless Chromium (the Debian package setup installs) for
// one test, with name resolution limited to 127.0.0.1 so a page that reached
// for another origin would fail, and returns a chromedp context of it. The
// browser is running when it returns: actions on the context may carry
// timeouts.
func Browser(t testing.TB, opts ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("EVIDENT_REQUIRE_TOOLS") != "" {
			t.Fatal("chromium is not installed; run scripts/setup.sh")
		}
		t.Skip("chromium is not installed; run scripts/setup.sh")
	}
	all := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // CI containers run as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"), // no CDN could be reached
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(all, opts...)...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser; its context must carry no timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}
