// Package rekortest starts a real Rekor for tests: MariaDB in a temporary
// directory, Trillian's log server and log signer on it, a Trillian tree,
// and rekor-server v1.5.4 with a file signer key, all on 127.0.0.1. Every
// process is killed when the test ends.
//
// The binaries come from scripts/setup.d/40-rekor.sh (the tools bin
// directory, on PATH under scripts/test.sh) and Debian's mariadb-server.
// When one is missing the test is skipped, or fails under
// EVIDENT_REQUIRE_TOOLS=1.
package rekortest

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"evident.dev/evident/internal/testenv"
)

// TrillianVersion is the Trillian rekor v1.5.4 requires; its MySQL schema
// is read from this version's module.
const TrillianVersion = "v1.7.3"

// Rekor is a running Rekor.
type Rekor struct {
	URL       string           // base URL, http://127.0.0.1:port
	PublicKey crypto.PublicKey // the key that signs entry timestamps and checkpoints
	TreeID    int64
	// Started is how long starting everything took.
	Started time.Duration
}

// tools are the programs a Rekor needs.
type tools struct {
	installDB, mariadbd, client, logServer, logSigner, createTree, rekor, schema string
}

// toolsDir is where scripts/setup.sh installs tools when EVIDENT_TOOLS is unset.
func toolsDir() string {
	if d := os.Getenv("EVIDENT_TOOLS"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "evident-tools")
	}
	return ""
}

// find looks a program up on PATH, then in the tools bin directory and the
// sbin directories Debian puts daemons in.
func find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{filepath.Join(toolsDir(), "bin"), "/usr/sbin", "/usr/bin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (run scripts/setup.sh)", name)
}

func findTools() (tools, error) {
	var t tools
	var errs []error
	for _, f := range []struct {
		dst  *string
		name string
	}{
		{&t.installDB, "mariadb-install-db"}, {&t.mariadbd, "mariadbd"}, {&t.client, "mariadb"},
		{&t.logServer, "trillian_log_server"}, {&t.logSigner, "trillian_log_signer"},
		{&t.createTree, "createtree"}, {&t.rekor, "rekor-server"},
	} {
		p, err := find(f.name)
		errs = append(errs, err)
		*f.dst = p
	}
	t.schema = filepath.Join(toolsDir(), "trillian-"+TrillianVersion, "storage.sql")
	if _, err := os.Stat(t.schema); err != nil {
		errs = append(errs, fmt.Errorf("trillian schema: %w (run scripts/setup.sh)", err))
	}
	return t, errors.Join(errs...)
}

// Start starts a Rekor for the test, or skips the test when the programs
// are not installed (fails under EVIDENT_REQUIRE_TOOLS=1).
func Start(t testing.TB) *Rekor {
	t.Helper()
	tl, err := findTools()
	if err != nil {
		if os.Getenv("EVIDENT_REQUIRE_TOOLS") == "1" {
			t.Fatalf("rekor test set-up: %v", err)
		}
		t.Skipf("rekor test set-up: %v", err)
	}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A short directory: a unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "rekortest")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, tools: tl}
	t.Cleanup(h.stop)
	r, err := h.start(ctx)
	if err != nil {
		h.dumpLogs()
		t.Fatalf("rekor test set-up: %v", err)
	}
	r.Started = time.Since(begin)
	return r
}

type harness struct {
	t     testing.TB
	dir   string
	tools tools
	mu    sync.Mutex
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// run starts a long-running program with its output in a log file.
func (h *harness) run(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(h.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = h.dir
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p, nil
}

// stop kills every process, newest first, and removes the directory.
func (h *harness) stop() {
	h.mu.Lock()
	procs := h.procs
	h.procs = nil
	h.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			h.t.Errorf("rekortest: %s (pid %d) did not exit after kill", p.name, p.cmd.Process.Pid)
		}
	}
	if h.t.Failed() {
		h.dumpLogs()
	}
	_ = os.RemoveAll(h.dir)
}

// dumpLogs logs the last lines of every process's output.
func (h *harness) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(h.dir, "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		h.t.Logf("--- %s (last bytes) ---\n%s", filepath.Base(l), b)
	}
}

// waitFor polls ready until it succeeds, the process exits, or ctx ends.
func waitFor(ctx context.Context, p *proc, what string, ready func() error) error {
	var last error
	for {
		if last = ready(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before %s; see %s", p.name, p.err, what, p.log)
		case <-ctx.Done():
			return fmt.Errorf("%s: %s: %w (last: %v)", p.name, what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

const (
	dbName     = "trillian"
	dbUser     = "trillian"
	dbPassword = "trillian-test" // a throwaway database on 127.0.0.1 for one test
)

func (h *harness) start(ctx context.Context) (*Rekor, error) {
	ports, err := testenv.FreePorts(6)
	if err != nil {
		return nil, err
	}
	dbPort, rpcPort, rpcHTTP, signerRPC, signerHTTP, rekorPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	if err := h.startMariaDB(ctx, dbPort); err != nil {
		return nil, err
	}
	dsn := fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/%s", dbUser, dbPassword, dbPort, dbName)
	rpc := fmt.Sprintf("127.0.0.1:%d", rpcPort)
	server, err := h.run("trillian_log_server", h.tools.logServer,
		"--storage_system=mysql", "--quota_system=noop", "--mysql_uri="+dsn,
		"--rpc_endpoint="+rpc, fmt.Sprintf("--http_endpoint=127.0.0.1:%d", rpcHTTP),
		"--tree_gc=false", "--logtostderr")
	if err != nil {
		return nil, err
	}
	if _, err := h.run("trillian_log_signer", h.tools.logSigner,
		"--storage_system=mysql", "--quota_system=noop", "--mysql_uri="+dsn,
		fmt.Sprintf("--rpc_endpoint=127.0.0.1:%d", signerRPC), fmt.Sprintf("--http_endpoint=127.0.0.1:%d", signerHTTP),
		"--force_master", "--sequencer_interval=20ms", "--logtostderr"); err != nil {
		return nil, err
	}
	var treeID int64
	if err := waitFor(ctx, server, "creating a tree", func() error {
		out, err := exec.CommandContext(ctx, h.tools.createTree, "--admin_server="+rpc, "--rpc_deadline=5s").CombinedOutput()
		if err != nil {
			return fmt.Errorf("createtree: %v: %s", err, bytes.TrimSpace(out))
		}
		lines := strings.Fields(string(out))
		if len(lines) == 0 {
			return errors.New("createtree printed nothing")
		}
		treeID, err = strconv.ParseInt(lines[len(lines)-1], 10, 64)
		return err
	}); err != nil {
		return nil, err
	}

	keyPath := filepath.Join(h.dir, "rekor-key.pem")
	if err := writeKey(keyPath); err != nil {
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", rekorPort)
	// rekor-server v1.5.4 always serves metrics on ":2112", every
	// interface, and ignores a failed bind. Holding 127.0.0.1:2112 makes
	// that bind fail, so nothing listens beyond loopback. If another
	// harness holds it already, that hold does the same.
	if hold, err := net.Listen("tcp", "127.0.0.1:2112"); err == nil {
		h.t.Cleanup(func() { hold.Close() })
	}
	rekor, err := h.run("rekor-server", h.tools.rekor, "serve",
		"--rekor_server.address=127.0.0.1", fmt.Sprintf("--port=%d", rekorPort),
		"--rekor_server.hostname=rekor.test", "--rekor_server.signer="+keyPath,
		"--trillian_log_server.address=127.0.0.1", fmt.Sprintf("--trillian_log_server.port=%d", rpcPort),
		fmt.Sprintf("--trillian_log_server.tlog_id=%d", treeID),
		// The search index (redis or MySQL) serves only lookups by
		// hash or key, which anchoring does not use.
		"--enable_retrieve_api=false",
		"--enabled_entry_types=hashedrekord,dsse", "--log_type=prod")
	if err != nil {
		return nil, err
	}
	var pub crypto.PublicKey
	if err := waitFor(ctx, rekor, "serving its public key", func() error {
		pub, err = fetchPublicKey(ctx, url)
		return err
	}); err != nil {
		return nil, err
	}
	return &Rekor{URL: url, PublicKey: pub, TreeID: treeID}, nil
}

func (h *harness) startMariaDB(ctx context.Context, port int) error {
	data := filepath.Join(h.dir, "db")
	sock := filepath.Join(h.dir, "db.sock")
	var userArgs []string
	if u, err := user.Current(); err == nil {
		// mariadbd refuses to run as root unless told to.
		userArgs = []string{"--user=" + u.Username}
	}
	install := exec.CommandContext(ctx, h.tools.installDB, append([]string{"--no-defaults",
		"--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}, userArgs...)...)
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb-install-db: %v: %s", err, tail(out))
	}
	db, err := h.run("mariadbd", h.tools.mariadbd, append([]string{"--no-defaults",
		"--datadir=" + data, "--socket=" + sock, "--bind-address=127.0.0.1", fmt.Sprintf("--port=%d", port),
		"--pid-file=" + filepath.Join(h.dir, "db.pid"), "--skip-log-bin",
		"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--performance-schema=OFF",
		"--skip-name-resolve"}, userArgs...)...)
	if err != nil {
		return err
	}
	sql := func(stmts string, db string) error {
		args := []string{"--no-defaults", "--socket=" + sock, "-uroot"}
		if db != "" {
			args = append(args, db)
		}
		cmd := exec.CommandContext(ctx, h.tools.client, args...)
		cmd.Stdin = strings.NewReader(stmts)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mariadb: %v: %s", err, tail(out))
		}
		return nil
	}
	if err := waitFor(ctx, db, "accepting connections", func() error { return sql("SELECT 1;", "") }); err != nil {
		return err
	}
	if err := sql(fmt.Sprintf("CREATE DATABASE %s; CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY '%s'; GRANT ALL ON %s.* TO '%s'@'127.0.0.1';",
		dbName, dbUser, dbPassword, dbName, dbUser), ""); err != nil {
		return err
	}
	schema, err := os.ReadFile(h.tools.schema)
	if err != nil {
		return err
	}
	return sql(string(schema), dbName)
}

func tail(b []byte) []byte {
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

func writeKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// fetchPublicKey reads Rekor's public key (PEM) from its API.
func fetchPublicKey(ctx context.Context, url string) (crypto.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/log/publicKey", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("public key: HTTP %d: %s", resp.StatusCode, firstLine(body))
	}
	block, _ := pem.Decode(body)
	if block == nil {
		return nil, fmt.Errorf("public key: not PEM: %s", firstLine(body))
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

func firstLine(b []byte) string {
	s := bufio.NewScanner(bytes.NewReader(b))
	if s.Scan() {
		return s.Text()
	}
	return ""
}
