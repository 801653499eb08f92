package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Kubernetes is a real kube-apiserver, with its own etcd, started for one
// test on 127.0.0.1. Authorization is RBAC, as in a cluster: the admin
// user is in system:masters; every other user has only what the test binds.
type Kubernetes struct {
	URL    string // https://127.0.0.1:PORT
	caFile string // the server's self-signed certificate
	tokens map[string]string

	t         testing.TB
	apiserver []string // its command line
	stop      func()   // stops the running kube-apiserver
	log       *os.File
}

// Users with a static token, besides the admin. Tests grant them rights
// with Roles and RoleBindings.
var kubernetesUsers = []string{"evident-watcher", "evident-writer-a", "evident-writer-b", "evident-nobody"}

// StartKubernetes starts etcd and kube-apiserver (installed by
// scripts/setup.sh) in a temporary directory, waits until the API server
// is ready, and stops both when the test ends.
func StartKubernetes(t testing.TB) *Kubernetes {
	t.Helper()
	etcdBin, apiserverBin := Tool(t, "etcd"), Tool(t, "kube-apiserver")
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "kubernetes.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	k := &Kubernetes{t: t, log: logf, tokens: map[string]string{"admin": randomHex(t, 16)}}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
	startProcess(t, logf, etcdBin,
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client", etcdURL,
		"--listen-peer", "http://127.0.0.1:"+strconv.Itoa(freePort(t)))
	waitReady(t, http.DefaultClient, etcdURL+"/health", "", k.dump)

	var tokens strings.Builder
	fmt.Fprintf(&tokens, "%s,admin,admin,system:masters\n", k.tokens["admin"])
	for _, u := range kubernetesUsers {
		k.tokens[u] = randomHex(t, 16)
		fmt.Fprintf(&tokens, "%s,%s,%s\n", k.tokens[u], u, u)
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(tokens.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	saKey, saPub := serviceAccountKeys(t, dir)
	port := freePort(t)
	k.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	certDir := filepath.Join(dir, "certs")
	k.apiserver = []string{apiserverBin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(port),
		"--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none", // a loopback advertise address is refused otherwise
		"--cert-dir", certDir,
		"--token-auth-file", tokenFile,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
	}
	// The serving certificate is written before the server listens.
	k.caFile = filepath.Join(certDir, "apiserver.crt")
	k.start()
	return k
}

// dump is the end of etcd's and kube-apiserver's log.
func (k *Kubernetes) dump() string {
	b, _ := os.ReadFile(k.log.Name())
	return string(b[max(0, len(b)-8000):])
}

func (k *Kubernetes) start() {
	k.t.Helper()
	k.stop = startProcess(k.t, k.log, k.apiserver[0], k.apiserver[1:]...)
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	waitReady(k.t, insecure, k.URL+"/readyz", k.tokens["admin"], k.dump)
}

// Restart kills kube-apiserver (SIGKILL: every watch it serves ends
// without a goodbye) and starts it again on the same address and etcd,
// returning once it is ready.
func (k *Kubernetes) Restart() {
	k.t.Helper()
	k.stop()
	k.start()
}

// Config is a client configuration for user ("admin", or one of the users
// with a static token), trusting the server's certificate.
func (k *Kubernetes) Config(t testing.TB, user string) *rest.Config {
	t.Helper()
	token, ok := k.tokens[user]
	if !ok {
		t.Fatalf("no Kubernetes user %q", user)
	}
	return &rest.Config{Host: k.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: k.caFile}}
}

// Kubeconfig writes a kubeconfig file for user and returns its path, for a
// process the test starts.
func (k *Kubernetes) Kubeconfig(t testing.TB, user string) string {
	t.Helper()
	cfg := k.Config(t, user)
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	body := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: %s}
current-context: test
`, cfg.Host, cfg.CAFile, user, cfg.BearerToken, user)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startProcess starts a server process whose output goes to logf, and
// stops it (SIGKILL) when the test ends or when the returned function is
// called.
func startProcess(t testing.TB, logf *os.File, bin string, args ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", filepath.Base(bin), err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			_ = cmd.Wait() // killed by the cancel: its exit status says nothing
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitReady polls url until it answers 200, for up to two minutes.
func waitReady(t testing.TB, c *http.Client, url, token string, log func() string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 2 minutes (last: %v); log:\n%s", url, err, log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serviceAccountKeys writes the key pair the API server signs and checks
// service-account tokens with.
func serviceAccountKeys(t testing.TB, dir string) (keyFile, pubFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, pubFile = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, pubFile
}

// CRD manifests scripts/setup.sh fetched from the projects' own releases.
const (
	ApplicationCRD   = "application-crd.yaml"  // Argo CD Applications
	AppProjectCRD    = "appproject-crd.yaml"   // Argo CD AppProjects
	RolloutCRD       = "rollout-crd.yaml"      // Argo Rollouts
	AnalysisRunCRD   = "analysis-run-crd.yaml" // Argo Rollouts AnalysisRuns
	KustomizationCRD = "kustomize.toolkit.fluxcd.io_kustomizations.yaml"
	HelmReleaseCRD   = "helm.toolkit.fluxcd.io_helmreleases.yaml"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ApplyCRDs creates the named custom resource definitions and waits until
// the API server serves each of them.
func (k *Kubernetes) ApplyCRDs(t testing.TB, files ...string) {
	t.Helper()
	dc, err := dynamic.NewForConfig(k.Config(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(toolsCache(), "crds", "current")
	ctx := context.Background()
	for _, f := range files {
		y, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("CRD %s (fetched by scripts/setup.sh): %v", f, err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatalf("CRD %s: %v", f, err)
		}
		crd := &unstructured.Unstructured{}
		if err := crd.UnmarshalJSON(j); err != nil {
			t.Fatalf("CRD %s: %v", f, err)
		}
		if _, err := dc.Resource(crdResource).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", f, err)
		}
		deadline := time.Now().Add(time.Minute)
		for !established(ctx, dc, crd.GetName()) {
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established after a minute", crd.GetName())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func established(ctx context.Context, dc dynamic.Interface, name string) bool {
	crd, err := dc.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
