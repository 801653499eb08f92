package e2e

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/internal/testenv"
)

// TestWitnessCosigning runs evident serve with a real witness (litewitness)
// configured: the witness cosigns the log's checkpoints; evident proof,
// packs, the tlog-tiles checkpoint and evident verify check the witness
// policy. A copy of the log forked from the same genesis and key shows
// another history at the same sizes: the witness refuses to cosign it,
// proving against it under the policy fails, and verify reports the split
// view when given the checkpoint the witness cosigned.
func TestWitnessCosigning(t *testing.T) {
	w := testenv.StartWitness(t, "witness.test/e2e")
	work, forkDir := t.TempDir(), t.TempDir()

	// The first start makes the log key; the witness learns it.
	srv := startServe(t, work, "--listen", "127.0.0.1:0")
	srv.stop()
	w.AddLog(t, srv.Origin, srv.LogKey)
	if out, err := exec.Command("cp", "-a", filepath.Join(work, "evident-data"), forkDir).CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory: %v: %s", err, out)
	}
	config := "witness:\n  quorum: 1\n  witnesses:\n    - name: " + w.Name + "\n      key: " + w.Key + "\n      url: " + w.URL + "\n"
	writeFile(t, filepath.Join(work, "evident.yaml"), config)
	writeFile(t, filepath.Join(forkDir, "evident.yaml"), config)
	writeFile(t, filepath.Join(work, "witness.vkey"), w.Key+"\n")

	srv = startServe(t, work, "--config", "evident.yaml", "--listen", "127.0.0.1:0")
	signer := newSigner(t, filepath.Join(work, "evident-data", "dev-runner.key"))
	postMany(t, srv, signer, "CHG-W", "prod", 30, 4)
	witnessed := waitWitnessed(t, srv, srv.size())
	if !strings.Contains(string(witnessed), "\n— "+w.Name+" ") {
		t.Fatalf("the witnessed checkpoint carries no cosignature of %s:\n%s", w.Name, witnessed)
	}
	metrics := string(srv.get("/metrics", http.StatusOK))
	mustContain(t, "metrics", metrics, "evident_witnessed_checkpoint_size ", "evident_witnessed_checkpoint_age_seconds ", `evident_witness_cosigned_size{witness="`+w.Name+`"}`)
	if tiles := srv.get("/checkpoint", http.StatusOK); !strings.Contains(string(tiles), "\n— "+w.Name+" ") {
		t.Fatalf("the tlog-tiles checkpoint carries no cosignature:\n%s", tiles)
	}

	r := evident(t, work, "proof", "--server", srv.URL, "--index", "7", "--log-key", srv.LogKey, "--witness", "witness.vkey")
	mustContain(t, "proof --witness", r.stderr, "entry 7 is included in the witnessed tree")
	r = evident(t, work, "pack", "--server", srv.URL, "--change", "CHG-W-0007", "--out", "pack.json", "--log-key", srv.LogKey, "--witness", "witness.vkey")
	mustContain(t, "pack --witness", r.stderr, "under the tree cosigned by "+w.Name)
	r = evident(t, work, "verify", "--pack", "pack.json", "--log-key", srv.LogKey, "--witness", "witness.vkey")
	mustContain(t, "verify --pack --witness", r.stdout, "OK: evidence pack of CHG-W-0007", "cosigned by "+w.Name)
	// A policy naming a witness that never cosigned fails, naming why.
	other := testenv.StartWitness(t, "witness.test/absent")
	r = evidentFails(t, work, 1, "verify", "--pack", "pack.json", "--log-key", srv.LogKey, "--witness", w.Key, "--witness", other.Key)
	mustContain(t, "verify --pack with an absent witness", r.stderr, "verify FAILED", "not witnessed", "cosigned by 1", "it needs 2")
	srv.stop()

	r = evident(t, work, "verify", "--data", "evident-data", "--log-key", srv.LogKey, "--witness", "witness.vkey")
	mustContain(t, "verify --data --witness", r.stdout, "OK:", "witnessed: the checkpoint of", "cosigned by "+w.Name)
	saved := filepath.Join(work, "witnessed.note")
	if err := os.WriteFile(saved, witnessed, 0o644); err != nil {
		t.Fatal(err)
	}

	// The fork: same genesis, same log key, other records.
	fork := startServe(t, forkDir, "--config", "evident.yaml", "--listen", "127.0.0.1:0")
	forkSigner := newSigner(t, filepath.Join(forkDir, "evident-data", "dev-runner.key"))
	postMany(t, fork, forkSigner, "CHG-FORK", "prod", 40, 4)
	fork.waitCheckpoint(fork.size())
	time.Sleep(time.Second) // the fork's collector submits, and is refused
	if body := fork.get("/v1/checkpoint/witnessed", http.StatusServiceUnavailable); !strings.Contains(string(body), "no checkpoint has gathered") {
		t.Fatalf("the fork serves a witnessed checkpoint: %s", body)
	}
	mustContain(t, "the fork's log", fork.stderr.String(), "witness did not cosign the checkpoint", "the witness refused the checkpoint")
	r = evidentFails(t, work, 1, "proof", "--server", fork.URL, "--index", "7", "--log-key", srv.LogKey, "--witness", "witness.vkey", "--timeout", "2s")
	mustContain(t, "proof --witness against the fork", r.stderr, "no witnessed checkpoint covers entry 7")
	fork.stop()
	r = evidentFails(t, work, 1, "verify", "--data", filepath.Join(forkDir, "evident-data"), "--log-key", srv.LogKey, "--witness", "witness.vkey")
	mustContain(t, "verify the fork under the policy", r.stderr, "verify FAILED", "no witnessed checkpoint")
	r = evidentFails(t, work, 1, "verify", "--data", filepath.Join(forkDir, "evident-data"), "--log-key", srv.LogKey, "--witness", "witness.vkey", "--witnessed", saved)
	mustContain(t, "verify the fork against the cosigned checkpoint", r.stderr, "verify FAILED", "does not match the checkpoint the witnesses cosigned")
}

// waitWitnessed waits until the server serves a witnessed checkpoint of at
// least size entries.
func waitWitnessed(t *testing.T, s *testServer, size uint64) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := httpClient.Get(s.URL + "/v1/checkpoint/witnessed")
		if err == nil {
			var b strings.Builder
			_, _ = io.Copy(&b, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && checkpointSize(t, []byte(b.String())) >= size {
				return []byte(b.String())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no witnessed checkpoint of %d entries in 30s (%v); server log:\n%s", size, err, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
