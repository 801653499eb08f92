package e2e

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/internal/rekortest"
)

// TestAnchorAgainstRealRekor runs the serve option, evident anchor and
// evident verify --rekor-key against a real Rekor (rekor-server, Trillian,
// MariaDB on 127.0.0.1).
func TestAnchorAgainstRealRekor(t *testing.T) {
	rekor := rekortest.Start(t)
	work := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(rekor.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(work, "rekor.pub"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	writeFile(t, filepath.Join(work, "evident.yaml"), "anchor:\n  rekor: "+rekor.URL+"\n  rekorKey: rekor.pub\n  interval: 1s\n")

	srv := startServe(t, work, "--config", "evident.yaml", "--listen", "127.0.0.1:0")
	signer := newSigner(t, filepath.Join(work, "evident-data", "dev-runner.key"))
	postMany(t, srv, signer, "CHG-ANCHOR", "prod", 20, 4)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(srv.stderr.String(), "anchored checkpoint in Rekor") {
		if time.Now().After(deadline) {
			t.Fatalf("the server anchored nothing within 60s:\n%s", srv.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.stop()

	r := evident(t, work, "verify", "--data", "evident-data", "--log-key", srv.LogKey, "--rekor-key", "rekor.pub")
	mustContain(t, "verify --rekor-key", r.stdout, "OK:", "checkpoint anchors verified against Rekor")

	r = evident(t, work, "anchor", "--config", "evident.yaml")
	mustContain(t, "evident anchor", r.stdout, "anchored checkpoint", "as Rekor entry")
	r = evident(t, work, "anchor", "--config", "evident.yaml", "-o", "json")
	var anchored struct {
		CheckpointSize uint64    `json:"checkpointSize"`
		Root           string    `json:"root"`
		RekorLogIndex  int64     `json:"rekorLogIndex"`
		IntegratedTime time.Time `json:"integratedTime"`
		Entry          uint64    `json:"entry"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &anchored); err != nil || anchored.CheckpointSize == 0 || anchored.Root == "" ||
		anchored.IntegratedTime.IsZero() || anchored.Entry == 0 {
		t.Fatalf("anchor -o json: %+v %v\n%s", anchored, err, r.stdout)
	}

	r = evident(t, work, "verify", "--data", "evident-data", "--log-key", srv.LogKey)
	mustContain(t, "verify without --rekor-key", r.stdout, "OK:", "not checked against Rekor (give --rekor-key)")

	// A Rekor key that is not the one the anchors name fails the audit.
	other := filepath.Join(work, "evident-data", "dev-runner.pub")
	r = evidentFails(t, work, 1, "verify", "--data", "evident-data", "--log-key", srv.LogKey, "--rekor-key", other)
	mustContain(t, "verify with another Rekor key", r.stderr, "verify FAILED", "bad anchor", "not the ID of a trusted Rekor key")

	// Anchoring needs the pinned key: a running server refuses to start without it.
	writeFile(t, filepath.Join(work, "bad.yaml"), "anchor:\n  rekor: "+rekor.URL+"\n")
	if _, err := tryServe(t, work, "--config", "bad.yaml", "--listen", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "rekorKey") {
		t.Errorf("serve with anchor.rekor but no rekorKey: %v", err)
	}
}
