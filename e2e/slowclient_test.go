package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSlowClientsDoNotBlock holds a crowd of misbehaving connections open
// against a real server while well-behaved runners post: slowloris posts
// (headers sent, body promised and never sent), requests whose headers
// never end, and exports whose responses are never read (so the server's
// writes block on a full socket). None of them may hold up the sequencer or
// the other clients: every record posted meanwhile is acknowledged, before
// the server's read timeout (30s) could have rescued it by closing the slow
// connections.
func TestSlowClientsDoNotBlock(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	// Enough entries that an export does not fit in the socket buffers.
	postMany(t, srv, signer, "CHG-SLOW-A", "prod", 600, 4)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(rcvbuf int) net.Conn {
		t.Helper()
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				if rcvbuf > 0 {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
				}
			}); err != nil {
				return err
			}
			return serr
		}}
		c, err := d.Dial("tcp", u.Host)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	write := func(c net.Conn, s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	start := time.Now()
	const slowloris, headless, readers = 100, 50, 20
	for range slowloris {
		write(dial(0), "POST /v1/records HTTP/1.1\r\nHost: evident\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"payloadType\":")
	}
	var headerless []net.Conn
	for range headless {
		c := dial(0)
		write(c, "POST /v1/records HTTP/1.1\r\nHost: evi")
		headerless = append(headerless, c)
	}
	for range readers {
		// Ten exports pipelined on one connection: more than the socket
		// buffers on both sides hold, so the server's writes do block.
		write(dial(4096), strings.Repeat("GET /v1/export HTTP/1.1\r\nHost: evident\r\n\r\n", 10))
	}

	// Well-behaved runners are served as usual.
	acked := postMany(t, srv, signer, "CHG-SLOW-B", "prod", 300, 4)
	checkAcked(t, srv, acked)
	if took := time.Since(start); took >= 25*time.Second {
		t.Fatalf("posting took %s with slow clients connected: they may have been waited out, not worked around", took)
	}
	t.Logf("%d records acknowledged in %s beside %d slowloris posts, %d unfinished headers and %d unread exports",
		len(acked), time.Since(start).Round(time.Millisecond), slowloris, headless, readers)

	// Unfinished headers are cut off by the server's header timeout (5s).
	for i, c := range headerless {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("connection %d with unfinished headers still open after the header timeout: %v", i, err)
		}
	}
	r := evident(t, work, "proof", "--index", fmt.Sprint(srv.size()-1), "--server", srv.URL, "--log-key", srv.LogKey)
	mustContain(t, "proof beside slow clients", r.stderr, "is included")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestOverloadLimitsConfig: limits.ratePerSigner and limits.rateBurst
// refuse a runner posting faster with 429 and Retry-After, and
// limits.maxConnections holds a connection beyond it in the accept queue
// until another closes, instead of serving it.
func TestOverloadLimitsConfig(t *testing.T) {
	work := t.TempDir()
	cfg := filepath.Join(work, "evident.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\ndata: data\nlimits:\n  ratePerSigner: 2\n  rateBurst: 5\n  maxConnections: 4\n")
	srv := startServe(t, work, "--config", cfg)
	signer := newSigner(t, filepath.Join(work, "data", "dev-runner.key"))
	statuses := map[int]int{}
	for i := range 8 {
		status, body, err := post(httpClient, srv.URL, sign(t, signer, planRecord(fmt.Sprintf("CHG-RATE-%d", i), "prod", i)))
		if err != nil {
			t.Fatal(err)
		}
		statuses[status]++
		if status == http.StatusTooManyRequests && !strings.Contains(string(body), `"rate_limited"`) {
			t.Errorf("429 body %s", body)
		}
	}
	// Eight posts in far less than a second: the burst of five, then 429s
	// (one more token may have refilled meanwhile).
	if statuses[http.StatusCreated] < 5 || statuses[http.StatusCreated] > 6 || statuses[http.StatusTooManyRequests] < 2 {
		t.Fatalf("statuses %v, want 5 (or 6) accepted and the rest 429", statuses)
	}
	// The body says the wait the Retry-After header says.
	resp, err := httpClient.Post(srv.URL+"/v1/records", "application/json", bytes.NewReader(sign(t, signer, planRecord("CHG-RATE-X", "prod", 99))))
	if err != nil {
		t.Fatal(err)
	}
	refusal, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(refusal), "retry after "+resp.Header.Get("Retry-After")+" s") {
		t.Errorf("429 with Retry-After %q and body %s: the two must say the same wait", resp.Header.Get("Retry-After"), refusal)
	}

	u, _ := url.Parse(srv.URL)
	httpClient.CloseIdleConnections()
	write := func(c net.Conn) {
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: evident\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	var held []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
		// An answer shows the server accepted it. Idle after it, the
		// connection stays open for the server's IdleTimeout (2 min), not
		// the 5 s it allows a first request, and counts against the limit.
		write(c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("held connection %d: %v", len(held), err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("held connection %d: %s, close %v", len(held), resp.Status, resp.Close)
		}
	}
	extra, err := net.Dial("tcp", u.Host) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	write(extra)
	_ = extra.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := extra.Read(make([]byte, 64)); err == nil || !isTimeout(err) {
		t.Fatalf("a fifth connection beyond maxConnections 4 was served (%d bytes, %v)", n, err)
	}
	held[0].Close()
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	if n, err := extra.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("the waiting connection once another closed: %q, %v", buf[:n], err)
	}
}
