package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"evident.dev/evident/client"
	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/replica"
)

// Two writer processes, one bucket, durability object-store: writer A is
// stopped (SIGSTOP) under load; B restores from the bucket and acknowledges
// records; A resumes (SIGCONT) with requests still in flight. A must stop
// with an error naming the other writer, without acknowledging anything
// more or touching B's checkpoint, and a restore afterwards holds every
// record either writer acknowledged, at its acknowledged index, byte for
// byte.
func TestStalledWriterStopsAtItsNextWrite(t *testing.T) {
	m, url, work := bucketForWriters(t)
	objectStoreConfig(t, filepath.Join(work, "writer.yaml"), url, m.Endpoint, "durability: object-store\n")
	a := startServe(t, work, "--config", "writer.yaml", "--data", "a")
	signer := newSigner(t, filepath.Join(work, "a", "dev-runner.key"))

	// Load on A; acknowledgements are collected until the posters end. An
	// acknowledgement A gave after B took over would either reuse an index
	// B acknowledged or be missing from the final restore.
	acked, posters, _ := stallUnderLoad(t, a, signer, "CHG-A", 300)
	ackedBeforeStop := acked.len()

	// B takes over: the log key comes from the secret store, not A's disk.
	copyKeys(t, filepath.Join(work, "a"), filepath.Join(work, "b"))
	evident(t, work, "restore", "--from", url, "--data", "b", "--config", "writer.yaml")
	b := startServe(t, work, "--config", "writer.yaml", "--data", "b")
	for index, body := range postMany(t, b, signer, "CHG-B", "prod", 300, 8) {
		acked.add("B", index, body)
	}
	b.waitCheckpoint(b.size())

	// A resumes.
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("A still runs 60 s after it resumed\nstderr:\n%s", a.stderr.String())
	}
	mustContain(t, "A's error", a.stderr.String(), "another writer has claimed the bucket")
	posters()
	// B keeps writing, and the bucket's checkpoint is B's.
	for index, body := range postMany(t, b, signer, "CHG-B2", "prod", 100, 8) {
		acked.add("B", index, body)
	}
	size := waitExported(t, m, url, b)

	// Everything acknowledged by either writer survives B's loss too.
	b.kill9()
	copyKeys(t, filepath.Join(work, "b"), filepath.Join(work, "c"))
	res := evident(t, work, "restore", "--from", url, "--data", "c", "--config", "writer.yaml")
	mustContain(t, "restore", res.stdout, fmt.Sprintf("restored %d entries", size))
	srv := startServe(t, work, "--config", "writer.yaml", "--data", "c")
	checkAcked(t, srv, acked.all())
	t.Logf("A acknowledged %d records before it was stopped; B %d; all %d in the restored log of %d entries",
		ackedBeforeStop, acked.len()-ackedBeforeStop, acked.len(), size)
}

// waitUntil polls cond for up to 60 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A writer refuses a bucket it must not write before it listens: it never
// prints its address, and exits naming the reason.
func TestWriterRefusesBucketBeforeListening(t *testing.T) {
	m, url, work := bucketForWriters(t)
	objectStoreConfig(t, filepath.Join(work, "writer.yaml"), url, m.Endpoint, "")
	w := startServe(t, work, "--config", "writer.yaml", "--data", "w")
	signer := newSigner(t, filepath.Join(work, "w", "dev-runner.key"))
	postMany(t, w, signer, "CHG-FIRST", "prod", 50, 4)
	waitExported(t, m, url, w)

	// The same log, but an empty data directory: the bucket is ahead.
	key, err := os.ReadFile(filepath.Join(work, "w", "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(work, "short", "log.key"), string(key))
	os.Chmod(filepath.Join(work, "short", "log.key"), 0o600)
	for _, c := range []struct{ data, want string }{
		{"short", "restore from the bucket first"},
		{"other", "the bucket holds a different log"}, // a new log key
	} {
		_, err := tryServe(t, work, "--config", "writer.yaml", "--data", c.data)
		if !errors.Is(err, errExited) {
			t.Fatalf("serve on %s: %v, want an exit before listening", c.data, err)
		}
		mustContain(t, "serve on "+c.data, err.Error(), c.want)
		if strings.Contains(err.Error(), "evident serving on") {
			t.Fatalf("serve on %s listened before it refused the bucket:\n%v", c.data, err)
		}
	}
	// The first writer still holds the bucket.
	postMany(t, w, signer, "CHG-SECOND", "prod", 10, 2)
}

// Disaster recovery in a loop: a writer in durability object-store mode is
// killed (-9) at the moment an acknowledgement arrives, its disk is lost,
// and a new writer restored from the bucket carries on, ten times. Every
// record acknowledged in any cycle is in the final log at its acknowledged
// index, byte for byte.
func TestObjectStoreKill9Restore(t *testing.T) {
	cycles := 10
	if testing.Short() {
		cycles = 4
	}
	m, url, work := bucketForWriters(t)
	objectStoreConfig(t, filepath.Join(work, "writer.yaml"), url, m.Endpoint, "durability: object-store\n")
	srv := startServe(t, work, "--config", "writer.yaml", "--data", "d0")
	signer := newSigner(t, filepath.Join(work, "d0", "dev-runner.key"))
	all := map[uint64][]byte{}
	for cycle := range cycles {
		acked, _ := hammer(t, srv, signer, fmt.Sprintf("CHG-DR-%d", cycle), 8, 150*time.Millisecond, 20, true, func() {
			_ = srv.cmd.Process.Kill()
		})
		srv.kill9()
		for i, env := range acked {
			if _, dup := all[i]; dup {
				t.Fatalf("cycle %d: index %d acknowledged twice", cycle, i)
			}
			all[i] = env
		}
		data := fmt.Sprintf("d%d", cycle+1) // the old disk is gone
		copyKeys(t, filepath.Join(work, "d0"), filepath.Join(work, data))
		res := evident(t, work, "restore", "--from", url, "--data", data, "--config", "writer.yaml", "-o", "json")
		var restored struct{ Entries uint64 }
		if err := json.Unmarshal([]byte(res.stdout), &restored); err != nil {
			t.Fatalf("restore -o json: %v\n%s", err, res.stdout)
		}
		for i := range all {
			if i >= restored.Entries {
				t.Fatalf("cycle %d: restored %d entries, but entry %d was acknowledged", cycle, restored.Entries, i)
			}
		}
		srv = startServe(t, work, "--config", "writer.yaml", "--data", data)
	}
	checkAcked(t, srv, all)
	t.Logf("%d kills and restores: %d records acknowledged, all in the log of %d entries", cycles, len(all), srv.size())
}

// bucketForWriters starts MinIO with a bucket for the writers of one log,
// puts its credentials in the environment the servers inherit, and returns
// the log's object-store URL and a working directory.
func bucketForWriters(t *testing.T) (*miniotest.Server, string, string) {
	t.Helper()
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.SecretKey)
	return m, miniotest.URL("evident", "prod"), t.TempDir()
}

// copyKeys copies a writer's keys (the log key and the development runner
// key) to another data directory, as a secret store would provide them.
func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range []string{"log.key", "dev-runner.key", "dev-runner.pub"} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(to, f), string(b))
		if err := os.Chmod(filepath.Join(to, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// ackLog collects acknowledged records by index, from any writer; an index
// acknowledged twice fails the test.
type ackLog struct {
	t     *testing.T
	mu    sync.Mutex
	acked map[uint64][]byte
}

func newAckLog(t *testing.T) *ackLog { return &ackLog{t: t, acked: map[uint64][]byte{}} }

func (a *ackLog) add(who string, index uint64, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.acked[index]; dup {
		a.t.Errorf("%s acknowledged entry %d, which was acknowledged before", who, index)
	}
	a.acked[index] = body
}

func (a *ackLog) len() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.acked) }

func (a *ackLog) all() map[uint64][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.acked)
}

// stallUnderLoad posts to writer w until it has acknowledged n records,
// then stops it (SIGSTOP, undone when the test ends) with requests in
// flight, as a paused process or a partitioned node would be. posters
// waits for the posters, which end once w answers again or their requests
// fail; late counts what w acknowledged after it was stopped.
func stallUnderLoad(t *testing.T, w *testServer, signer *client.Signer, prefix string, n int) (acks *ackLog, posters func(), late *atomic.Int64) {
	t.Helper()
	acks = newAckLog(t)
	var stopped atomic.Bool
	posters, late = postUntilStopped(t, w, signer, prefix, acks, &stopped)
	waitUntil(t, fmt.Sprintf("%d acknowledged records", n), func() bool { return acks.len() >= n })
	stopped.Store(true)
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.cmd.Process.Signal(syscall.SIGCONT) })
	return acks, posters, late
}

// postUntilStopped runs eight posters of distinct signed records against
// srv, collecting acknowledgements in acks. Once stopped is set, a failed
// request ends a poster quietly (before it, it fails the test), and so
// does its next acknowledgement, which is counted as late. wait waits for
// the posters.
func postUntilStopped(t *testing.T, srv *testServer, signer *client.Signer, prefix string, acks *ackLog, stopped *atomic.Bool) (wait func(), late *atomic.Int64) {
	late = &atomic.Int64{}
	c := &http.Client{Timeout: 3 * time.Minute}
	var posters sync.WaitGroup
	for g := range 8 {
		posters.Go(func() {
			for i := 0; ; i++ {
				body := sign(t, signer, planRecord(fmt.Sprintf("%s-%d-%d", prefix, g, i), "prod", i))
				status, answer, err := post(c, srv.URL, body)
				if err != nil || status != http.StatusCreated {
					if !stopped.Load() {
						t.Errorf("POST before the writer was stopped: %d %v %s", status, err, answer)
					}
					return
				}
				var rc receipt
				if err := json.Unmarshal(answer, &rc); err != nil {
					t.Errorf("receipt: %v", err)
					return
				}
				acks.add(prefix, rc.Index, body)
				if stopped.Load() {
					late.Add(1)
					return
				}
			}
		})
	}
	return posters.Wait, late
}

// waitExported waits until srv's signed checkpoint covers every entry it
// holds and the bucket publishes that checkpoint, and returns its size.
func waitExported(t *testing.T, m *miniotest.Server, url string, srv *testServer) uint64 {
	t.Helper()
	size := srv.size()
	cp := srv.waitCheckpoint(size)
	store, err := replica.OpenS3(context.Background(), replica.S3Config{URL: url, Endpoint: m.Endpoint, AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the bucket to publish the writer's latest checkpoint", func() bool {
		got, err := store.Get(context.Background(), replica.CheckpointPath)
		return err == nil && string(got) == string(cp)
	})
	return size
}
