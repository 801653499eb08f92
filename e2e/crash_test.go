package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"evident.dev/evident/client"
)

// hammer posts distinct signed records from posters goroutines for loadFor
// (and until minAcked are acknowledged), then calls stop, which stops the
// server, while they go on posting until their requests fail. With onAck,
// stop is called the moment the next acknowledgment arrives: the worst moment
// for a server that acknowledges before its write is durable. It returns
// every acknowledged (201) record by index, and how many requests were cut
// off mid-flight (not refused at connect).
func hammer(t *testing.T, srv *testServer, signer *client.Signer, prefix string, posters int, loadFor time.Duration, minAcked int, onAck bool, stop func()) (map[uint64][]byte, int) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: posters}}
	defer c.CloseIdleConnections()
	var stopping, armed atomic.Bool
	var once sync.Once
	stopped := make(chan struct{})
	doStop := func() {
		once.Do(func() {
			stopping.Store(true)
			stop()
			close(stopped)
		})
	}
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	var cutOff atomic.Int64
	var wg sync.WaitGroup
	for g := range posters {
		wg.Go(func() {
			for i := 0; ; i++ {
				env, err := signer.Sign(planRecord(fmt.Sprintf("%s-%d-%d", prefix, g, i), "prod", i))
				if err != nil {
					t.Errorf("sign: %v", err)
					return
				}
				status, body, err := post(c, srv.URL, env)
				if err != nil {
					if !stopping.Load() {
						t.Errorf("POST before the server was stopped: %v", err)
					} else if !errors.Is(err, syscall.ECONNREFUSED) {
						cutOff.Add(1)
					}
					return
				}
				switch status {
				case http.StatusCreated:
					var rc receipt
					if err := json.Unmarshal(body, &rc); err != nil || rc.Duplicate {
						t.Errorf("201 with receipt %s (%v)", body, err)
						return
					}
					mu.Lock()
					if prev, dup := acked[rc.Index]; dup {
						t.Errorf("index %d acknowledged for two records:\n%s\n%s", rc.Index, prev, env)
					}
					acked[rc.Index] = env
					mu.Unlock()
					if armed.Load() {
						doStop()
					}
				case http.StatusServiceUnavailable:
					// Overloaded or shutting down: not acknowledged.
					if stopping.Load() {
						return
					}
					// Real time: back off as a refused client would, rather than spin on a busy server.
					time.Sleep(20 * time.Millisecond)
				default:
					t.Errorf("POST: status %d: %s", status, body)
					return
				}
			}
		})
	}
	defer wg.Wait()
	time.Sleep(loadFor) // real time: the stop comes after loadFor of sustained load
	// A slow machine gets longer: at least minAcked acknowledgments first.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= minAcked || time.Now().After(deadline) {
			break
		}
	}
	if onAck {
		armed.Store(true)
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Error("no acknowledgment within 30s")
			doStop()
		}
	} else {
		doStop()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return acked, int(cutOff.Load())
}

// checkAcked requires every acknowledged index to hold exactly the
// acknowledged record.
func checkAcked(t *testing.T, srv *testServer, acked map[uint64][]byte) {
	t.Helper()
	indexes := make(chan uint64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	for range 8 {
		wg.Go(func() {
			for i := range indexes {
				resp, err := httpClient.Get(fmt.Sprintf("%s/v1/entries/%d", srv.URL, i))
				var e entry
				if err == nil {
					err = json.NewDecoder(resp.Body).Decode(&e)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				var problem string
				switch {
				case err != nil:
					problem = fmt.Sprintf("acknowledged entry %d is lost: %v", i, err)
				case e.Index != i:
					problem = fmt.Sprintf("GET /v1/entries/%d answered entry %d", i, e.Index)
				case payloadField(e.Envelope) != payloadField(acked[i]):
					problem = fmt.Sprintf("entry %d holds another record than the one acknowledged at that index", i)
				case !bytes.Equal(e.Envelope, acked[i]):
					problem = fmt.Sprintf("entry %d holds the acknowledged record in another envelope", i)
				}
				if problem != "" {
					mu.Lock()
					problems = append(problems, problem)
					mu.Unlock()
				}
			}
		})
	}
	for i := range acked {
		indexes <- i
	}
	close(indexes)
	wg.Wait()
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Fatalf("%d of %d acknowledged records are not in the log as acknowledged:\n%s",
			len(problems), len(acked), strings.Join(problems[:min(len(problems), 20)], "\n"))
	}
}

// TestKill9UnderLoad is the durability promise: a record is acknowledged
// only once it is durable, so a server killed with SIGKILL in the middle of
// concurrent writes, and restarted, holds every acknowledged record at its
// acknowledged index. Five crash/restart cycles on one data directory (two
// with -short), then a clean stop and a full offline verification.
//
// (SIGKILL leaves the page cache intact, so this catches acknowledgments
// sent before the write, lost batches, and recovery that cuts or reorders
// acknowledged entries; a missing fsync needs a power cut to show.)
func TestKill9UnderLoad(t *testing.T) {
	cycles, loadFor := 5, 1500*time.Millisecond
	if testing.Short() {
		cycles, loadFor = 2, time.Second
	}
	const posters = 8
	work := t.TempDir()
	data := filepath.Join(work, "data")
	args := []string{"--listen", "127.0.0.1:0", "--data", data}
	srv := startServe(t, work, args...)
	logKey := srv.LogKey
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	all := map[uint64][]byte{}
	for cycle := range cycles {
		before := srv.size()
		acked, cutOff := hammer(t, srv, signer, fmt.Sprintf("CHG-KILL-%d", cycle), posters, loadFor, 200, true, func() {
			_ = srv.cmd.Process.Kill() // SIGKILL, from the goroutine that just got an acknowledgment
		})
		srv.kill9()
		var last uint64
		for i, env := range acked {
			if i < before {
				t.Fatalf("cycle %d: a new record was acknowledged at index %d, below the log size %d before the cycle", cycle, i, before)
			}
			if _, dup := all[i]; dup {
				t.Fatalf("cycle %d: index %d acknowledged again", cycle, i)
			}
			all[i] = env
			last = max(last, i)
		}
		t.Logf("cycle %d: %d records acknowledged in %s (indexes %d..%d), %d requests cut off by the kill",
			cycle, len(acked), loadFor, before, last, cutOff)
		if len(acked) < 200 {
			t.Fatalf("cycle %d: only %d records acknowledged under load; the test proves nothing", cycle, len(acked))
		}
		if cutOff == 0 {
			t.Errorf("cycle %d: no request was in flight when the server was killed", cycle)
		}

		// An auditor may check the crashed directory before anyone restarts it.
		r := evident(t, work, "verify", "--data", data, "--log-key", logKey, "--fast")
		mustContain(t, "verify of a crashed data directory", r.stdout, "OK: ")

		srv = startServe(t, work, args...)
		if srv.LogKey != logKey {
			t.Fatalf("the log key changed across a crash: %s, was %s", srv.LogKey, logKey)
		}
		size := srv.size()
		if size <= last {
			t.Fatalf("cycle %d: after restart the log holds %d entries, but index %d was acknowledged", cycle, size, last)
		}
		checkAcked(t, srv, acked)
		// A sample of earlier cycles' records too.
		sample := map[uint64][]byte{}
		for i, env := range all {
			if len(sample) == 200 {
				break
			}
			sample[i] = env
		}
		checkAcked(t, srv, sample)

		// Posting acknowledged records again finds them: the idempotency
		// index survived the crash, for the last records before the kill too.
		byIndex := slices.Sorted(func(yield func(uint64) bool) {
			for i := range acked {
				if !yield(i) {
					return
				}
			}
		})
		again := byIndex[max(0, len(byIndex)-10):]
		for range 10 {
			again = append(again, byIndex[rand.IntN(len(byIndex))])
		}
		for _, i := range again {
			rc, _ := srv.postRecord(acked[i], http.StatusOK)
			if !rc.Duplicate || rc.Index != i {
				t.Fatalf("cycle %d: acknowledged record %d posted again: %+v", cycle, i, rc)
			}
		}
		if n := srv.size(); n != size {
			t.Fatalf("posting acknowledged records again grew the log from %d to %d", size, n)
		}
		// Recovered entries get a checkpoint and are provable.
		srv.waitCheckpoint(size)
		r = evident(t, work, "proof", "--index", fmt.Sprint(last), "--server", srv.URL, "--log-key", logKey)
		mustContain(t, "proof of the last acknowledged entry", r.stderr, fmt.Sprintf("entry %d is included", last))
	}
	size := srv.size()
	srv.stop()
	r := evident(t, work, "verify", "--data", data, "--log-key", logKey)
	mustContain(t, "verify after the crashes", r.stdout,
		fmt.Sprintf("OK: %d entries", size), fmt.Sprintf("latest at size %d,", size))
	t.Logf("%d records acknowledged over %d crashes, log of %d entries verified", len(all), cycles, size)
}

// TestGracefulShutdown: SIGTERM under load drains in-flight requests, signs
// a final checkpoint covering every entry, and exits 0.
func TestGracefulShutdown(t *testing.T) {
	work := t.TempDir()
	cfg := filepath.Join(work, "evident.yaml")
	// Checkpoints are due only every hour: the one covering the records
	// posted here is the one signed at shutdown.
	writeFile(t, cfg, "listen: 127.0.0.1:0\ndata: data\ncheckpointInterval: 1h\n")
	srv := startServe(t, work, "--config", cfg)
	data := filepath.Join(work, "data")
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	first := postMany(t, srv, signer, "CHG-DRAIN-A", "prod", 40, 4)
	if n := checkpointSize(t, srv.checkpoint()); n != 1 {
		t.Fatalf("checkpoint size %d before shutdown, want 1 (only the bootstrap's)", n)
	}
	acked, _ := hammer(t, srv, signer, "CHG-DRAIN-B", 4, 500*time.Millisecond, 50, false, func() {
		if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM: %v", err)
		}
		if code := srv.exitCode(); code != 0 {
			t.Errorf("serve exited %d after SIGTERM, want 0\n%s", code, srv.stderr.String())
		}
	})
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before the shutdown")
	}
	for i, env := range first {
		acked[i] = env
	}

	// Offline: every acknowledged record is there, and the final
	// checkpoint covers the whole log.
	out := filepath.Join(work, "export.jsonl")
	evident(t, work, "export", "--data", data, "--out", out)
	ex := readExport(t, out)
	for i, env := range acked {
		if i >= uint64(len(ex.leaves)) || !bytes.Contains(ex.leaves[i], env) {
			t.Fatalf("acknowledged entry %d is not in the log after a graceful shutdown", i)
		}
	}
	size := len(ex.leaves)
	mustContain(t, "serve's log", srv.stderr.String(), fmt.Sprintf("entries=%d", size))
	r := evident(t, work, "verify", "--data", data)
	mustContain(t, "verify after SIGTERM", r.stdout, fmt.Sprintf("OK: %d entries", size), fmt.Sprintf("latest at size %d,", size))
	if strings.Contains(r.stdout, "not yet covered") {
		t.Errorf("entries are not covered by a checkpoint after a graceful shutdown:\n%s", r.stdout)
	}
	r = evident(t, work, "verify", "--export", out)
	mustContain(t, "verify of the export after SIGTERM", r.stdout, fmt.Sprintf("latest at size %d,", size))
	t.Logf("%d records acknowledged, %d entries, final checkpoint at %d", len(acked), size, size)
}

// TestLoadSmoke runs the load generator against a server that trusts its key.
func TestLoadSmoke(t *testing.T) {
	work := t.TempDir()
	evident(t, work, "keys", "generate", "--name", "load", "--dir", work)
	cfg := filepath.Join(work, "evident.yaml")
	writeFile(t, cfg, `listen: 127.0.0.1:0
data: data
trust:
  runners:
    - name: load-generator
      publicKey: load.pub
      scope:
        environments: [prod]
`)
	srv := startServe(t, work, "--config", cfg)
	records := 2000
	r := evident(t, work, "load", "--key", filepath.Join(work, "load.key"), "--server", srv.URL,
		"--records", fmt.Sprint(records), "--concurrency", "16", "--proofs", "200")
	mustContain(t, "load", r.stdout, fmt.Sprintf("ingest: %d records in", records), "records/s", "; 0 failed",
		"\nload generator CPU while ", " µs per record\n", "\ninclusion proofs: 200 ")
	if strings.Count(r.stdout, "; 0 failed") != 2 {
		t.Errorf("load reports failures:\n%s", r.stdout)
	}
	t.Log(strings.TrimSpace(r.stdout))
	if n := srv.size(); n != uint64(records)+1 {
		t.Errorf("log size %d after %d records, want %d", n, records, records+1)
	}
	// A key the server does not trust: load fails, naming the refusal.
	evident(t, work, "keys", "generate", "--name", "stranger", "--dir", work)
	r = evidentFails(t, work, -1, "load", "--key", filepath.Join(work, "stranger.key"), "--server", srv.URL,
		"--records", "10", "--concurrency", "2")
	mustContain(t, "load with an untrusted key", r.stderr, "status 403")
	srv.stop()
}

// payloadField is the payload of a DSSE envelope, or "" (safe off the test
// goroutine).
func payloadField(env []byte) string {
	var e struct {
		Payload string `json:"payload"`
	}
	_ = json.Unmarshal(env, &e)
	return e.Payload
}
