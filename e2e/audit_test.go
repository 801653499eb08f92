package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// export is an export file split into its lines.
type export struct {
	header      map[string]any
	checkpoints []string // the checkpoint lines, raw
	leaves      [][]byte // decoded, by index
	leafLines   []string // raw
}

func readExport(t *testing.T, path string) export {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(mustRead(t, path), "\n"), "\n")
	var ex export
	if err := json.Unmarshal([]byte(lines[0]), &ex.header); err != nil {
		t.Fatalf("export header: %v: %s", err, lines[0])
	}
	if ex.header["format"] != "evident-export/v1" {
		t.Fatalf("export header %v", ex.header)
	}
	ncp := int(ex.header["checkpoints"].(float64))
	ex.checkpoints = lines[1 : 1+ncp]
	for i, l := range lines[1+ncp:] {
		var e struct {
			Index uint64 `json:"index"`
			Leaf  []byte `json:"leaf"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Index != uint64(i) {
			t.Fatalf("export leaf line %d: index %d, %v", i, e.Index, err)
		}
		ex.leaves = append(ex.leaves, e.Leaf)
		ex.leafLines = append(ex.leafLines, l)
	}
	if uint64(len(ex.leaves)) != uint64(ex.header["size"].(float64)) {
		t.Fatalf("export header says %v entries, the file holds %d", ex.header["size"], len(ex.leaves))
	}
	return ex
}

// write writes the export back, with leaf lines replaced or dropped.
func (ex export) write(t *testing.T, path string, leafLines []string) {
	t.Helper()
	h, _ := json.Marshal(ex.header)
	all := append(append([]string{string(h)}, ex.checkpoints...), leafLines...)
	writeFile(t, path, strings.Join(all, "\n")+"\n")
}

// leafLine encodes one export leaf line.
func leafLine(index int, leaf []byte) string {
	return fmt.Sprintf(`{"index":%d,"leaf":"%s"}`, index, base64.StdEncoding.EncodeToString(leaf))
}

// lineOf returns the byte range of line n (0-based) of a leaf.
func lineOf(t *testing.T, leaf []byte, n int) (start, end int) {
	t.Helper()
	for range n {
		i := bytes.IndexByte(leaf[start:], '\n')
		if i < 0 {
			t.Fatalf("leaf has fewer than %d lines", n+1)
		}
		start += i + 1
	}
	return start, start + bytes.IndexByte(leaf[start:], '\n')
}

// flip changes the byte at i of a copy of leaf into another byte of the same
// class (digit, letter, base64), so that only the content changes, not the
// syntax.
func flip(leaf []byte, i int) []byte {
	out := bytes.Clone(leaf)
	switch c := out[i]; {
	case c >= '0' && c <= '8', c >= 'a' && c <= 'y', c >= 'A' && c <= 'Y':
		out[i] = c + 1
	case c == '9', c == 'z', c == 'Z':
		out[i] = c - 1
	default:
		out[i] = c ^ 1
	}
	return out
}

// TestExportVerifyTamper: a log exported from a running server and from a
// stopped server's data directory verifies offline; any single altered
// byte, lost line or truncation makes verify fail naming the entry.
func TestExportVerifyTamper(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	acked := postMany(t, srv, signer, "CHG-EXPORT", "prod", 200, 8)
	const size = 201
	srv.waitCheckpoint(size)

	live := filepath.Join(work, "live.jsonl")
	r := evident(t, work, "export", "--server", srv.URL, "--out", live)
	mustContain(t, "export --server", r.stdout, "wrote "+live)
	r = evidentFails(t, work, -1, "export", "--data", data, "--out", filepath.Join(work, "busy.jsonl"))
	mustContain(t, "export --data of a running server", r.stderr, "is a server running on it?")
	srv.stop()
	offline := filepath.Join(work, "offline.jsonl")
	r = evident(t, work, "export", "--data", data, "--out", offline, "-o", "json")
	var exported struct {
		Out   string `json:"out"`
		Lines uint64 `json:"lines"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &exported); err != nil || exported.Out != offline || exported.Lines == 0 {
		t.Fatalf("export -o json: %+v %v\n%s", exported, err, r.stdout)
	}

	liveEx, ex := readExport(t, live), readExport(t, offline)
	if len(ex.leaves) != size || len(liveEx.leaves) != size {
		t.Fatalf("exports hold %d (live) and %d (offline) entries, want %d", len(liveEx.leaves), len(ex.leaves), size)
	}
	if strings.Join(liveEx.leafLines, "\n") != strings.Join(ex.leafLines, "\n") {
		t.Error("the live and the offline export hold different entries")
	}
	if ex.header["logKey"] != srv.LogKey || ex.header["origin"] != srv.Origin {
		t.Errorf("export header %v", ex.header)
	}
	for index, env := range acked {
		if !bytes.Contains(ex.leaves[index], env) {
			t.Fatalf("export entry %d does not hold the envelope acknowledged at that index", index)
		}
	}
	// The export's last checkpoint verifies with standard tooling, and its
	// root is the RFC 6962 root of the exported leaves.
	var lastCP struct{ Checkpoint string }
	if err := json.Unmarshal([]byte(ex.checkpoints[len(ex.checkpoints)-1]), &lastCP); err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(srv.LogKey)
	cp, _, _, err := log.ParseCheckpoint([]byte(lastCP.Checkpoint), srv.Origin, v)
	if err != nil || cp.Size != size {
		t.Fatalf("last exported checkpoint: %v, %v", cp, err)
	}
	hashes := make([][]byte, size)
	for i, l := range ex.leaves {
		hashes[i] = rfc6962.DefaultHasher.HashLeaf(l)
	}
	if root := rootOf(hashes); !bytes.Equal(root, cp.Hash) {
		t.Fatalf("RFC 6962 root of the exported leaves %x, checkpoint %x", root, cp.Hash)
	}

	ok := fmt.Sprintf("OK: %d entries", size)
	for _, args := range [][]string{
		{"--data", data},
		{"--data", data, "--log-key", srv.LogKey, "--fast"},
		{"--export", offline},
		{"--export", offline, "--log-key", srv.LogKey},
		{"--export", offline, "--fast"},
		{"--export", live, "--log-key", srv.LogKey},
	} {
		r := evident(t, work, append([]string{"verify"}, args...)...)
		mustContain(t, "verify "+strings.Join(args, " "), r.stdout, ok, fmt.Sprintf("latest at size %d", size))
	}
	// Pinned to another key, the log does not verify.
	_, otherKey, _ := note.GenerateKey(nil, srv.Origin)
	r = evidentFails(t, work, 1, "verify", "--export", offline, "--log-key", otherKey)
	mustContain(t, "verify with another log key", r.stderr, "verify FAILED")

	// One altered byte of one leaf, at different places of different
	// entries, with and without signature checks.
	type tamper struct {
		name  string
		index int
		line  int    // of the leaf
		after string // flip the byte after this marker in the line; "" for the middle of the line
		fast  bool
	}
	for _, c := range []tamper{
		{"genesis envelope", 0, 6, "", false},
		{"envelope payload", 57, 6, `"payload":"eyJfdHlwZSI6`, false},
		{"envelope signature", 120, 6, `"sig":"`, false},
		{"signer name in metadata", 200, 5, `"name":"`, false},
		{"record digest in metadata", 31, 5, `"recordDigest":"`, false},
		{"previous hash", 99, 3, "", false},
		{"index", 42, 2, "", false},
		{"origin", 10, 1, "", false},
		{"leaf header", 33, 0, "", false},
		{"receivedAt", 150, 4, "", false},
		{"envelope payload, --fast", 57, 6, `"payload":"eyJfdHlwZSI6`, true},
		{"receivedAt, --fast", 151, 4, "", true},
		{"last entry, --fast", 200, 6, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			leaf := ex.leaves[c.index]
			start, end := lineOf(t, leaf, c.line)
			at := start + (end-start)/2
			if c.after != "" {
				i := bytes.Index(leaf[start:end], []byte(c.after))
				if i < 0 {
					t.Fatalf("line %d of entry %d has no %s: %s", c.line, c.index, c.after, leaf[start:end])
				}
				at = start + i + len(c.after) + 3
			}
			bad := flip(leaf, at)
			lines := append([]string(nil), ex.leafLines...)
			lines[c.index] = leafLine(c.index, bad)
			path := filepath.Join(t.TempDir(), "tampered.jsonl")
			ex.write(t, path, lines)
			args := []string{"verify", "--export", path, "--log-key", srv.LogKey}
			if c.fast {
				args = append(args, "--fast")
			}
			r := evidentFails(t, work, 1, args...)
			want := fmt.Sprintf("verify FAILED: entry %d: ", c.index)
			mustContain(t, "verify of a tampered export", r.stderr, want)
			t.Log(strings.TrimSpace(r.stderr))
		})
	}

	// A header field that disagrees with the checkpoints and leaves is
	// named, even when every checkpoint and leaf is intact.
	for field, value := range map[string]any{
		"origin": "evil.example/log", "logKey": "evil.example/log+00000000+AAAA", "size": 150.0, "checkpoints": 1.0,
	} {
		t.Run("header "+field, func(t *testing.T) {
			tampered := ex
			tampered.header = maps.Clone(ex.header)
			tampered.header[field] = value
			path := filepath.Join(t.TempDir(), "tampered.jsonl")
			tampered.write(t, path, ex.leafLines)
			r := evidentFails(t, work, 1, "verify", "--export", path, "--log-key", srv.LogKey)
			mustContain(t, "verify of an export with a tampered header", r.stderr, "verify FAILED", "header field "+field)
		})
	}

	// Lost lines and truncation.
	for _, c := range []struct {
		name  string
		index int
		lines func() []string
	}{
		{"line deleted", 77, func() []string {
			return append(append([]string(nil), ex.leafLines[:77]...), ex.leafLines[78:]...)
		}},
		{"last line deleted", 200, func() []string { return ex.leafLines[:200] }},
		{"truncated at a line end", 150, func() []string { return ex.leafLines[:150] }},
		{"truncated inside a line", 180, func() []string {
			lines := append([]string(nil), ex.leafLines[:181]...)
			lines[180] = lines[180][:len(lines[180])/2]
			return lines
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tampered.jsonl")
			ex.write(t, path, c.lines())
			if c.name == "truncated inside a line" { // no final newline either
				b := []byte(mustRead(t, path))
				writeFile(t, path, string(b[:len(b)-1]))
			}
			r := evidentFails(t, work, 1, "verify", "--export", path, "--log-key", srv.LogKey)
			mustContain(t, "verify of a damaged export", r.stderr, fmt.Sprintf("verify FAILED: entry %d: ", c.index))
			t.Log(strings.TrimSpace(r.stderr))
		})
	}

	// The data directory: a byte flipped inside an entry of a segment file
	// (the frame checksum catches it), and the same with the checksum
	// recomputed (the chain and the signature catch it).
	for _, c := range []struct {
		name   string
		line   int // of the leaf
		fixCRC bool
		fast   bool
	}{
		{"envelope byte flipped", 6, false, false},
		{"envelope byte flipped, checksum recomputed", 6, true, false},
		{"receivedAt flipped, checksum recomputed, --fast", 4, true, true},
	} {
		t.Run("segment "+c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			copyDir(t, data, dir)
			seg := filepath.Join(dir, "ledger", "entries", "000000000000.seg")
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			const index = 90
			off := frameOffset(t, b, index)
			n := int(binary.BigEndian.Uint32(b[off:]))
			leaf := b[off+4 : off+4+n]
			if !bytes.Equal(leaf, ex.leaves[index]) {
				t.Fatalf("frame %d does not hold entry %d", index, index)
			}
			start, end := lineOf(t, leaf, c.line)
			copy(leaf, flip(leaf, start+(end-start)/2))
			if c.fixCRC {
				binary.BigEndian.PutUint32(b[off+4+n:], crc32.Checksum(leaf, crc32.MakeTable(crc32.Castagnoli)))
			}
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"verify", "--data", dir}
			if c.fast {
				args = append(args, "--fast")
			}
			r := evidentFails(t, work, 1, args...)
			mustContain(t, "verify of a damaged data directory", r.stderr, fmt.Sprintf("verify FAILED: entry %d: ", index))
			t.Log(strings.TrimSpace(r.stderr))
		})
	}
}

// frameOffset finds the frame of entry index in a segment file
// (length u32 | leaf | CRC-32C u32 per entry).
func frameOffset(t *testing.T, seg []byte, index int) int {
	t.Helper()
	off := 0
	for range index {
		if off+4 > len(seg) {
			t.Fatalf("segment ends before entry %d", index)
		}
		off += 8 + int(binary.BigEndian.Uint32(seg[off:]))
	}
	return off
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rootOf is the RFC 6962 Merkle tree hash of leaf hashes, computed directly
// from the RFC's definition.
func rootOf(hashes [][]byte) []byte {
	switch len(hashes) {
	case 0:
		return rfc6962.DefaultHasher.EmptyRoot()
	case 1:
		return hashes[0]
	}
	k := 1
	for k*2 < len(hashes) {
		k *= 2
	}
	return rfc6962.DefaultHasher.HashChildren(rootOf(hashes[:k]), rootOf(hashes[k:]))
}

// TestConsistency: a saved checkpoint is proven to be extended by the
// latest one; a checkpoint of another log is refused, whether it is signed
// with another key or with the same key over another history (a fork).
func TestConsistency(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	signer := newSigner(t, filepath.Join(data, "dev-runner.key"))
	postMany(t, srv, signer, "CHG-CONS-A", "prod", 20, 4)
	saved := filepath.Join(work, "saved-checkpoint")
	old := srv.waitCheckpoint(21)
	writeFile(t, saved, string(old))
	// A backup of the log as it is now, to roll back to later.
	srv.stop()
	backup := filepath.Join(t.TempDir(), "data")
	copyDir(t, data, backup)
	srv = startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)

	// Nothing new yet: the saved checkpoint is the latest, trivially consistent.
	r := evident(t, work, "proof", "--consistent-with", saved, "--server", srv.URL, "--log-key", srv.LogKey)
	mustContain(t, "proof --consistent-with the latest", r.stdout, "consistent: the tree of 21 entries extends the saved tree of 21 entries")

	postMany(t, srv, signer, "CHG-CONS-B", "prod", 37, 4)
	latest := srv.waitCheckpoint(58)
	r = evident(t, work, "proof", "--consistent-with", saved, "--server", srv.URL, "--log-key", srv.LogKey)
	mustContain(t, "proof --consistent-with", r.stdout, "consistent: the tree of 58 entries extends the saved tree of 21 entries")
	r = evident(t, work, "proof", "--consistent-with", saved, "--server", srv.URL)
	mustContain(t, "proof --consistent-with, unpinned", r.stdout, "consistent:")

	// The same, with standard tooling on the raw endpoint.
	v, _ := note.NewVerifier(srv.LogKey)
	cpOld, _, _, err := log.ParseCheckpoint(old, srv.Origin, v)
	if err != nil {
		t.Fatal(err)
	}
	cpNew, _, _, err := log.ParseCheckpoint(latest, srv.Origin, v)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Hashes [][]byte `json:"hashes"`
	}
	srv.getJSON(fmt.Sprintf("/v1/proofs/consistency?from=%d&to=%d", cpOld.Size, cpNew.Size), &p)
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, cpOld.Size, cpNew.Size, p.Hashes, cpOld.Hash, cpNew.Hash); err != nil {
		t.Fatalf("consistency proof %d -> %d: %v", cpOld.Size, cpNew.Size, err)
	}

	// Another server: another key. Its checkpoint does not verify.
	otherWork := t.TempDir()
	other := startServe(t, otherWork, "--listen", "127.0.0.1:0", "--data", filepath.Join(otherWork, "data"))
	foreign := filepath.Join(work, "foreign-checkpoint")
	writeFile(t, foreign, string(other.waitCheckpoint(1)))
	other.stop()
	r = evidentFails(t, work, -1, "proof", "--consistent-with", foreign, "--server", srv.URL, "--log-key", srv.LogKey)
	mustContain(t, "proof --consistent-with a foreign checkpoint", r.stderr, foreign)
	if strings.Contains(r.stdout, "consistent:") {
		t.Errorf("a foreign checkpoint was found consistent: %s", r)
	}

	// A fork: the same origin and log key, another history.
	forkWork := t.TempDir()
	forkKey := filepath.Join(forkWork, "log.key")
	writeFile(t, forkKey, mustRead(t, filepath.Join(data, "log.key")))
	if err := os.Chmod(forkKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(forkWork, "evident.yaml")
	writeFile(t, cfg, "listen: 127.0.0.1:0\ndata: data\nlog:\n  keyFile: log.key\n")
	fork := startServe(t, forkWork, "--config", cfg)
	if fork.LogKey != srv.LogKey {
		t.Fatalf("the fork's log key %q differs from %q", fork.LogKey, srv.LogKey)
	}
	forked := filepath.Join(work, "forked-checkpoint")
	writeFile(t, forked, string(fork.waitCheckpoint(1)))
	fork.stop()
	r = evidentFails(t, work, 1, "proof", "--consistent-with", forked, "--server", srv.URL, "--log-key", srv.LogKey)
	mustContain(t, "proof --consistent-with a fork's checkpoint", r.stderr, "NOT consistent")

	// A saved checkpoint with its root altered no longer verifies.
	lines := strings.SplitN(string(old), "\n", 4)
	root, _ := base64.StdEncoding.DecodeString(lines[2])
	root[0] ^= 1
	lines[2] = base64.StdEncoding.EncodeToString(root)
	altered := filepath.Join(work, "altered-checkpoint")
	writeFile(t, altered, strings.Join(lines, "\n"))
	evidentFails(t, work, -1, "proof", "--consistent-with", altered, "--server", srv.URL, "--log-key", srv.LogKey)

	// A server rolled back to the backup: the checkpoint an auditor saved
	// since is larger than anything it serves.
	newest := filepath.Join(work, "newest-checkpoint")
	writeFile(t, newest, string(latest))
	srv.stop()
	rolledBack := startServe(t, work, "--listen", "127.0.0.1:0", "--data", backup)
	if rolledBack.LogKey != srv.LogKey {
		t.Fatalf("the backup serves with log key %s, want %s", rolledBack.LogKey, srv.LogKey)
	}
	r = evidentFails(t, work, 1, "proof", "--consistent-with", newest, "--server", rolledBack.URL, "--log-key", srv.LogKey)
	mustContain(t, "proof --consistent-with against a rolled-back server", r.stderr, "the log shrank", "21", "58")
	rolledBack.stop()
}

// TestExportServerIncomplete: when the server cannot finish an export (here
// a damaged entry in the middle of its segment file), export --server fails
// instead of writing a truncated file and reporting success.
func TestExportServerIncomplete(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	postMany(t, srv, newSigner(t, filepath.Join(data, "dev-runner.key")), "CHG-INCOMPLETE", "prod", 800, 8)
	srv.stop()
	seg := filepath.Join(data, "ledger", "entries", "000000000000.seg")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Inside entry 700, beyond the first MiB the server streams: its frame
	// checksum no longer matches.
	off := frameOffset(t, b, 700)
	b[off+40] ^= 1
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv = startServe(t, work, "--listen", "127.0.0.1:0", "--data", data)
	out := filepath.Join(work, "export.jsonl")
	r := evidentFails(t, work, -1, "export", "--server", srv.URL, "--out", out)
	mustContain(t, "export --server of a damaged log", r.stderr, "incomplete", "lines its header announces")
	if _, err := os.Stat(out); err == nil {
		t.Error("export --server wrote an incomplete export")
	}
	srv.stop()
}

// TestVerifyRunningServerIsNotTampering: verify --data on the directory of
// a running server cannot read it; it says so and exits 2, not the 1 and
// "verify FAILED" that mean a damaged or tampered log.
func TestVerifyRunningServerIsNotTampering(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, "data")
	srv := startServe(t, work, "--data", data, "--listen", "127.0.0.1:0")
	r := evidentFails(t, work, 2, "verify", "--data", data, "--log-key", srv.LogKey)
	mustContain(t, "verify of a running server's data", r.stderr, "in use by a running server", "evident verify --export")
	if strings.Contains(r.stderr, "FAILED") {
		t.Errorf("verify of a locked directory reads as a failed verification:\n%s", r.stderr)
	}
	srv.stop()
	evident(t, work, "verify", "--data", data, "--log-key", srv.LogKey)

	// -o json: one object a script reads, for a log that verifies and for
	// one that does not (exit 1 all the same).
	var res struct {
		OK      bool   `json:"ok"`
		Error   string `json:"error"`
		Entries uint64 `json:"entries"`
		Root    string `json:"root"`
	}
	r = evident(t, work, "verify", "--data", data, "--log-key", srv.LogKey, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || !res.OK || res.Entries == 0 || len(res.Root) != 64 {
		t.Fatalf("verify -o json: %+v %v\n%s", res, err, r.stdout)
	}
	r = evidentFails(t, work, 1, "verify", "--data", work, "-o", "json")
	res = struct {
		OK      bool   `json:"ok"`
		Error   string `json:"error"`
		Entries uint64 `json:"entries"`
		Root    string `json:"root"`
	}{}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.OK || !strings.Contains(res.Error, "not an Evident ledger directory") {
		t.Fatalf("verify -o json of a directory that is not a log: %+v %v\n%s", res, err, r.stdout)
	}
	evidentFails(t, work, 2, "verify", "--data", data, "-o", "yaml")
}
