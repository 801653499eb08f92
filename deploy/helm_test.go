package deploy_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// exampleVerifierKey is a note verifier key for the chart's origin, made
// for these files only.
const exampleVerifierKey = "evident.example.com/prod+4f01466b+AaRNU8vtrJGFir/4EVgxNU08JL532QsVI8a54peDH1zu"

// helm finds helm, failing when the test suite requires its tools.
func helm(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("helm")
	if err != nil {
		if os.Getenv("EVIDENT_REQUIRE_TOOLS") != "" {
			t.Fatal("helm not found: run scripts/setup.sh")
		}
		t.Skip("helm not found; scripts/setup.sh installs it")
	}
	return p
}

func render(t *testing.T, tool string, set ...string) []byte {
	t.Helper()
	out, err := helmTemplate(t, tool, set...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// helmTemplate renders the chart with set; its error holds helm's message.
func helmTemplate(t *testing.T, tool string, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "evident", filepath.Join("helm", "evident"), "--namespace", "evident"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// objects decodes a multi-document manifest, keyed by "Kind/name".
func objects(t *testing.T, manifest []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("manifest: %v", err)
		}
		if obj == nil {
			continue
		}
		md, _ := obj["metadata"].(map[string]any)
		if obj["apiVersion"] == nil || md["name"] == nil {
			t.Fatalf("object without apiVersion or name: %v", obj)
		}
		out[fmt.Sprintf("%s/%s", obj["kind"], md["name"])] = obj
	}
}

// dig walks maps and lists: dig(o, "spec", "template", "spec", "containers", 0, "args").
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestHelmChart(t *testing.T) {
	tool := helm(t)
	lint := exec.Command(tool, "lint", "--strict", filepath.Join("helm", "evident"), "--set", "log.verifierKey="+exampleVerifierKey)
	lint.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if out, err := lint.CombinedOutput(); err != nil || !strings.Contains(string(out), "0 chart(s) failed") || strings.Contains(string(out), "[WARNING]") || strings.Contains(string(out), "[INFO]") {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}

	// The plain manifests are the chart rendered with its defaults.
	rendered := render(t, tool, "log.verifierKey="+exampleVerifierKey, "objectStore.existingSecret=evident-s3")
	plain, err := os.ReadFile(filepath.Join("kubernetes", "evident.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, body, _ := bytes.Cut(plain, []byte("\n---\n")); !bytes.Equal(append([]byte("---\n"), body...), rendered) {
		t.Error("deploy/kubernetes/evident.yaml differs from the chart rendered with its defaults: render it again (docs/operations.md)")
	}

	objs := objects(t, rendered)
	writer, replicas := objs["StatefulSet/evident-writer"], objs["Deployment/evident-replica"]
	if writer == nil || replicas == nil {
		t.Fatalf("rendered objects: %v", keys(objs))
	}
	if n := dig(writer, "spec", "replicas"); n != 1 {
		t.Errorf("writer replicas = %v, want exactly 1 (one sequencer)", n)
	}
	if n := dig(replicas, "spec", "replicas"); n != 2 {
		t.Errorf("read replicas = %v, want the default 2", n)
	}
	args := fmt.Sprint(dig(replicas, "spec", "template", "spec", "containers", 0, "args"))
	for _, want := range []string{"--follow=s3://evident-log/prod", "--log-key=" + exampleVerifierKey} {
		if !strings.Contains(args, want) {
			t.Errorf("replica args %s lack %s", args, want)
		}
	}
	for name, o := range map[string]map[string]any{"writer": writer, "replicas": replicas} {
		if dig(o, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true ||
			dig(o, "spec", "template", "spec", "containers", 0, "securityContext", "readOnlyRootFilesystem") != true {
			t.Errorf("%s does not run as non-root with a read-only root filesystem", name)
		}
		c := dig(o, "spec", "template", "spec", "containers", 0)
		if dig(c, "readinessProbe", "httpGet", "path") != "/readyz" || dig(c, "livenessProbe", "httpGet", "path") != "/healthz" ||
			dig(c, "startupProbe", "httpGet", "path") != "/healthz" {
			t.Errorf("%s probes: readiness must be /readyz, liveness and startup /healthz: %v", name, c)
		}
		env := fmt.Sprint(dig(o, "spec", "template", "spec", "containers", 0, "env"))
		if !strings.Contains(env, "AWS_SECRET_ACCESS_KEY") || !strings.Contains(env, "evident-s3") {
			t.Errorf("%s gets no object-store credentials from the Secret: %s", name, env)
		}
	}
	if cfg := fmt.Sprint(dig(objs["ConfigMap/evident-writer"], "data", "evident.yaml")); !strings.Contains(cfg, "url: \"s3://evident-log/prod\"") {
		t.Errorf("the writer does not export where the replicas follow:\n%s", cfg)
	}

	// TLS from a Secret, the Ingress and the ServiceMonitor.
	objs = objects(t, render(t, tool, "log.verifierKey="+exampleVerifierKey, "tls.secretName=evident-tls",
		"ingress.enabled=true", "ingress.tlsSecretName=evident-ingress-tls", "serviceMonitor.enabled=true", "replicas.count=3"))
	for _, k := range []string{"Ingress/evident", "ServiceMonitor/evident"} {
		if objs[k] == nil {
			t.Errorf("no %s with it enabled", k)
		}
	}
	for _, k := range []string{"StatefulSet/evident-writer", "Deployment/evident-replica"} {
		if s := dig(objs[k], "spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "scheme"); s != "HTTPS" {
			t.Errorf("%s probes with %v under TLS", k, s)
		}
	}
	if cfg := fmt.Sprint(dig(objs["ConfigMap/evident-replica"], "data", "evident.yaml")); !strings.Contains(cfg, "certFile: /etc/evident/tls/tls.crt") {
		t.Errorf("replica configuration has no TLS:\n%s", cfg)
	}
	if n := dig(objs["Deployment/evident-replica"], "spec", "replicas"); n != 3 {
		t.Errorf("replicas.count=3 gives %v", n)
	}
	// Replicas cannot start without the key they pin: rendering says so.
	if out := renderFails(t, tool); !strings.Contains(out, "set log.verifierKey, or log.existingSecret holding log.vkey") {
		t.Errorf("rendering replicas without a verifier key: %s", out)
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// renderFails renders the chart with set and returns helm's refusal.
func renderFails(t *testing.T, tool string, set ...string) string {
	t.Helper()
	_, err := helmTemplate(t, tool, set...)
	if err == nil {
		t.Fatalf("helm template with %v rendered, want a refusal", set)
	}
	return err.Error()
}

// The chart's operational objects: pods without a service-account token, a
// disruption budget for the replicas, a network policy, the alerts and the
// dashboard (copies of deploy/prometheus and deploy/grafana, kept equal),
// the watcher with its read-only RBAC, and lease failover.
func TestHelmChartOperations(t *testing.T) {
	tool := helm(t)
	for copy, original := range map[string]string{
		"helm/evident/files/alerts.yml":             "prometheus/alerts.yml",
		"helm/evident/files/evident-dashboard.json": "grafana/evident-dashboard.json",
	} {
		a, errA := os.ReadFile(copy)
		b, errB := os.ReadFile(original)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: copy it again (%v %v)", copy, original, errA, errB)
		}
	}
	key := "log.verifierKey=" + exampleVerifierKey
	objs := objects(t, render(t, tool, key))
	if sa := objs["ServiceAccount/evident"]; sa == nil || sa["automountServiceAccountToken"] != false {
		t.Errorf("no ServiceAccount without a token: %v", sa)
	}
	for _, name := range []string{"StatefulSet/evident-writer", "Deployment/evident-replica"} {
		spec := dig(objs[name], "spec", "template", "spec")
		if dig(spec, "serviceAccountName") != "evident" || dig(spec, "automountServiceAccountToken") != false {
			t.Errorf("%s mounts a service-account token: %v", name, spec)
		}
	}
	if dig(objs["PodDisruptionBudget/evident-replica"], "spec", "minAvailable") != 1 {
		t.Error("no PodDisruptionBudget keeping a replica up")
	}
	if ports := fmt.Sprint(dig(objs["NetworkPolicy/evident"], "spec", "ingress", 0, "ports")); !strings.Contains(ports, "http") {
		t.Errorf("the NetworkPolicy does not admit the HTTP port: %s", ports)
	}

	objs = objects(t, render(t, tool, key, "prometheusRule.enabled=true", "grafanaDashboard.enabled=true"))
	rules := fmt.Sprint(dig(objs["PrometheusRule/evident"], "spec", "groups"))
	for _, alert := range []string{"EvidentDown", "EvidentIngestRefusing", "EvidentCheckpointNotAdvancing"} {
		if !strings.Contains(rules, alert) {
			t.Errorf("the PrometheusRule lacks %s", alert)
		}
	}
	if d := dig(objs["ConfigMap/evident-dashboard"], "data", "evident-dashboard.json"); d == nil || !strings.Contains(fmt.Sprint(d), `"panels"`) {
		t.Error("no dashboard ConfigMap")
	}

	objs = objects(t, render(t, tool, key, "watcher.enabled=true", "watcher.environment=prod", "watcher.cluster=prod-eu-1", "watcher.keySecret=evident-watcher"))
	w := objs["StatefulSet/evident-watcher"]
	args := fmt.Sprint(dig(w, "spec", "template", "spec", "containers", 0, "args"))
	for _, want := range []string{"watch argocd", "--environment=prod", "--cluster=prod-eu-1", "--server=http://evident-writer:8080"} {
		if !strings.Contains(args, want) {
			t.Errorf("watcher args %s lack %s", args, want)
		}
	}
	if dig(w, "spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "path") != "/readyz" {
		t.Error("the watcher has no readiness probe on /readyz")
	}
	role := fmt.Sprint(dig(objs["ClusterRole/evident-watcher"], "rules"))
	if !strings.Contains(role, "applications") || !strings.Contains(role, "services") || strings.Contains(role, "create") {
		t.Errorf("the watcher's ClusterRole is not read-only on its resources and services: %s", role)
	}
	if out := renderFails(t, tool, key, "watcher.enabled=true", "watcher.environment=prod", "watcher.cluster=c"); !strings.Contains(out, "watcher.keySecret is required") {
		t.Errorf("a watcher without a key: %s", out)
	}

	// One step: the replicas take the verifier key from the log key's
	// Secret (its log.vkey only), so nothing has to be read back from
	// the writer first.
	objs = objects(t, render(t, tool, "log.existingSecret=evident-log-key"))
	replica := dig(objs["Deployment/evident-replica"], "spec", "template", "spec", "containers", 0)
	if args, env := fmt.Sprint(dig(replica, "args")), fmt.Sprint(dig(replica, "env")); !strings.Contains(args, "--log-key=$(EVIDENT_LOG_VERIFIER_KEY)") ||
		!strings.Contains(env, "key:log.vkey") || strings.Contains(env, "log.key") {
		t.Errorf("replicas do not take the verifier key, and only it, from the Secret: %s %s", args, env)
	}
	objs = objects(t, render(t, tool, key, "writer.lease.enabled=true", "objectStore.durability=object-store"))
	writer := objs["StatefulSet/evident-writer"]
	if dig(writer, "spec", "replicas") != 2 || !strings.Contains(fmt.Sprint(dig(writer, "spec", "template", "spec", "containers", 0, "args")), "--lease=evident/evident-writer") {
		t.Errorf("lease candidates: %v", dig(writer, "spec"))
	}
	if dig(writer, "spec", "volumeClaimTemplates") != nil || !strings.Contains(fmt.Sprint(objs["Role/evident-writer-lease"]), "leases") {
		t.Errorf("lease candidates keep a volume or have no Lease role: %v", writer)
	}
	if out := renderFails(t, tool, key, "writer.lease.enabled=true"); !strings.Contains(out, "durability: object-store") {
		t.Errorf("lease without object-store durability: %s", out)
	}
}
