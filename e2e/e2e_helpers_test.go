package e2e

// End-to-end tests of the evident binary: TestMain builds it once, and every
// test drives real processes over real HTTP on 127.0.0.1, with data in
// t.TempDir(). The helpers here start and stop servers, run commands, and
// build, sign and post records with the client package.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
)

// evidentBin is the binary under test, built once by TestMain.
var evidentBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "evident-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	evidentBin = filepath.Join(dir, "evident")
	// go test puts its own GOROOT/bin first in PATH, so this is the
	// toolchain the tests are built with.
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: no go command to build evident with:", err)
		return 1
	}
	build := exec.Command(goTool, "build", "-o", evidentBin, "evident.dev/evident/cmd/evident")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building evident:", err)
		return 1
	}
	return m.Run()
}

// result is how a finished command ended.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runIn runs the binary in dir (its working directory) and waits for it, at
// most timeout.
func runIn(t *testing.T, dir string, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, evidentBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("evident %s: still running after %s\n%s", strings.Join(args, " "), timeout, r)
	case errors.As(err, &exitErr):
		r.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("evident %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// evident runs a command that must exit 0.
func evident(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := runIn(t, dir, 2*time.Minute, args...)
	if r.code != 0 {
		t.Fatalf("evident %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// evidentFails runs a command that must exit with code want (-1: any
// non-zero code).
func evidentFails(t *testing.T, dir string, want int, args ...string) result {
	t.Helper()
	r := runIn(t, dir, 2*time.Minute, args...)
	if r.code == 0 || (want >= 0 && r.code != want) {
		t.Fatalf("evident %s: want exit code %d, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a running `evident serve`.
type testServer struct {
	t       *testing.T
	cmd     *exec.Cmd
	URL     string // http://ADDR
	LogKey  string // note verifier key, as serve prints it
	Origin  string
	stdout  *syncBuffer
	stderr  *syncBuffer
	exited  chan struct{}
	waitErr error
}

// startServe starts `evident serve args...` in dir and waits until it
// prints where it serves. The process is killed when the test ends.
func startServe(t *testing.T, dir string, args ...string) *testServer {
	t.Helper()
	s, err := tryServe(t, dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// errExited is a server that exited before serving.
var errExited = errors.New("evident serve exited before serving")

// tryServe is startServe, returning an error wrapping errExited if the
// server exits before it serves.
func tryServe(t *testing.T, dir string, args ...string) (*testServer, error) {
	t.Helper()
	cmd := exec.Command(evidentBin, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	return tryServeCmd(t, cmd)
}

// tryServeCmd starts cmd, which runs evident serve (directly, or through
// a shell that execs it), as tryServe does.
func tryServeCmd(t *testing.T, cmd *exec.Cmd) (*testServer, error) {
	t.Helper()
	s, err := startServeCmd(t, cmd)
	if err != nil {
		return nil, err
	}
	if err := s.awaitServing(60 * time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// startServeCmd starts cmd, which runs evident serve, and returns at once:
// awaitServing waits until it serves. The process is killed when the test
// ends.
func startServeCmd(t *testing.T, cmd *exec.Cmd) (*testServer, error) {
	t.Helper()
	s := &testServer{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{}), cmd: cmd}
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start evident serve: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return s, nil
}

// awaitServing waits up to d until the server prints where it serves, and
// returns an error wrapping errExited if it exits first.
func (s *testServer) awaitServing(d time.Duration) error {
	args := s.cmd.Args[1:]
	// serve prints three lines once it listens: the address first.
	deadline := time.Now().Add(d)
	for {
		out := s.stdout.String()
		if lines := strings.Split(out, "\n"); len(lines) >= 4 {
			url, ok := strings.CutPrefix(lines[0], "evident serving on ")
			if !ok || !(strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://")) {
				return fmt.Errorf("serve's first line is %q, want \"evident serving on http://ADDR\" (or https)", lines[0])
			}
			s.URL = url
			s.Origin, _ = strings.CutPrefix(lines[1], "log origin: ")
			s.LogKey, _ = strings.CutPrefix(lines[2], "log key: ")
			if s.Origin == "" || s.LogKey == "" {
				return fmt.Errorf("serve printed %q, want the origin and the log key on lines 2 and 3", out)
			}
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%w: evident serve %s: %v\nstdout:\n%s\nstderr:\n%s",
				errExited, strings.Join(args, " "), s.waitErr, out, s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("evident serve did not print its address within %s\nstdout:\n%s\nstderr:\n%s", d, out, s.stderr.String())
		}
	}
}

// exitCode waits for the process and returns its exit code (-1 for death by
// signal).
func (s *testServer) exitCode() int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("evident serve did not exit within 60s\nstderr:\n%s", s.stderr.String())
	}
	return s.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and requires a clean exit.
func (s *testServer) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM: %v", err)
	}
	if code := s.exitCode(); code != 0 {
		s.t.Fatalf("evident serve exited %d after SIGTERM, want 0\nstderr:\n%s", code, s.stderr.String())
	}
}

// kill9 kills the server with SIGKILL: a crash, with no chance to clean up.
func (s *testServer) kill9() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Fatalf("kill -9: %v", err)
	}
	<-s.exited
	if ws, ok := s.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		s.t.Fatalf("evident serve was not killed by SIGKILL: %v", s.cmd.ProcessState)
	}
}

// size is the number of durable entries (GET /healthz answers "ok N").
func (s *testServer) size() uint64 {
	s.t.Helper()
	var n uint64
	body := s.get("/healthz", http.StatusOK)
	if _, err := fmt.Sscanf(string(body), "ok %d", &n); err != nil {
		s.t.Fatalf("GET /healthz: %q", body)
	}
	return n
}

// get fetches a path and requires the status.
func (s *testServer) get(path string, status int) []byte {
	s.t.Helper()
	resp, err := httpClient.Get(s.URL + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != status {
		s.t.Fatalf("GET %s: status %d, want %d: %s", path, resp.StatusCode, status, body)
	}
	return body
}

// getJSON fetches a path that must answer 200 with JSON.
func (s *testServer) getJSON(path string, v any) {
	s.t.Helper()
	body := s.get(path, http.StatusOK)
	if err := json.Unmarshal(body, v); err != nil {
		s.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// checkpoint is the latest signed checkpoint note.
func (s *testServer) checkpoint() []byte {
	s.t.Helper()
	return s.get("/v1/checkpoint", http.StatusOK)
}

// waitCheckpoint waits until a signed checkpoint covers size entries and
// returns it.
func (s *testServer) waitCheckpoint(size uint64) []byte {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp := s.checkpoint()
		if checkpointSize(s.t, cp) >= size {
			return cp
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no checkpoint covers %d entries after 30s; latest:\n%s", size, cp)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkpointSize reads the size line of a checkpoint note without checking it.
func checkpointSize(t *testing.T, note []byte) uint64 {
	t.Helper()
	lines := strings.Split(string(note), "\n")
	var n uint64
	if len(lines) < 3 {
		t.Fatalf("not a checkpoint: %q", note)
	}
	if _, err := fmt.Sscanf(lines[1], "%d", &n); err != nil {
		t.Fatalf("checkpoint size line %q: %v", lines[1], err)
	}
	return n
}

var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 32},
}

// post posts a body to /v1/records and returns the status and the answer.
func post(c *http.Client, url string, body []byte) (int, []byte, error) {
	resp, err := c.Post(url+"/v1/records", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

// receipt is the JSON answer to a posted record.
type receipt struct {
	Index      uint64    `json:"index"`
	EntryHash  string    `json:"entryHash"`
	LeafHash   string    `json:"leafHash"`
	ReceivedAt time.Time `json:"receivedAt"`
	Duplicate  bool      `json:"duplicate"`
	Signer     struct {
		Name  string `json:"name"`
		KeyID string `json:"keyId"`
	} `json:"signer"`
	Kind     string `json:"kind"`
	ChangeID string `json:"changeId"`
}

// apiError is the JSON of a refusal.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// postRecord posts an envelope and requires the status; it returns the
// receipt of a 200 or 201, or the refusal.
func (s *testServer) postRecord(env []byte, status int) (receipt, apiError) {
	s.t.Helper()
	got, body, err := post(httpClient, s.URL, env)
	if err != nil {
		s.t.Fatalf("POST /v1/records: %v", err)
	}
	if got != status {
		s.t.Fatalf("POST /v1/records: status %d, want %d: %s", got, status, body)
	}
	var rc receipt
	var refusal apiError
	if got/100 == 2 {
		err = json.Unmarshal(body, &rc)
	} else {
		err = json.Unmarshal(body, &refusal)
	}
	if err != nil {
		s.t.Fatalf("POST /v1/records: %v: %s", err, body)
	}
	return rc, refusal
}

// entry is the JSON of GET /v1/entries/{index}.
type entry struct {
	Index     uint64          `json:"index"`
	EntryHash string          `json:"entryHash"`
	LeafHash  string          `json:"leafHash"`
	Leaf      []byte          `json:"leaf"`
	Envelope  json.RawMessage `json:"envelope"`
	Signer    struct {
		Name  string `json:"name"`
		KeyID string `json:"keyId"`
	} `json:"signer"`
	Findings   []json.RawMessage `json:"findings"`
	ReceivedAt time.Time         `json:"receivedAt"`
}

func (s *testServer) entry(index uint64) entry {
	s.t.Helper()
	var e entry
	s.getJSON(fmt.Sprintf("/v1/entries/%d", index), &e)
	return e
}

// statementOf decodes the in-toto statement a DSSE envelope carries, without
// the project's own decoders.
func statementOf(t *testing.T, env []byte) map[string]any {
	t.Helper()
	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatalf("envelope: %v: %s", err, env)
	}
	if e.PayloadType != "application/vnd.in-toto+json" {
		t.Fatalf("envelope payloadType %q", e.PayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatalf("envelope payload: %v", err)
	}
	var st map[string]any
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatalf("statement: %v: %s", err, payload)
	}
	return st
}

// newSigner reads a PKCS#8 key file into a client signer.
func newSigner(t *testing.T, keyFile string) *client.Signer {
	t.Helper()
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSigner(pem)
	if err != nil {
		t.Fatalf("%s: %v", keyFile, err)
	}
	return s
}

// planRecord is a distinct, realistic plan.created transition.
func planRecord(changeID, env string, n int) evidence.Transition {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", changeID, n)))
	commit := sha256.Sum256([]byte(changeID))
	return evidence.Transition{
		Kind:       evidence.KindPlanCreated,
		ChangeID:   changeID,
		OccurredAt: time.Now().UTC().Truncate(time.Millisecond),
		Actor:      "repo:example/infra-live:pull_request",
		Source: evidence.Source{Repository: "infra-live", PullRequest: 4812 + n,
			CommitSHA: fmt.Sprintf("%x", commit[:20]), Branch: "feature/rds-orders-pg15-params"},
		Target: evidence.Target{Environment: env, Cloud: "aws", Account: "account-payments-" + env,
			Region: "ap-southeast-1", Stack: env + "/aws/account-payments-" + env + "/ap-southeast-1/rds-orders"},
		RiskClass: "high",
		Plan: &evidence.Plan{PlanSHA256: fmt.Sprintf("%x", sum), Engine: "opentofu", EngineVersion: "1.10.6",
			Actions: evidence.ActionCounts{Update: 2, Replace: 1}, RequiresManualApproval: true,
			ResourceChanges: []evidence.ResourceChange{
				{Address: "aws_db_instance.orders", Type: "aws_db_instance", Actions: []string{"update"}},
				{Address: "aws_db_parameter_group.orders", Type: "aws_db_parameter_group", Actions: []string{"create", "delete"}},
			}},
	}
}

// sign signs a transition with its default subjects.
func sign(t *testing.T, s *client.Signer, tr evidence.Transition) []byte {
	t.Helper()
	env, err := s.Sign(tr)
	if err != nil {
		t.Fatalf("sign %s: %v", tr.ChangeID, err)
	}
	return env
}

// postMany posts n distinct records from workers goroutines and returns the
// receipts by index, each with the envelope it acknowledges.
func postMany(t *testing.T, s *testServer, signer *client.Signer, prefix, env string, n, workers int) map[uint64][]byte {
	t.Helper()
	envs := make([][]byte, n)
	for i := range envs {
		envs[i] = sign(t, signer, planRecord(fmt.Sprintf("%s-%04d", prefix, i), env, i))
	}
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	var wg sync.WaitGroup
	next := make(chan []byte)
	for range workers {
		wg.Go(func() {
			for body := range next {
				status, answer, err := post(httpClient, s.URL, body)
				if err != nil || status != http.StatusCreated {
					t.Errorf("POST /v1/records: %d %v: %s", status, err, answer)
					continue
				}
				var rc receipt
				if err := json.Unmarshal(answer, &rc); err != nil {
					t.Errorf("receipt: %v", err)
					continue
				}
				mu.Lock()
				if _, dup := acked[rc.Index]; dup {
					t.Errorf("two records acknowledged at index %d", rc.Index)
				}
				acked[rc.Index] = body
				mu.Unlock()
			}
		})
	}
	for _, e := range envs {
		next <- e
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return acked
}

// writeFile writes a test file.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mustContain fails unless s holds every part.
func mustContain(t *testing.T, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s does not contain %q:\n%s", what, p, s)
		}
	}
}
