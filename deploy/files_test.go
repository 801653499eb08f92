package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestSystemdUnit has systemd check the unit (with the binary path pointed
// at one that exists here).
func TestSystemdUnit(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found")
	}
	unit, err := os.ReadFile(filepath.Join("systemd", "evident.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/evident serve --config /etc/evident/evident.yaml")) {
		t.Fatal("the unit does not run evident serve with its configuration")
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "evident.service")
	if err := os.WriteFile(path, bytes.ReplaceAll(unit, []byte("/usr/local/bin/evident"), []byte(truePath)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestCompose checks the compose file's shape: a writer exporting to MinIO,
// two replicas following it, Prometheus with the alert rules (whose
// configuration promtool accepts) and Grafana with the dashboard.
func TestCompose(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("compose", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
			Volumes []string `yaml:"volumes"`
			Ports   []string `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range []string{"minio", "writer", "replica-1", "replica-2", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("compose.yaml has no service %s", name)
		}
	}
	for _, name := range []string{"replica-1", "replica-2"} {
		if cmd := strings.Join(c.Services[name].Command, " "); !strings.Contains(cmd, "serve --follow s3://evident-log/prod") {
			t.Errorf("%s runs %q, want serve --follow", name, cmd)
		}
	}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s on every interface", name, p)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}
	var w struct {
		ObjectStore struct {
			URL string `yaml:"url"`
		} `yaml:"objectStore"`
	}
	cfg, err := os.ReadFile(filepath.Join("compose", "evident.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(cfg, &w); err != nil || w.ObjectStore.URL != "s3://evident-log/prod" {
		t.Errorf("the writer does not export where the replicas follow: %v %q", err, w.ObjectStore.URL)
	}

	tool := promtool(t)
	dir := t.TempDir()
	prom, err := os.ReadFile(filepath.Join("compose", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	prom = bytes.ReplaceAll(prom, []byte("/etc/prometheus/alerts.yml"), []byte(filepath.Join(dir, "alerts.yml")))
	for name, content := range map[string][]byte{"prometheus.yml": prom, "alerts.yml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	runTool(t, dir, tool, "check", "config", "prometheus.yml")
}

// The image's build step (Dockerfile, scripts/build.sh): no Docker engine
// runs here, so the test checks what the image holds. The Dockerfile builds
// with the Go release go.mod names and runs as the chart's user; the build
// script gives a static, path-trimmed binary without a VCS stamp that
// reports the version it was given.
func TestImageBuild(t *testing.T) {
	df, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	toolchain := regexp.MustCompile(`(?m)^toolchain go(\S+)$`).FindSubmatch(mod)
	if toolchain == nil || !bytes.Contains(df, []byte("FROM golang:"+string(toolchain[1])+"-")) {
		t.Errorf("the Dockerfile does not build with go.mod's toolchain (%s)", toolchain)
	}
	values, err := os.ReadFile(filepath.Join("helm", "evident", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(df, []byte("USER 65532:65532")) || !bytes.Contains(values, []byte("runAsUser: 65532")) {
		t.Error("the image's user is not the chart's runAsUser")
	}
	if !bytes.Contains(df, []byte("RUN scripts/build.sh /out/evident")) {
		t.Error("the Dockerfile does not build with scripts/build.sh")
	}

	// One build: a second would come from the build cache and prove
	// nothing; reproducibility rests on Go's (same inputs, same bytes) and
	// on the flags checked here.
	bin := filepath.Join(t.TempDir(), "evident")
	if out, err := exec.Command("bash", filepath.Join("..", "scripts", "build.sh"), bin, "v9.9.9-test").CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "evident v9.9.9-test ") {
		t.Errorf("the built binary reports %q (%v)", out, err)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath=true"} {
		if err != nil || !strings.Contains(string(info), want) {
			t.Errorf("the build lacks %s (%v):\n%s", want, err, info)
		}
	}
	if strings.Contains(string(info), "vcs.revision") {
		t.Error("the build is stamped with the checkout's state: two checkouts would differ")
	}
}

// docs/design.md's package table names every package of the module, and
// only those ("internal/..." stands for the packages below internal/ that
// the table does not name one by one).
func TestDesignListsEveryPackage(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9/.]+)` \\|").FindAllSubmatch(b, -1) {
		listed[string(m[1])] = true
	}
	list := exec.Command("go", "list", "./...")
	list.Dir = ".." // the module's root
	out, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, pkg := range strings.Fields(string(out)) {
		name := strings.TrimPrefix(strings.TrimPrefix(pkg, "evident.dev/evident"), "/")
		if strings.HasPrefix(name, "internal/") && !listed[name] {
			name = "internal/..."
		}
		seen[name] = true
		if !listed[name] {
			t.Errorf("docs/design.md does not list the package %s", name)
		}
	}
	for name := range listed {
		if !seen[name] {
			t.Errorf("docs/design.md lists %s, which is not a package", name)
		}
	}
}
