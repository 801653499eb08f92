package dashboard_test

import (
	"bytes"
	"context"
	"html"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/servertest"
	"evident.dev/evident/metrics/dashboard"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// start runs the write path with the pages added, and posts changes over
// three days: prod complete, then incomplete (no approval); dev complete;
// a denial and a drift.
func start(t testing.TB) *servertest.Server {
	t.Helper()
	f := servertest.Start(t, t.TempDir())
	h, err := dashboard.New(dashboard.Config{Log: f.Log, Source: f.Metrics.Projection()})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(f.Mux)
	edit := func(change, env, when string, approved bool) func(*evidence.Transition) {
		return func(p *evidence.Transition) {
			p.ChangeID, p.Target.Environment, p.OccurredAt = change, env, at(when)
			if p.Apply != nil {
				p.Apply.StartedAt, p.Apply.CompletedAt = p.OccurredAt.Add(-time.Minute), p.OccurredAt
			}
			if p.Approval != nil {
				p.Approval.ApprovedAt = p.OccurredAt
				p.Approval.ExpiresAt = p.OccurredAt.Add(24 * time.Hour)
			}
		}
	}
	posts := []struct{ kind, change, env, when string }{
		{"plan.created", "CHG-A", "prod", "2026-07-01T09:00:00Z"},
		{"policy.evaluated", "CHG-A", "prod", "2026-07-01T09:01:00Z"},
		{"apply.completed", "CHG-A", "prod", "2026-07-01T10:00:00Z"},
		{"apply.completed", "CHG-B", "prod", "2026-07-02T10:00:00Z"},
		{"apply.completed", runnerChangeID, "prod", "2026-07-03T10:00:00Z"},
		{"apply.completed", "CHG-D", "dev", "2026-07-02T10:00:00Z"},
		{"drift.detected", "CHG-E", "prod", "2026-07-03T11:00:00Z"},
	}
	for _, p := range posts {
		if got := f.Post(f.CI, servertest.Example(t, p.kind, edit(p.change, p.env, p.when, false))); got != 201 {
			t.Fatalf("post %s %s: %d", p.kind, p.change, got)
		}
	}
	f.WaitProjected()
	// Wait until a signed checkpoint covers every entry, so proofs are final.
	deadline := time.Now().Add(10 * time.Second)
	for f.Log.CheckpointSize() < f.Log.Size() {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covers the log")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return f
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func mustContain(t *testing.T, page, body string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(body, p) {
			t.Errorf("%s lacks %q", page, p)
		}
	}
}

func checkHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	if csp == "" || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
}

// runnerChangeID is a change id as the bundled runner makes it: a '#' and
// slashes, which links must escape.
const runnerChangeID = "infra-live#4812/prod/web"

func TestPages(t *testing.T) {
	f := start(t)
	resp, body := get(t, f.URL+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %d\n%s", resp.StatusCode, body)
	}
	checkHeaders(t, resp)
	mustContain(t, "the dashboard", body,
		"Evidence completeness by environment", "prod: 0.0% on the latest day (3 days)", "dev: 100.0% on the latest day (1 days)",
		"iac.prod.database.replacement.requires-db-owner", // the denial
		`<a href="/changes/infra-live%234812/prod/web">infra-live#4812/prod/web</a>`, "approval.missing",
		`<link rel="stylesheet" href="/assets/style.css">`)
	if strings.Contains(body, "<script") || strings.Contains(body, "style=") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("the dashboard has a script, an inline style or a link to another origin")
	}

	// The link to a change id as the runner makes them leads to it.
	resp, body = get(t, f.URL+"/changes/infra-live%234812/prod/web")
	if resp.StatusCode != 200 || !strings.Contains(body, "apply.completed") {
		t.Fatalf("GET the escaped link of %s: %d\n%s", runnerChangeID, resp.StatusCode, body)
	}

	resp, body = get(t, f.URL+"/changes/CHG-A")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /changes/CHG-A: %d\n%s", resp.StatusCode, body)
	}
	checkHeaders(t, resp)
	mustContain(t, "the change page", body, "plan.created", "policy.evaluated", "apply.completed", "signed by ci")
	if n := strings.Count(body, `<span class="badge">proved</span>`); n != 3 {
		t.Errorf("%d records proved, want 3:\n%s", n, body)
	}

	resp, body = get(t, f.URL+"/changes/CHG-NONE")
	if resp.StatusCode != 404 || !strings.Contains(body, "no record of change CHG-NONE") {
		t.Errorf("unknown change: %d %s", resp.StatusCode, body)
	}
	resp, _ = get(t, f.URL+"/changes/%3Cscript%3E")
	if resp.StatusCode != 404 {
		t.Errorf("odd change id: %d", resp.StatusCode)
	}
	resp, body = get(t, f.URL+"/assets/style.css")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, "#0b3d91") {
		t.Errorf("stylesheet: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// chromium finds headless Chromium, failing when the suite requires it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("EVIDENT_REQUIRE_TOOLS") != "" {
		t.Fatal("chromium not found: run scripts/setup.sh (Debian package chromium)")
	}
	t.Skip("chromium not found; scripts/setup.sh installs it")
	return ""
}

// screenshot renders url in headless Chromium and returns the image.
func screenshot(t *testing.T, bin, url string) image.Image {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+filepath.Join(dir, "profile"), "--hide-scrollbars",
		"--window-size=1200,1000", "--screenshot="+out, url)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if name := os.Getenv("EVIDENT_SCREENSHOTS"); name != "" { // keep them to look at
		base := strings.TrimPrefix(url[strings.LastIndex(url, "/"):], "/")
		if base == "" {
			base = "overview"
		}
		_ = os.WriteFile(filepath.Join(name, base+".png"), b, 0o644)
	}
	return img
}

// pixels counts the image's pixels of exactly the color #rrggbb.
func pixels(img image.Image, rgb uint32) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == rgb>>16&0xff && g>>8 == rgb>>8&0xff && bl>>8 == rgb&0xff {
				n++
			}
		}
	}
	return n
}

// TestScreenshots renders the pages in headless Chromium under their CSP and
// checks what was drawn: the stylesheet applied (the header's color), the
// completeness lines of both environments, the denial bar, the drift bar,
// and on the change page three green "proved" badges.
func TestScreenshots(t *testing.T) {
	bin := chromium(t)
	f := start(t)
	img := screenshot(t, bin, f.URL+"/")
	if b := img.Bounds(); b.Dx() != 1200 || b.Dy() != 1000 {
		t.Fatalf("screenshot is %v", b)
	}
	checks := []struct {
		what string
		rgb  uint32
		min  int
	}{
		{"header (stylesheet applied)", 0x0b3d91, 1200 * 30},
		{"dev completeness line", 0x1f6feb, 500},
		{"prod completeness line", 0xd1242f, 500}, // second environment's color, also the denial bar
		{"drift bar", 0x9a6700, 14 * 100},
	}
	for _, c := range checks {
		if n := pixels(img, c.rgb); n < c.min {
			t.Errorf("dashboard: %s: %d pixels of #%06x, want at least %d", c.what, n, c.rgb, c.min)
		}
	}
	img = screenshot(t, bin, f.URL+"/changes/CHG-A")
	if n := pixels(img, 0x0b3d91); n < 1200*30 {
		t.Errorf("change page: header has %d pixels", n)
	}
	if n := pixels(img, 0x1a7f37); n < 3*200 {
		t.Errorf("change page: %d green pixels, want three proved badges", n)
	}
}

// FuzzChangePage: any change id in the path gets a page or a 4xx, never a
// server error, and the id never reaches the page unescaped.
func FuzzChangePage(f *testing.F) {
	for _, s := range []string{"CHG-A", "CHG-NONE", "<script>alert(1)</script>", "a/b", "%00", strings.Repeat("x", 300), "\"'><img src=x>"} {
		f.Add(s)
	}
	srv := start(f)
	f.Fuzz(func(t *testing.T, id string) {
		req, err := http.NewRequest("GET", srv.URL+"/changes/"+url.PathEscape(id), nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%q: %d %s", id, resp.StatusCode, body)
		}
		// The not-found page names the id, escaped: the text between the
		// markers holds no markup and unescapes to the id.
		if _, rest, ok := strings.Cut(string(body), "no record of change "); ok && resp.StatusCode == 404 {
			named, _, _ := strings.Cut(rest, ".</p>")
			if strings.ContainsAny(named, "<>\"") || norm(html.UnescapeString(named)) != norm(id) {
				t.Fatalf("%q is named as %q", id, named)
			}
		}
	})
}

// norm is what html/template does to text it cannot pass through.
func norm(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
