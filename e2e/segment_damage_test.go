package e2e

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSegmentDamage damages the entry segments of a stopped server's data
// directory. A byte flipped in the middle hides only its own entry: a later
// entry of the same index chunk is still found by its change. Damage to
// the last acknowledged entry (the file cut short, its last frame dropped,
// a byte of its record flipped) stops the server from starting, naming the
// segment file and the entry and saying how to recover: it must never sign
// checkpoints over a leaf nobody can read.
func TestSegmentDamage(t *testing.T) {
	work := t.TempDir()
	clean := filepath.Join(work, "clean")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", clean)
	signer := newSigner(t, filepath.Join(clean, "dev-runner.key"))
	postMany(t, srv, signer, "CHG-SEG", "prod", 300, 4)
	size := srv.size()
	srv.stop()
	seg := filepath.Join("ledger", "entries", "000000000000.seg")

	// frames lists each entry's frame offset in the segment (a 4-byte
	// length, the leaf, a 4-byte checksum).
	frames := func(t *testing.T, path string) []int64 {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for off := int64(0); off+4 <= int64(len(b)); {
			out = append(out, off)
			off += 8 + int64(binary.BigEndian.Uint32(b[off:]))
		}
		return out
	}
	damaged := func(t *testing.T, name string, damage func(t *testing.T, path string, frames []int64)) string {
		data := filepath.Join(work, strings.ReplaceAll(name, " ", "-"))
		copyDir(t, clean, data)
		path := filepath.Join(data, seg)
		fr := frames(t, path)
		if uint64(len(fr)) != size {
			t.Fatalf("the segment holds %d frames, the log %d entries", len(fr), size)
		}
		damage(t, path, fr)
		return data
	}

	t.Run("middle byte", func(t *testing.T) {
		mid := size / 2
		data := damaged(t, "middle byte", func(t *testing.T, path string, fr []int64) { flipFile(t, path, fr[mid]+40) })
		srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
		mustContain(t, "serve's warning", srv.stderr.String(), fmt.Sprintf("entry=%d ", mid))
		// A later entry, intact, is found by its change.
		var e struct{ Envelope json.RawMessage }
		srv.getJSON(fmt.Sprintf("/v1/entries/%d", size-5), &e)
		st := statementOf(t, e.Envelope)
		change := st["predicate"].(map[string]any)["changeId"].(string)
		body := srv.get("/v1/entries?change="+change, http.StatusOK)
		if !strings.Contains(string(body), fmt.Sprint(size-5)) {
			t.Errorf("the intact entry %d of %s is not found by its change after entry %d was damaged: %s", size-5, change, mid, body)
		}
		// Answers drawn from the index say what they may leave out.
		if !strings.Contains(string(body), fmt.Sprintf(`"damagedEntries":[%d]`, mid)) {
			t.Errorf("a lookup does not name the damaged entry %d: %s", mid, body)
		}
		_, answer := graphqlPost(t, srv.URL, "", fmt.Sprintf(`{ change(id: %q) { id } }`, change))
		if !strings.Contains(answer, fmt.Sprintf(`"damagedEntries":[%d]`, mid)) || !strings.Contains(answer, change) {
			t.Errorf("a GraphQL answer does not name the damaged entry %d: %s", mid, answer)
		}
		srv.get(fmt.Sprintf("/v1/entries/%d", mid), http.StatusInternalServerError)
		srv.stop()
	})

	for name, damage := range map[string]func(t *testing.T, path string, fr []int64){
		"cut short": func(t *testing.T, path string, _ []int64) {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, st.Size()-100); err != nil {
				t.Fatal(err)
			}
		},
		"last frame dropped": func(t *testing.T, path string, fr []int64) {
			if err := os.Truncate(path, fr[len(fr)-1]); err != nil {
				t.Fatal(err)
			}
		},
		"last record flipped": func(t *testing.T, path string, fr []int64) { flipFile(t, path, fr[len(fr)-1]+40) },
	} {
		t.Run(name, func(t *testing.T) {
			data := damaged(t, name, damage)
			_, err := tryServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
			if !errors.Is(err, errExited) {
				t.Fatalf("serve started on a log whose last acknowledged entry is damaged: %v", err)
			}
			mustContain(t, "serve's refusal", err.Error(), fmt.Sprintf("the last acknowledged entry, %d,", size-1),
				"000000000000.seg", "evident restore")
			if strings.Contains(err.Error(), "evident serving on") {
				t.Errorf("serve listened before refusing")
			}
			r := evidentFails(t, work, 1, "verify", "--data", data)
			mustContain(t, "verify of the damaged log", r.stderr, "verify FAILED")
		})
	}
}
