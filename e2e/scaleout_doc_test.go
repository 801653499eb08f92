package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"evident.dev/evident/internal/miniotest"
)

// TestScaleOutWalkthrough runs the walk-through of docs/scale-out.md as
// written, against a real MinIO: its titled blocks in order, with bash and
// the real binary, ports 8080 and 8081 moved to free ones. The test does
// the one thing the page only describes: it kills the writer (-9) before
// the restore.
func TestScaleOutWalkthrough(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the walk-through with")
	}
	m := miniotest.Start(t)
	m.Bucket(t, "evident-log")
	page := filepath.Join("..", "docs", "scale-out.md")
	blocks := map[string]string{}
	for _, b := range append(shBlocks(t, page), fencedBlocks(t, page, "yaml")...) {
		if b.title != "" {
			blocks[b.title] = b.body
		}
	}
	ports := strings.NewReplacer("127.0.0.1:8080", freeAddr(t), "127.0.0.1:8081", freeAddr(t))
	block := func(title string) string {
		t.Helper()
		b, ok := blocks[title]
		if !ok {
			t.Fatalf("docs/scale-out.md has no block titled %q", title)
		}
		return ports.Replace(b)
	}
	work := t.TempDir()
	writeFile(t, filepath.Join(work, "evident.yaml"), block("evident.yaml"))
	writeFile(t, filepath.Join(work, "env.sh"), "")
	env := append(os.Environ(),
		"PATH="+filepath.Dir(evidentBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"EVIDENT_S3_ENDPOINT="+m.Endpoint, "AWS_ACCESS_KEY_ID="+miniotest.AccessKey, "AWS_SECRET_ACCESS_KEY="+miniotest.SecretKey)
	// Each block runs in its own bash; what a block exports reaches the
	// later ones through env.sh, as in one shell.
	run := func(title string) string {
		t.Helper()
		cmd := exec.Command(bash, "-euo", "pipefail", "-c", "source env.sh\n"+block(title)+"\nexport -p > env.sh\n")
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("block %q failed: %v\n%s", title, err, out)
		}
		return string(out)
	}
	serve := func(title string) *testServer {
		t.Helper()
		cmd := exec.Command(bash, "-c", "source env.sh\nexec "+block(title))
		cmd.Dir, cmd.Env = work, env
		s, err := tryServeCmd(t, cmd)
		if err != nil {
			t.Fatalf("block %q: %v", title, err)
		}
		return s
	}

	run("secrets")
	w := serve("serve writer")
	// The verifier key keys generate wrote is the one the writer signs with.
	if vkey, err := os.ReadFile(filepath.Join(work, "secrets", "log.vkey")); err != nil || strings.TrimSpace(string(vkey)) != w.LogKey {
		t.Fatalf("secrets/log.vkey holds %q (%v), the writer prints %q", vkey, err, w.LogKey)
	}
	mustContain(t, "load", run("load"), "2000")
	r := serve("serve replica")
	size := w.size()
	if size < 2000 {
		t.Fatalf("the writer holds %d entries after the load, want at least 2000", size)
	}
	waitReplica(t, r, size)

	w.kill9()
	out := run("restore")
	mustContain(t, "restore", out, fmt.Sprintf("restored %d entries", size))
	w = serve("serve writer")
	if got := w.size(); got != size {
		t.Fatalf("the restored writer holds %d entries, the lost one %d", got, size)
	}
	run("load")
	size = w.size()
	cp := w.waitCheckpoint(size)
	if got := waitReplica(t, r, size); string(got) != string(cp) {
		t.Fatalf("the replica's checkpoint after the restore:\n%s\nthe writer's:\n%s", got, cp)
	}
	if _, err := os.Stat(filepath.Join(work, "evident-data", "log.key")); err == nil {
		t.Fatal("the log key was written to the data disk")
	}
}

// freeAddr returns a 127.0.0.1 address no one listens on at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
