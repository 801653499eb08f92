package e2e

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/internal/rekortilestest"
)

// TestAnchorAgainstRealRekorV2 runs the serve option with rekorVersion 2,
// evident anchor and evident verify --rekor-key against a real Rekor v2
// (rekor-tiles on 127.0.0.1), with its key pinned as a PEM block naming
// its origin.
func TestAnchorAgainstRealRekorV2(t *testing.T) {
	rekor := rekortilestest.Start(t)
	work := t.TempDir()
	writeFile(t, filepath.Join(work, "rekor2.pub"), string(rekor.PinnedKeyPEM()))
	writeFile(t, filepath.Join(work, "evident.yaml"),
		"anchor:\n  rekor: "+rekor.URL+"\n  rekorVersion: 2\n  rekorKey: rekor2.pub\n  interval: 1s\n")

	srv := startServe(t, work, "--config", "evident.yaml", "--listen", "127.0.0.1:0")
	signer := newSigner(t, filepath.Join(work, "evident-data", "dev-runner.key"))
	postMany(t, srv, signer, "CHG-ANCHOR2", "prod", 20, 4)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(srv.stderr.String(), "anchored checkpoint in Rekor") {
		if time.Now().After(deadline) {
			t.Fatalf("the server anchored nothing within 60s:\n%s", srv.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustContain(t, "the server's log", srv.stderr.String(), "rekorVersion=2")
	srv.stop()

	r := evident(t, work, "verify", "--data", "evident-data", "--log-key", srv.LogKey, "--rekor-key", "rekor2.pub")
	mustContain(t, "verify --rekor-key", r.stdout, "OK:", "checkpoint anchors verified against Rekor")

	r = evident(t, work, "anchor", "--config", "evident.yaml")
	mustContain(t, "evident anchor", r.stdout, "anchored checkpoint", "as Rekor v2 entry")
	r = evident(t, work, "anchor", "--data", "evident-data", "--rekor", rekor.URL, "--rekor-version", "2", "--rekor-key", "rekor2.pub", "-o", "json")
	var anchored map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &anchored); err != nil || anchored["rekorVersion"] != 2.0 ||
		anchored["checkpointSize"] == nil || anchored["integratedTime"] != nil || anchored["entry"] == nil {
		t.Fatalf("anchor -o json: %v %v\n%s", anchored, err, r.stdout)
	}

	r = evident(t, work, "verify", "--data", "evident-data", "--log-key", srv.LogKey, "--rekor-key", "rekor2.pub")
	mustContain(t, "verify after evident anchor", r.stdout, "OK:", "checkpoint anchors verified against Rekor")
	r = evident(t, work, "verify", "--data", "evident-data", "--log-key", srv.LogKey)
	mustContain(t, "verify without --rekor-key", r.stdout, "OK:", "not checked against Rekor (give --rekor-key)")

	// The key alone, without the origin of Rekor's checkpoints, pins no
	// Rekor v2 log; the right key under another origin is another log.
	der, err := x509.MarshalPKIXPublicKey(rekor.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(work, "bare.pub"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	r = evidentFails(t, work, 1, "verify", "--data", "evident-data", "--log-key", srv.LogKey, "--rekor-key", "bare.pub")
	mustContain(t, "verify with the key pinned without its origin", r.stderr, "verify FAILED", "bad anchor", "no pinned Rekor v2 key")
	writeFile(t, filepath.Join(work, "other.pub"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY",
		Headers: map[string]string{"Origin": "rekor.elsewhere"}, Bytes: der})))
	r = evidentFails(t, work, 1, "verify", "--data", "evident-data", "--log-key", srv.LogKey, "--rekor-key", "other.pub")
	mustContain(t, "verify with the key pinned for another origin", r.stderr, "verify FAILED", "not the ID of a pinned Rekor v2 key")

	// Anchoring in Rekor v2 needs its key with the origin: a running
	// server refuses to start with the bare key.
	writeFile(t, filepath.Join(work, "bad.yaml"), "anchor:\n  rekor: "+rekor.URL+"\n  rekorVersion: 2\n  rekorKey: bare.pub\n")
	if _, err := tryServe(t, work, "--config", "bad.yaml", "--listen", "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "Origin header") {
		t.Errorf("serve with rekorVersion 2 and a key without its origin: %v", err)
	}
}
