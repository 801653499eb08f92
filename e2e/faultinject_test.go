package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRandomByteFlips flips one random byte of one random file of a
// stopped server's data directory, many times, and checks each time that
// nothing answers wrongly in silence: `evident verify` passes or fails
// naming the damage; the server refuses to start saying why, or starts, and
// then every entry it serves has the hash it had before the damage (or is
// refused), and every intact entry it serves is found by its change.
func TestRandomByteFlips(t *testing.T) {
	rounds := 24
	if testing.Short() {
		rounds = 6
	}
	work := t.TempDir()
	clean := filepath.Join(work, "clean")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", clean)
	signer := newSigner(t, filepath.Join(clean, "dev-runner.key"))
	postMany(t, srv, signer, "CHG-FLIP", "prod", 120, 4)
	size := srv.size()
	type known struct {
		hash, change string
	}
	want := make([]known, size)
	for i := range size {
		var e struct {
			EntryHash string          `json:"entryHash"`
			Envelope  json.RawMessage `json:"envelope"`
		}
		srv.getJSON(fmt.Sprintf("/v1/entries/%d", i), &e)
		want[i].hash = e.EntryHash
		if p, ok := statementOf(t, e.Envelope)["predicate"].(map[string]any); ok {
			want[i].change, _ = p["changeId"].(string)
		}
	}
	logKey := srv.LogKey
	srv.stop()

	var files []string
	if err := filepath.WalkDir(clean, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && d.Type().IsRegular() && info.Size() > 0 {
			rel, _ := filepath.Rel(clean, path)
			files = append(files, rel)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(19, 2026))
	outcomes := map[string]int{}
	for round := range rounds {
		file := files[rng.IntN(len(files))]
		data := filepath.Join(work, fmt.Sprintf("round-%02d", round))
		copyDir(t, clean, data)
		st, err := os.Stat(filepath.Join(data, file))
		if err != nil {
			t.Fatal(err)
		}
		offset := rng.Int64N(st.Size())
		b, err := os.ReadFile(filepath.Join(data, file))
		if err != nil {
			t.Fatal(err)
		}
		b[offset] ^= byte(1 + rng.IntN(255))
		if err := os.WriteFile(filepath.Join(data, file), b, st.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("round %d: %s byte %d", round, file, offset)

		r := runIn(t, work, 2*time.Minute, "verify", "--data", data, "--log-key", logKey)
		switch {
		case r.code == 0:
			outcomes["verify ok"]++
		case r.code == 1 && strings.Contains(r.stderr, "verify FAILED: "):
			outcomes["verify names damage"]++
		default:
			t.Errorf("%s: verify exit %d, neither OK nor a failure naming the damage:\n%s", what, r.code, r.stderr)
		}

		s, err := tryServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
		if errors.Is(err, errExited) {
			if !strings.Contains(err.Error(), "evident: ") {
				t.Errorf("%s: serve refused without saying why: %v", what, err)
			}
			outcomes["serve refused"]++
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		outcomes["serve started"]++
		for i := uint64(0); i < size; i++ {
			resp, err := httpClient.Get(fmt.Sprintf("%s/v1/entries/%d", s.URL, i))
			if err != nil {
				t.Fatalf("%s: GET entry %d: %v\n%s", what, i, err, s.stderr.String())
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				continue // refused: said, not silent
			}
			var e struct {
				EntryHash string `json:"entryHash"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.EntryHash != want[i].hash {
				t.Errorf("%s: entry %d served with hash %s, was %s", what, i, e.EntryHash, want[i].hash)
				continue
			}
			if want[i].change == "" || i%10 != 0 {
				continue
			}
			resp, err = httpClient.Get(s.URL + "/v1/entries?change=" + want[i].change)
			if err != nil {
				t.Fatalf("%s: lookup: %v", what, err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && !strings.Contains(string(body), fmt.Sprint(i)) {
				t.Errorf("%s: intact entry %d is not found by its change %s: %s", what, i, want[i].change, body)
			}
		}
		s.stop()
	}
	t.Logf("%d rounds: %v", rounds, outcomes)
}
