package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/replica"
)

// objectStoreConfig writes a serve configuration exporting to the bucket.
func objectStoreConfig(t *testing.T, path, url, endpoint, extra string) {
	t.Helper()
	writeFile(t, path, fmt.Sprintf("listen: 127.0.0.1:0\ncheckpointInterval: 200ms\nobjectStore:\n  url: %s\n  endpoint: %s\n%s", url, endpoint, extra))
}

// A writer exports to a real MinIO and two `serve --follow` replicas answer
// every read endpoint byte for byte as the writer does and refuse writes.
// Then the writer's disk is lost: `evident restore` rebuilds its data
// directory from the tiles, a new writer continues the same log, and the
// replicas follow it across the change with consistent checkpoints.
func TestReplicasAndRestore(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.SecretKey)
	url := miniotest.URL("evident", "prod")
	// The servers of one log share a cursor key (from a secret store).
	t.Setenv("EVIDENT_CURSOR_KEY", "a secret the writer and its replicas share")
	work := t.TempDir()
	objectStoreConfig(t, filepath.Join(work, "writer.yaml"), url, m.Endpoint, "")
	w := startServe(t, work, "--config", "writer.yaml", "--data", "w")
	signer := newSigner(t, filepath.Join(work, "w", "dev-runner.key"))
	postMany(t, w, signer, "CHG-SCALE", "prod", 600, 8)

	t.Setenv("EVIDENT_S3_ENDPOINT", m.Endpoint)
	r1 := startServe(t, work, "--follow", url, "--log-key", w.LogKey, "--data", "r1", "--listen", "127.0.0.1:0")
	r2 := startServe(t, work, "--follow", url, "--log-key", w.LogKey, "--data", "r2", "--listen", "127.0.0.1:0")
	if r1.Origin != w.Origin || r1.LogKey != w.LogKey {
		t.Fatalf("replica serves %s %s, the writer %s %s", r1.Origin, r1.LogKey, w.Origin, w.LogKey)
	}
	size := w.size()
	cp := w.waitCheckpoint(size)
	for _, r := range []*testServer{r1, r2} {
		if got := waitReplica(t, r, size); !bytes.Equal(got, cp) {
			t.Fatalf("replica checkpoint:\n%s\nwriter's:\n%s", got, cp)
		}
		sameAnswers(t, w, r, size, true)
		status, answer, err := post(httpClient, r.URL, sign(t, signer, planRecord("CHG-REPLICA", "prod", 0)))
		if err != nil || status != http.StatusForbidden || !strings.Contains(string(answer), "read_replica") {
			t.Fatalf("POST to a replica: %d %v %s", status, err, answer)
		}
	}

	// Ready: the replicas have synced and their projections caught up.
	for _, s := range []*testServer{w, r1, r2} {
		if got := string(s.get("/readyz", http.StatusOK)); got != "ready\n" {
			t.Errorf("%s/readyz: %q", s.URL, got)
		}
	}
	// A replica pinned to another key refuses the bucket's checkpoints: it
	// is alive, but not ready, and says why.
	_, otherKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := checkpoint.NewSigner(w.Origin, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	r3 := startServe(t, work, "--follow", url, "--log-key", other.VerifierKey(), "--data", "r3", "--listen", "127.0.0.1:0")
	r3.get("/healthz", http.StatusOK)
	if got := string(r3.get("/readyz", http.StatusServiceUnavailable)); !strings.Contains(got, "not synced the bucket yet") {
		t.Errorf("the refusing replica's /readyz: %q", got)
	}
	r3.stop()

	// Behind a load balancer, the next page is asked of another server:
	// a cursor from the writer pages on a replica as on the writer.
	page := func(s *testServer, after string) (string, string) {
		q := `{ changes(filter: {environment: "prod"}, first: 7` + after + `) { nodes { id } pageInfo { endCursor } } }`
		status, body := graphqlPost(t, s.URL, "", q)
		var out struct {
			Data struct {
				Changes struct {
					Nodes    []struct{ ID string }
					PageInfo struct{ EndCursor string }
				}
			}
		}
		if err := json.Unmarshal([]byte(body), &out); status != http.StatusOK || err != nil || len(out.Data.Changes.Nodes) == 0 {
			t.Fatalf("GraphQL page on %s: %d %v %s", s.URL, status, err, body)
		}
		ids, _ := json.Marshal(out.Data.Changes.Nodes)
		return string(ids), out.Data.Changes.PageInfo.EndCursor
	}
	_, cursor := page(w, "")
	onWriter, _ := page(w, fmt.Sprintf(", after: %q", cursor))
	onReplica, _ := page(r1, fmt.Sprintf(", after: %q", cursor))
	if onWriter != onReplica {
		t.Fatalf("the second page differs on the replica:\n%s\n%s", onReplica, onWriter)
	}

	// The writer's disk is lost.
	w.kill9()
	writerData := filepath.Join(work, "w")
	newData := filepath.Join(work, "w2")
	if err := os.MkdirAll(newData, 0o700); err != nil {
		t.Fatal(err)
	}
	copyKeys(t, writerData, newData) // from the secret store
	if err := os.RemoveAll(writerData); err != nil {
		t.Fatal(err)
	}
	res := evident(t, work, "restore", "--from", url, "--data", "w2", "--config", "writer.yaml")
	mustContain(t, "restore", res.stdout, fmt.Sprintf("restored %d entries", size))
	w2 := startServe(t, work, "--config", "writer.yaml", "--data", "w2")
	if w2.LogKey != w.LogKey || w2.Origin != w.Origin {
		t.Fatal("the restored writer serves another log")
	}
	postMany(t, w2, signer, "CHG-AFTER", "prod", 100, 8)
	size2 := w2.size()
	cp2 := w2.waitCheckpoint(size2)
	for _, r := range []*testServer{r1, r2} {
		if got := waitReplica(t, r, size2); !bytes.Equal(got, cp2) {
			t.Fatalf("replica checkpoint after the restore:\n%s\nwriter's:\n%s", got, cp2)
		}
		sameAnswers(t, w2, r, size2, false) // a restore keeps only the latest checkpoint
	}
	// The new checkpoint extends the lost writer's: an auditor holding the
	// old one checks a consistency proof from a replica.
	c := client.New(r1.URL)
	proof, err := c.ConsistencyProof(context.Background(), checkpointSize(t, cp), checkpointSize(t, cp2))
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(toHashes(proof), int64(checkpointSize(t, cp2)), checkpointRoot(t, cp2), int64(checkpointSize(t, cp)), checkpointRoot(t, cp)); err != nil {
		t.Fatalf("the restored writer's log does not extend the lost one: %v", err)
	}
	// A replica's data directory verifies offline like the writer's.
	r1.stop()
	evident(t, work, "verify", "--data", "r1", "--log-key", w.LogKey)
}

// sameAnswers compares the read endpoints of two servers over a log of size
// entries; with sameCheckpoints, every checkpoint b stores must be one a
// stores.
func sameAnswers(t *testing.T, a, b *testServer, size uint64, sameCheckpoints bool) {
	t.Helper()
	paths := []string{
		"/v1/log-key",
		"/v1/entries?change=CHG-SCALE-0007",
		"/v1/entries?environment=prod&limit=1000",
		"/v1/entries?kind=plan.created&limit=1000",
		fmt.Sprintf("/v1/proofs/consistency?from=1&to=%d", size),
	}
	for i := uint64(0); i < size; i += 37 {
		paths = append(paths, fmt.Sprintf("/v1/entries/%d", i), fmt.Sprintf("/v1/proofs/inclusion?index=%d&size=%d", i, size))
	}
	// The log as tlog-tiles clients read it: hash tiles and entry bundles
	// of the tree of size entries.
	for n := uint64(0); n*256 < size; n++ {
		w := int(min(256, size-n*256))
		paths = append(paths, "/"+replica.TilePath(0, n, w), "/"+replica.EntriesPath(n, w))
	}
	if size >= 256 {
		paths = append(paths, "/"+replica.TilePath(1, 0, int(size/256)))
	}
	for _, p := range paths {
		if x, y := a.get(p, http.StatusOK), b.get(p, http.StatusOK); !bytes.Equal(x, y) {
			t.Fatalf("GET %s differs:\n%s\n%s", p, x, y)
		}
	}
	if sameCheckpoints {
		for _, s := range []*testServer{a, b} {
			if x, y := s.get("/checkpoint", http.StatusOK), s.get("/v1/checkpoint", http.StatusOK); !bytes.Equal(x, y) {
				t.Fatalf("%s: GET /checkpoint and /v1/checkpoint differ:\n%s\n%s", s.URL, x, y)
			}
		}
	}
	// GraphQL, built on each server's own ledger, answers alike.
	q := `{ changes(filter: {environment: "prod"}, first: 50) { nodes { id target { stack } } pageInfo { hasNextPage } } }`
	sa, ga := graphqlPost(t, a.URL, "", q)
	sb, gb := graphqlPost(t, b.URL, "", q)
	if sa != http.StatusOK || sb != http.StatusOK || ga != gb || !strings.Contains(ga, "CHG-SCALE-") {
		t.Fatalf("GraphQL answers differ:\n%d %s\n%d %s", sa, ga, sb, gb)
	}
	// Metrics computed from the ledger agree once both projections have
	// tailed the log (they do so in the background).
	deadline := time.Now().Add(20 * time.Second)
	for {
		ma := ledgerMetrics(a.get("/metrics", http.StatusOK))
		mb := ledgerMetrics(b.get("/metrics", http.StatusOK))
		if ma == mb && strings.Contains(ma, fmt.Sprintf("evident_projection_entries %d", size)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger metrics differ:\n%s\n---\n%s", ma, mb)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Exports hold the same leaves; a replica stores the checkpoints it
	// saw, which are some of the writer's, the latest included.
	leavesA, cpsA := exportLines(t, a.get("/v1/export", http.StatusOK))
	leavesB, cpsB := exportLines(t, b.get("/v1/export", http.StatusOK))
	if leavesA != leavesB {
		t.Fatal("exports hold different leaves")
	}
	for cp := range cpsB {
		if sameCheckpoints && !cpsA[cp] {
			t.Fatalf("the replica's export holds a checkpoint the writer never signed:\n%s", cp)
		}
	}
}

// exportLines splits an export into its leaf lines and its checkpoints.
func exportLines(t *testing.T, export []byte) (string, map[string]bool) {
	t.Helper()
	var leaves strings.Builder
	cps := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSpace(string(export)), "\n") {
		switch {
		case i == 0:
		case strings.HasPrefix(line, `{"checkpoint":`):
			cps[line] = true
		default:
			leaves.WriteString(line)
		}
	}
	return leaves.String(), cps
}

func toHashes(p [][]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(p))
	for i := range p {
		copy(out[i][:], p[i])
	}
	return out
}

// rootOf reads the root hash line of a checkpoint (signature checked elsewhere).
func checkpointRoot(t *testing.T, cp []byte) tlog.Hash {
	t.Helper()
	lines := strings.Split(string(cp), "\n")
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		t.Fatalf("checkpoint root %q: %v", lines[2], err)
	}
	return h
}

// waitReplica waits until a replica serves a checkpoint of size entries (it
// has none before its first sync).
func waitReplica(t *testing.T, r *testServer, size uint64) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := httpClient.Get(r.URL + "/v1/checkpoint")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && checkpointSize(t, body) >= size {
				return body
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica %s has no checkpoint of %d entries after 30s\nstderr:\n%s", r.URL, size, r.stderr.String())
	return nil
}

// Scale-out settings that cannot work are refused at start with an error
// naming the setting, before anything is written.
func TestScaleOutRefusals(t *testing.T) {
	work := t.TempDir()
	writeFile(t, filepath.Join(work, "plain.yaml"), "listen: 127.0.0.1:0\n")
	writeFile(t, filepath.Join(work, "bad-durability.yaml"), "listen: 127.0.0.1:0\ndurability: s3\n")
	writeFile(t, filepath.Join(work, "durable-nowhere.yaml"), "listen: 127.0.0.1:0\ndurability: object-store\n")
	writeFile(t, filepath.Join(work, "big-records.yaml"), "listen: 127.0.0.1:0\nobjectStore:\n  url: s3://b/p\n  endpoint: 127.0.0.1:1\nlimits:\n  maxBodyBytes: 1048576\n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", "plain.yaml", "--lease", "writer"}, "NAMESPACE/NAME"},
		{[]string{"serve", "--config", "plain.yaml", "--lease", "ns/writer"}, "needs objectStore.url"},
		{[]string{"serve", "--config", "plain.yaml", "--follow", "s3://b/p"}, "verifier key"},
		{[]string{"serve", "--config", "bad-durability.yaml", "--data", "d1"}, `durability "s3"`},
		{[]string{"serve", "--config", "durable-nowhere.yaml", "--data", "d2"}, "needs objectStore.url"},
		{[]string{"serve", "--config", "big-records.yaml", "--data", "d3"}, "limits.maxBodyBytes"},
		{[]string{"restore", "--data", "d4"}, "--from"},
		{[]string{"restore", "--from", "s3://b/p", "--data", "d5"}, "--log-key"},
		{[]string{"restore", "--from", "http://b/p", "--data", "d6", "--log-key", "evident.local/log+c75eb047+Ae33srt/PYfEjQR9Pl3/1OBgAoMxqNKGSG9pKb402dbx"}, "s3://bucket"},
	} {
		r := evidentFails(t, work, -1, c.args...)
		mustContain(t, strings.Join(c.args, " "), r.stderr, c.want)
	}
}

// ledgerMetrics are the metric lines computed from the ledger's entries.
func ledgerMetrics(exposition []byte) string {
	var out []string
	for _, line := range strings.Split(string(exposition), "\n") {
		for _, name := range []string{"evident_projection_entries", "evident_log_entries", "evident_plans_total", "evident_checkpoint_size"} {
			if strings.HasPrefix(line, name) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "\n")
}
