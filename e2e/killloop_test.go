package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestKill9Loop: twenty SIGKILLs in a row under concurrent load, each at
// the moment an acknowledgment arrives, restarting on the same data
// directory every time. Every record acknowledged in any cycle is in the
// log at its acknowledged index at the end, and the log verifies offline.
// (TestKill9UnderLoad checks each crash more closely, over fewer cycles.)
func TestKill9Loop(t *testing.T) {
	cycles := 20
	if testing.Short() {
		cycles = 5
	}
	const posters = 8
	work := t.TempDir()
	data := filepath.Join(work, "data")
	args := []string{"--listen", "127.0.0.1:0", "--data", data}
	srv := startServe(t, work, args...)
	logKey := srv.LogKey
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	all := map[uint64][]byte{}
	cutOff := 0
	for cycle := range cycles {
		before := srv.size()
		acked, cut := hammer(t, srv, signer, fmt.Sprintf("CHG-LOOP-%d", cycle), posters, 200*time.Millisecond, 50, true, func() {
			_ = srv.cmd.Process.Kill()
		})
		srv.kill9()
		cutOff += cut
		for i, env := range acked {
			if i < before {
				t.Fatalf("cycle %d: a record was acknowledged at index %d, below the log size %d before the cycle", cycle, i, before)
			}
			if _, dup := all[i]; dup {
				t.Fatalf("cycle %d: index %d acknowledged twice", cycle, i)
			}
			all[i] = env
		}
		srv = startServe(t, work, args...)
		if srv.LogKey != logKey {
			t.Fatalf("cycle %d: the log key changed across a crash", cycle)
		}
	}
	if cutOff == 0 {
		t.Errorf("no request was in flight at any of %d kills", cycles)
	}
	checkAcked(t, srv, all)
	size := srv.size()
	srv.stop()
	r := evident(t, work, "verify", "--data", data, "--log-key", logKey)
	mustContain(t, "verify after the kill loop", r.stdout, fmt.Sprintf("OK: %d entries", size))
	t.Logf("%d kills: %d records acknowledged, all in the log of %d entries; %d requests cut off", cycles, len(all), size, cutOff)
}
