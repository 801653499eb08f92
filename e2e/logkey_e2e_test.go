package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"evident.dev/evident/internal/miniotest"
)

// Log key rotation with real serve processes: the log is started with one
// key, restarted with a new log.keyFile and the old one as
// log.previousKeyFile, keeps taking records, restarts with the new key
// alone, and `evident verify` checks the whole log from the genesis key
// pinned before the rotation. A key the log never announced is refused.
func TestLogKeyRotation(t *testing.T) {
	work := t.TempDir()
	for _, name := range []string{"ci", "log-2026", "log-2027", "stray"} {
		writeKeyPair(t, work, name)
	}
	data := filepath.Join(work, "data")
	cfgFile := filepath.Join(work, "evident.yaml")
	config := func(keyFile, previous string) {
		t.Helper()
		prev := ""
		if previous != "" {
			prev = "\n  previousKeyFile: " + previous
		}
		writeFile(t, cfgFile, fmt.Sprintf(`listen: 127.0.0.1:0
log:
  keyFile: %s%s
trust:
  runners:
  - name: ci
    publicKey: ci.pub
    scope: {environments: ["*"]}
`, keyFile, prev))
	}
	ci := newSigner(t, filepath.Join(work, "ci.key"))

	config("log-2026.key", "")
	srv := startServe(t, work, "--config", cfgFile, "--data", data)
	genesisKey := srv.LogKey
	for i := range 3 {
		srv.postRecord(sign(t, ci, planRecord(fmt.Sprintf("CHG-%d", i), "prod", i)), 201)
	}
	saved := filepath.Join(work, "saved-checkpoint")
	writeFile(t, saved, string(srv.waitCheckpoint(srv.size())))
	srv.stop()

	config("log-2027.key", "log-2026.key")
	srv = startServe(t, work, "--config", cfgFile, "--data", data)
	// The key to pin stays the genesis key; the new one follows from it.
	if srv.LogKey != genesisKey {
		t.Fatalf("after the rotation serve prints the log key %s, want the genesis key %s", srv.LogKey, genesisKey)
	}
	if got := strings.TrimSpace(string(srv.get("/v1/log-key", 200))); got != genesisKey {
		t.Fatalf("GET /v1/log-key = %q after the rotation, want the genesis key %q", got, genesisKey)
	}
	rotation := srv.size() - 1
	for i := 3; i < 6; i++ {
		srv.postRecord(sign(t, ci, planRecord(fmt.Sprintf("CHG-%d", i), "prod", i)), 201)
	}
	srv.waitCheckpoint(srv.size())
	var chain struct {
		Genesis, Current string
		Rotations        []struct{ Index uint64 }
	}
	srv.getJSON("/v1/log-keys", &chain)
	newKey := chain.Current
	if chain.Genesis != genesisKey || newKey == genesisKey || len(chain.Rotations) != 1 || chain.Rotations[0].Index != rotation {
		t.Fatalf("GET /v1/log-keys = %+v, want one rotation at entry %d from %s", chain, rotation, genesisKey)
	}
	// Clients pinned to the genesis key follow the rotation: an inclusion
	// proof under a checkpoint the new key signs, the consistency of a
	// checkpoint saved before the rotation, evidence packs.
	out := evident(t, work, "proof", "--server", srv.URL, "--index", "7", "--log-key", genesisKey)
	mustContain(t, "proof", out.stderr, "entry 7 is included", "proof verified")
	mustContain(t, "proof bundle", out.stdout, `"logKeyRotations"`)
	out = evident(t, work, "proof", "--server", srv.URL, "--consistent-with", saved, "--log-key", genesisKey)
	mustContain(t, "consistency", out.stdout, "consistent: the tree of 8 entries extends the saved tree of 4 entries")
	for _, change := range []string{"CHG-1", "CHG-4"} {
		pack := filepath.Join(work, change+".pack")
		evident(t, work, "pack", "--server", srv.URL, "--change", change, "--out", pack, "--log-key", genesisKey)
		out = evident(t, work, "verify", "--pack", pack, "--log-key", genesisKey)
		mustContain(t, "verify --pack "+change, out.stdout, "OK: evidence pack of "+change+": 1 records", "1 signatures re-verified")
	}
	srv.stop()

	wantRotation := fmt.Sprintf("log key rotated at entry %d from %s to %s", rotation, genesisKey, newKey)
	out = evident(t, work, "verify", "--data", data, "--log-key", genesisKey)
	mustContain(t, "verify", out.stdout, "OK: ", wantRotation)
	out = evident(t, work, "verify", "--data", data, "--log-key", genesisKey, "--fast")
	mustContain(t, "verify --fast", out.stdout, "OK: ", wantRotation)
	// The new key alone is not the log's identity: its genesis names the old.
	out = evidentFails(t, work, 1, "verify", "--data", data, "--log-key", newKey)
	mustContain(t, "verify pinned to the new key", out.stderr, "FAILED")

	// Restart with the new key alone: the chain says it is the log's key.
	config("log-2027.key", "")
	srv = startServe(t, work, "--config", cfgFile, "--data", data)
	if srv.LogKey != genesisKey {
		t.Fatalf("restarted after the rotation, serve prints log key %s, want %s", srv.LogKey, genesisKey)
	}
	srv.postRecord(sign(t, ci, planRecord("CHG-6", "prod", 6)), 201)
	export := filepath.Join(work, "log.export")
	evident(t, work, "export", "--server", srv.URL, "--out", export)
	srv.stop()
	out = evident(t, work, "verify", "--export", export, "--log-key", genesisKey)
	mustContain(t, "verify --export", out.stdout, "OK: ", wantRotation)
	// Without a pinned key verify takes the genesis key the export names.
	out = evident(t, work, "verify", "--export", export)
	mustContain(t, "verify --export unpinned", out.stdout, "OK: ", wantRotation)

	// The old key alone, or a key the log never announced, is refused.
	for _, c := range []struct{ keyFile, previous, want string }{
		{"log-2026.key", "", "set log.keyFile to the key the log is signed with now"},
		{"stray.key", "", "not with log.keyFile's"},
		{"stray.key", "log-2026.key", "log.previousKeyFile does not hold it either"},
	} {
		config(c.keyFile, c.previous)
		_, err := tryServe(t, work, "--config", cfgFile, "--data", data)
		if err == nil {
			t.Fatalf("serve started with log.keyFile %s and previousKeyFile %q", c.keyFile, c.previous)
		}
		mustContain(t, "refusal", err.Error(), "the log is signed with the log key "+newKey+fmt.Sprintf(" (named by entry %d)", rotation), c.want)
	}
	out = evident(t, work, "verify", "--data", data, "--log-key", genesisKey)
	mustContain(t, "verify after the refusals", out.stdout, "OK: 9 entries", wantRotation)
}

// A replica following through a real MinIO across a log key rotation: one
// replica follows live while the writer rotates, another starts after it
// and follows the whole log from the genesis key; both serve the writer's
// checkpoint, and a restore pinned to the genesis key continues the log.
func TestLogKeyRotationReplica(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.SecretKey)
	t.Setenv("EVIDENT_S3_ENDPOINT", m.Endpoint)
	url := miniotest.URL("evident", "rotated")
	work := t.TempDir()
	writeKeyPair(t, work, "log-2026")
	writeKeyPair(t, work, "log-2027")
	objectStoreConfig(t, filepath.Join(work, "writer.yaml"), url, m.Endpoint, "log:\n  keyFile: log-2026.key\n")
	w := startServe(t, work, "--config", "writer.yaml", "--data", "w")
	genesisKey := w.LogKey
	signer := newSigner(t, filepath.Join(work, "w", "dev-runner.key"))
	postMany(t, w, signer, "CHG-BEFORE", "prod", 300, 8)
	r1 := startServe(t, work, "--follow", url, "--log-key", genesisKey, "--data", "r1", "--listen", "127.0.0.1:0")
	waitReplica(t, r1, w.size())
	w.stop()

	objectStoreConfig(t, filepath.Join(work, "writer.yaml"), url, m.Endpoint, "log:\n  keyFile: log-2027.key\n  previousKeyFile: log-2026.key\n")
	w = startServe(t, work, "--config", "writer.yaml", "--data", "w")
	postMany(t, w, signer, "CHG-AFTER", "prod", 300, 8)
	size := w.size()
	cp := w.waitCheckpoint(size)
	r2 := startServe(t, work, "--follow", url, "--log-key", genesisKey, "--data", "r2", "--listen", "127.0.0.1:0")
	for _, r := range []*testServer{r1, r2} {
		if got := waitReplica(t, r, size); !bytes.Equal(got, cp) {
			t.Fatalf("replica checkpoint:\n%s\nwriter's:\n%s", got, cp)
		}
		if r.LogKey != genesisKey {
			t.Fatalf("the replica names the log key %s, want the genesis key %s", r.LogKey, genesisKey)
		}
	}
	w.stop()
	r1.stop()
	out := evident(t, work, "verify", "--data", "r1", "--log-key", genesisKey)
	mustContain(t, "verify the replica", out.stdout, "OK: ", "log key rotated at entry 301 from "+genesisKey)

	res := evident(t, work, "restore", "--from", url, "--data", "w3", "--config", "writer.yaml", "--log-key", genesisKey)
	mustContain(t, "restore", res.stdout, fmt.Sprintf("restored %d entries", size))
	for _, f := range []string{"dev-runner.key", "dev-runner.pub"} { // the trust the log records
		b, err := os.ReadFile(filepath.Join(work, "w", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "w3", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w3 := startServe(t, work, "--config", "writer.yaml", "--data", "w3")
	w3.postRecord(sign(t, signer, planRecord("CHG-RESTORED", "prod", 1)), 201)
	w3.stop()
	out = evident(t, work, "verify", "--data", "w3", "--log-key", genesisKey)
	mustContain(t, "verify the restore", out.stdout, fmt.Sprintf("OK: %d entries", size+1), "log key rotated at entry 301")
}

// TestMissingLogKeyRefusedBeforeAnything: a data directory whose log key
// is gone is refused at start, naming the key, before anything is created:
// no new key file is left behind.
func TestMissingLogKeyRefusedBeforeAnything(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--data", data, "--listen", "127.0.0.1:0")
	srv.postRecord(sign(t, newSigner(t, filepath.Join(data, "dev-runner.key")), planRecord("CHG-KEY-1", "prod", 1)), 201)
	srv.stop()
	keyFile := filepath.Join(data, "log.key")
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	_, err := tryServe(t, work, "--data", data, "--listen", "127.0.0.1:0")
	if !errors.Is(err, errExited) {
		t.Fatalf("serve without the log key of a non-empty log: %v", err)
	}
	mustContain(t, "serve without its log key", err.Error(), "log key "+keyFile+" is missing", "put that key back")
	if strings.Contains(err.Error(), "evident serving on") {
		t.Errorf("serve listened before refusing: %v", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a new log key was left behind: %v", err)
	}
}
