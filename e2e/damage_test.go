package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDamagedIndex flips bytes in each kind of Badger file of a stopped
// server's data directory: serve refuses to start and verify fails, both
// with a clear message naming the damaged file, and the undamaged directory
// still verifies and serves.
func TestDamagedIndex(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	postMany(t, srv, signer, "CHG-DAMAGE", "prod", 400, 4)
	srv.stop() // a clean close writes the memtable out as a table
	index := filepath.Join(data, "ledger", "index")
	tables, _ := filepath.Glob(filepath.Join(index, "*.sst"))
	vlogs, _ := filepath.Glob(filepath.Join(index, "*.vlog"))
	if len(tables) == 0 || len(vlogs) == 0 {
		t.Fatalf("no table or value log in %s after a clean stop: tables %v, value logs %v", index, tables, vlogs)
	}
	st, err := os.Stat(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	flip := func(file string, offset int64) func(t *testing.T, index string) {
		return func(t *testing.T, index string) { flipFile(t, filepath.Join(index, file), offset) }
	}
	table := filepath.Base(tables[0])
	cases := []struct {
		name   string
		damage func(t *testing.T, index string)
		want   string // what the message names
	}{
		{"manifest", flip("MANIFEST", 12), "manifest has checksum mismatch"},
		{"table data block", flip(table, 1000), table},
		{"table middle", flip(table, st.Size()/2), table},
		{"table index", flip(table, st.Size()-200), table},
		{"value log header", flip(filepath.Base(vlogs[0]), 4), filepath.Base(vlogs[0])},
		{"table emptied", func(t *testing.T, index string) {
			if err := os.Truncate(filepath.Join(index, table), 0); err != nil {
				t.Fatal(err)
			}
		}, table},
		{"manifest gone", func(t *testing.T, index string) {
			if err := os.Remove(filepath.Join(index, "MANIFEST")); err != nil {
				t.Fatal(err)
			}
		}, "MANIFEST is missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if out, err := exec.Command("cp", "-a", data, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			c.damage(t, filepath.Join(dir, "ledger", "index"))
			r := evidentFails(t, work, 1, "verify", "--data", dir)
			mustContain(t, "verify of a damaged index", r.stderr, "verify FAILED: ledger storage damaged", c.want)
			_, err := tryServe(t, work, "--listen", "127.0.0.1:0", "--data", dir)
			if !errors.Is(err, errExited) {
				t.Fatalf("serve on a damaged index: %v, want it to exit before serving", err)
			}
			mustContain(t, "serve on a damaged index", err.Error(), "ledger storage damaged", c.want)
		})
	}
	// A table file the manifest does not list is what kill -9 leaves when it
	// lands while Badger writes a table: not damage. Badger deletes it.
	orphan := filepath.Join(index, "999999.sst")
	if err := os.WriteFile(orphan, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := evident(t, work, "verify", "--data", data)
	mustContain(t, "verify with a half-written table", r.stdout, "OK: 401 entries")
	startServe(t, work, "--listen", "127.0.0.1:0", "--data", data).stop()
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the half-written table is still there after a start: %v", err)
	}

	// The original, untouched, is fine.
	r = evident(t, work, "verify", "--data", data)
	mustContain(t, "verify of the undamaged directory", r.stdout, "OK: 401 entries")
	startServe(t, work, "--listen", "127.0.0.1:0", "--data", data).stop()
}

// flipFile inverts four bytes of a file at offset.
func flipFile(t *testing.T, path string, offset int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatalf("read %s at %d: %v", path, offset, err)
	}
	for i := range b {
		b[i] ^= 0xff
	}
	if _, err := f.WriteAt(b, offset); err != nil {
		t.Fatal(err)
	}
}
