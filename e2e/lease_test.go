package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	typedrbacv1 "k8s.io/client-go/kubernetes/typed/rbac/v1"

	"evident.dev/evident/internal/testenv"
)

// Writer failover through a real Kubernetes Lease: two `serve --lease`
// candidates against a real kube-apiserver and a real MinIO, each with only
// the Lease rights docs/scale-out.md names. A leads and acknowledges
// records under load; it is stopped (SIGSTOP) past its lease while requests
// are in flight; B takes the lease, restores from the bucket and
// acknowledges records; A resumes (SIGCONT) and must stop without
// acknowledging anything B's log lacks. Then B is killed (-9) and a fresh
// candidate takes over after the lease expires. Every record either writer
// acknowledged is in the final log, at its acknowledged index, byte for
// byte.
func TestLeaseFailoverOnRealKubernetes(t *testing.T) {
	k := testenv.StartKubernetes(t)
	grantLease(t, k, "evident", "evident-writer-a", "evident-writer-b")
	m, url, work := bucketForWriters(t)
	evident(t, work, "keys", "generate", "--name", "log", "--dir", "secrets", "--origin", "evident.local/log")
	evident(t, work, "keys", "generate", "--name", "dev-runner", "--dir", "secrets")
	objectStoreConfig(t, filepath.Join(work, "writer.yaml"), url, m.Endpoint,
		"durability: object-store\nlog:\n  keyFile: secrets/log.key\n")
	candidate := func(identity, user, data string) *testServer {
		// The development trust key, as a secret store would provide it.
		for _, f := range []string{"dev-runner.key", "dev-runner.pub"} {
			b, err := os.ReadFile(filepath.Join(work, "secrets", f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(work, data, f), string(b))
			os.Chmod(filepath.Join(work, data, f), 0o600)
		}
		cmd := exec.Command(evidentBin, "serve", "--config", "writer.yaml", "--data", data,
			"--lease", "evident/evident-writer", "--kubeconfig", k.Kubeconfig(t, user))
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "POD_NAME="+identity)
		s, err := startServeCmd(t, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := candidate("writer-a", "evident-writer-a", "a")
	if err := a.awaitServing(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	b := candidate("writer-b", "evident-writer-b", "b")
	waitUntil(t, "B to stand by behind A", func() bool { return strings.Contains(b.stderr.String(), "standing by") })
	if strings.Contains(b.stdout.String(), "evident serving on") {
		t.Fatalf("B serves while A holds the lease:\n%s", b.stdout.String())
	}
	signer := newSigner(t, filepath.Join(work, "secrets", "dev-runner.key"))

	acked, posters, lateAcks := stallUnderLoad(t, a, signer, "CHG-LEASE-A", 300)
	stalledAt := time.Now()
	ackedByA := acked.len()

	// B leads once A's lease expires, and resumes A's log from the bucket.
	if err := b.awaitServing(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("B serves %s after A stalled", time.Since(stalledAt).Round(100*time.Millisecond))
	mustContain(t, "B's log", b.stderr.String(), "resumed from object storage")
	for index, body := range postMany(t, b, signer, "CHG-LEASE-B", "prod", 300, 8) {
		acked.add("B", index, body)
	}

	// A resumes, its lease long gone, with requests in flight.
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("A still runs 60 s after it resumed\nstderr:\n%s", a.stderr.String())
	}
	var why string
	for line := range strings.Lines(a.stderr.String()) {
		if strings.Contains(line, "another writer has claimed the bucket") || strings.Contains(line, "lost the writer lease") {
			why = strings.TrimSpace(line)
		}
	}
	if why == "" {
		t.Fatalf("A exited without naming the fence or the lost lease:\n%s", a.stderr.String())
	}
	t.Logf("A stopped: %s", why)
	posters()
	for index, body := range postMany(t, b, signer, "CHG-LEASE-B2", "prod", 100, 8) {
		acked.add("B", index, body)
	}
	size := waitExported(t, m, url, b)

	// B crashes; a fresh candidate (empty disk) takes over when the lease
	// expires, and serves everything either writer acknowledged.
	b.kill9()
	a2 := candidate("writer-a-restarted", "evident-writer-a", "a2")
	if err := a2.awaitServing(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := a2.size(); got != size {
		t.Fatalf("the new leader resumed %d entries, want %d", got, size)
	}
	checkAcked(t, a2, acked.all())
	t.Logf("A acknowledged %d records before it stalled and %d after it resumed; B %d; all %d in the log of %d entries",
		ackedByA, lateAcks.Load(), acked.len()-ackedByA-int(lateAcks.Load()), acked.len(), size)
}

// grantLease creates namespace ns and lets users get, create and update
// Leases in it: the rights docs/scale-out.md lists for writer candidates.
func grantLease(t *testing.T, k *testenv.Kubernetes, ns string, users ...string) {
	t.Helper()
	ctx := context.Background()
	admin := k.Config(t, "admin")
	core, err := typedcorev1.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := typedrbacv1.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "evident-writer", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			Verbs: []string{"get", "create", "update"},
		}},
	}
	if _, err := rbac.Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "evident-writer", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
	}
	for _, u := range users {
		binding.Subjects = append(binding.Subjects, rbacv1.Subject{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: u})
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
