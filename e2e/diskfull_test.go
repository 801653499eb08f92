package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"evident.dev/evident/client"
)

// requireRoot skips a test that mounts filesystems unless it runs as root,
// and fails it instead under EVIDENT_REQUIRE_TOOLS=1 (CI runs as root).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("EVIDENT_REQUIRE_TOOLS") == "1" {
		t.Fatal("this test mounts a size-limited tmpfs and must run as root (EVIDENT_REQUIRE_TOOLS=1)")
	}
	t.Skip("mounting a size-limited tmpfs needs root")
}

// mountTmpfs mounts a tmpfs of the given size on a new temporary directory,
// unmounted when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	requireRoot(t)
	dir, err := os.MkdirTemp("", "evident-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
		os.Remove(dir)
	})
	return dir
}

// fillDisk writes a file until the filesystem holding dir is full, and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n := 0; ; n++ {
		if len(chunk) < 4096 {
			break
		}
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			chunk = chunk[:len(chunk)/2]
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("disk filled: %d bytes free", st.Bavail*uint64(st.Bsize))
	return path
}

// TestDiskFull runs serve with its data on a small tmpfs, fills the disk
// under it, and posts: every record is refused with 503 and Retry-After,
// the server stays up, and once space is freed the same records are
// accepted; nothing acknowledged is lost, and the log verifies offline.
//
// With the default reserve the ledger refuses batches while less than
// 64 MiB is free, before writing anything; with none (minFreeMB: -1) the
// writes themselves fail with ENOSPC and the failed batch is cut back out.
func TestDiskFull(t *testing.T) {
	for _, c := range []struct {
		name, config, logs string
	}{
		{"reserve", "", "disk nearly full"},
		{"no reserve", noReserve, "no space left on device"},
	} {
		t.Run(c.name, func(t *testing.T) { testDiskFull(t, c.config, c.logs) })
	}
}

func testDiskFull(t *testing.T, config, logs string) {
	mnt := mountTmpfs(t, "96m")
	work := t.TempDir()
	data := filepath.Join(mnt, "data")
	cfg := filepath.Join(work, "evident.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\n"+config)
	srv := startServe(t, work, "--config", cfg, "--data", data)
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	acked := postMany(t, srv, signer, "CHG-FULL-A", "prod", 200, 4)

	// Posters keep writing while the disk fills, so it runs out at every
	// step of a commit: segment write, fdatasync, index transaction.
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	var loadMu sync.Mutex
	var crashed atomic.Bool
	loadStatus := map[int]int{}
	for g := range 4 {
		loadWG.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				env := sign(t, signer, planRecord(fmt.Sprintf("CHG-FULL-L%d-%d", g, i), "prod", i))
				status, body, err := post(httpClient, srv.URL, env)
				if err != nil {
					if diedOfSIGBUS(srv, config) {
						crashed.Store(true)
					} else {
						t.Errorf("POST while the disk fills: %v\nstderr:\n%s", err, srv.stderr.String())
					}
					return
				}
				loadMu.Lock()
				loadStatus[status]++
				if status == http.StatusCreated {
					var rc receipt
					if err := json.Unmarshal(body, &rc); err != nil {
						t.Errorf("receipt: %v", err)
					}
					acked[rc.Index] = env
				} else if status != http.StatusServiceUnavailable {
					t.Errorf("POST while the disk fills: status %d: %s", status, body)
				}
				loadMu.Unlock()
			}
		})
	}
	filler := fillDisk(t, mnt)
	// The load goes on until it has met the full disk: a POST refused
	// after the fill, or the server dead of SIGBUS.
	refusals := func() int {
		loadMu.Lock()
		defer loadMu.Unlock()
		return loadStatus[http.StatusServiceUnavailable]
	}
	atFull := refusals()
	for deadline := time.Now().Add(30 * time.Second); refusals() == atFull && !crashed.Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no POST was refused in the 30s after the disk filled (while it filled: %d refused)", atFull)
			break
		}
	}
	close(stopLoad)
	loadWG.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("while the disk filled: %v", loadStatus)
	if crashed.Load() {
		recoverAfterSIGBUS(t, work, cfg, data, filler, signer, acked)
		return
	}
	refusedEnvs := make([][]byte, 0, 50)
	refused := 0
	for i := range 50 {
		env := sign(t, signer, planRecord(fmt.Sprintf("CHG-FULL-B-%d", i), "prod", i))
		status, body, err := post(httpClient, srv.URL, env)
		if err != nil && diedOfSIGBUS(srv, config) {
			recoverAfterSIGBUS(t, work, cfg, data, filler, signer, acked)
			return
		}
		if err != nil {
			t.Fatalf("POST on a full disk: %v\nstderr:\n%s", err, srv.stderr.String())
		}
		switch status {
		case http.StatusServiceUnavailable:
			refused++
			refusedEnvs = append(refusedEnvs, env)
		case http.StatusCreated:
			// A record small enough for what is left may still fit.
			var rc receipt
			mustUnmarshal(t, body, &rc)
			acked[rc.Index] = env
		default:
			t.Fatalf("POST on a full disk: status %d: %s", status, body)
		}
	}
	if refused == 0 {
		t.Fatalf("no record was refused on a full disk")
	}
	t.Logf("full disk: %d of 50 records refused with 503", refused)
	if _, err := http.Get(srv.URL + "/healthz"); err != nil {
		t.Fatalf("server down on a full disk: %v\nstderr:\n%s", err, srv.stderr.String())
	}
	mustContain(t, "serve's log on a full disk", srv.stderr.String(), logs)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Space is back: the refused records are accepted now.
	deadline := time.Now().Add(30 * time.Second)
	for _, env := range refusedEnvs {
		for {
			status, body, err := post(httpClient, srv.URL, env)
			if err != nil {
				t.Fatalf("POST after space returned: %v", err)
			}
			if status == http.StatusCreated {
				var rc receipt
				mustUnmarshal(t, body, &rc)
				acked[rc.Index] = env
				break
			}
			if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("POST after space returned: status %d: %s\nstderr:\n%s", status, body, srv.stderr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if config == "" {
		// The refusals were logged as a state, not once per batch.
		log := srv.stderr.String()
		if n := strings.Count(log, "disk is nearly full"); n == 0 || n > 3 {
			t.Errorf("the disk-full state was logged %d times while %d records were refused; want once, and a reminder a minute", n, refused+loadStatus[http.StatusServiceUnavailable])
		}
		mustContain(t, "serve's log once space is back", log, "accepting records again")
	}
	postCheckAndVerify(t, srv, signer, work, data, acked)
}

// postCheckAndVerify posts more once space is back, checks every
// acknowledged record at its index, stops the server and verifies the log.
func postCheckAndVerify(t *testing.T, srv *testServer, signer *client.Signer, work, data string, acked map[uint64][]byte) {
	t.Helper()
	for i, env := range postMany(t, srv, signer, "CHG-FULL-C", "prod", 100, 4) {
		acked[i] = env
	}
	checkAcked(t, srv, acked)
	size := srv.size()
	srv.stop()
	r := evident(t, work, "verify", "--data", data, "--log-key", srv.LogKey)
	mustContain(t, "verify after a full disk", r.stdout, fmt.Sprintf("OK: %d entries", size))
}

// noReserve is the configuration without a free-space reserve.
const noReserve = "limits:\n  minFreeMB: -1\n"

// diedOfSIGBUS reports whether the server, running without the reserve,
// died as docs/faults.md says it may: Badger maps its memtables as sparse
// files, and a page of one that a full disk cannot back is a SIGBUS. A
// batch whose leaves fit in the slack of the segment's last page passes
// the segment write, and its index transaction then needs such a page.
func diedOfSIGBUS(srv *testServer, config string) bool {
	if config != noReserve {
		return false
	}
	select {
	case <-srv.exited:
	case <-time.After(5 * time.Second):
		return false
	}
	return strings.Contains(srv.stderr.String(), "SIGBUS")
}

// recoverAfterSIGBUS frees the space, starts the server again on the same
// data, and checks that the crash lost nothing acknowledged.
func recoverAfterSIGBUS(t *testing.T, work, cfg, data, filler string, signer *client.Signer, acked map[uint64][]byte) {
	t.Helper()
	t.Log("the server died of SIGBUS on the full disk without the reserve; restarting it")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	postCheckAndVerify(t, startServe(t, work, "--config", cfg, "--data", data), signer, work, data, acked)
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
