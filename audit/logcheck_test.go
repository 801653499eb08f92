package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
	"evident.dev/evident/verifier/verifiertest"
)

func TestCheckLogClean(t *testing.T) {
	f := buildStandardLog(t)
	ctx := context.Background()
	wantRoot, err := f.log.RootHash(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	wantSigners := []string{"log", "ci", "apply", "argocd", "ci", "ci", "apply", "argocd", "ci"}

	check := func(t *testing.T, src audit.LogSource, signatures bool, workers int) {
		t.Helper()
		var mu sync.Mutex
		seen := map[uint64]string{}
		opts := f.opts(signatures)
		opts.Workers = workers
		opts.KeepLeafHashes = true
		opts.OnRecord = func(index uint64, v *verifier.Verified) {
			mu.Lock()
			defer mu.Unlock()
			if _, dup := seen[index]; dup {
				t.Errorf("OnRecord called twice for entry %d", index)
			}
			seen[index] = v.Signer.Name
		}
		rep, err := audit.CheckLog(ctx, src, opts)
		if err != nil {
			t.Fatalf("CheckLog: %v", err)
		}
		if rep.Size != 9 || rep.Checkpoints != 4 || rep.CheckpointSize != 9 || rep.Root != wantRoot {
			t.Errorf("report = size %d, %d checkpoints, checkpoint size %d, root %x; want 9, 4, 9, %x",
				rep.Size, rep.Checkpoints, rep.CheckpointSize, rep.Root, wantRoot)
		}
		if len(rep.LeafHashes) != 9 {
			t.Fatalf("%d leaf hashes", len(rep.LeafHashes))
		}
		for i := range uint64(9) {
			leaf, err := f.log.Leaf(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			if h := rfc6962.DefaultHasher.HashLeaf(leaf); !bytes.Equal(h, rep.LeafHashes[i][:]) {
				t.Errorf("leaf hash %d differs", i)
			}
		}
		if !signatures {
			if rep.Signatures != 0 || len(seen) != 0 {
				t.Errorf("without Signatures: %d signatures checked, OnRecord called %d times", rep.Signatures, len(seen))
			}
			return
		}
		if rep.Signatures != 9 {
			t.Errorf("Signatures = %d, want 9", rep.Signatures)
		}
		for i, want := range wantSigners {
			if seen[uint64(i)] != want {
				t.Errorf("entry %d: OnRecord signer %q, want %q", i, seen[uint64(i)], want)
			}
		}
	}

	for _, signatures := range []bool{false, true} {
		for _, workers := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("snapshot/signatures=%v/workers=%d", signatures, workers), func(t *testing.T) {
				check(t, f.snapshot(), signatures, workers)
			})
			t.Run(fmt.Sprintf("export/signatures=%v/workers=%d", signatures, workers), func(t *testing.T) {
				ex, err := audit.OpenExport(bytes.NewReader(f.export()))
				if err != nil {
					t.Fatal(err)
				}
				want := audit.ExportHeader{Format: audit.ExportFormat, Origin: testOrigin, LogKey: f.vkey, Size: 9, Checkpoints: 4}
				if ex.Header != want || ex.Size() != 9 {
					t.Errorf("header = %+v, want %+v", ex.Header, want)
				}
				check(t, ex, signatures, workers)
			})
		}
	}

	t.Run("tree", func(t *testing.T) {
		opts := f.opts(false)
		opts.KeepLeafHashes = true
		snap := f.snapshot()
		rep, err := audit.CheckLog(ctx, snap, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := snap.CheckTree(ctx, rep.LeafHashes); err != nil {
			t.Errorf("the stored tree does not match the checked leaves: %v", err)
		}
		var leaves [][]byte
		for i := range uint64(9) {
			leaf, _ := f.log.Leaf(ctx, i)
			leaves = append(leaves, leaf)
		}
		if merkleRoot(leaves) != rep.Root {
			t.Error("the checked root is not RFC 6962's tree hash of the leaves")
		}
	})

	t.Run("export is deterministic", func(t *testing.T) {
		a, b := f.export(), f.export()
		if !bytes.Equal(a, b) {
			t.Error("two exports of the same log differ")
		}
		if n := bytes.Count(a, []byte("\n")); n != 1+4+9 {
			t.Errorf("export has %d lines, want 14", n)
		}
	})

	t.Run("data directory after close", func(t *testing.T) {
		f.close()
		st, err := ledger.OpenStore(f.dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		snap, err := st.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		if _, err := audit.CheckLog(ctx, snap, f.opts(true)); err != nil {
			t.Fatalf("CheckLog on the stopped log's data: %v", err)
		}
	})
}

func TestCheckLogEmpty(t *testing.T) {
	f := newLogFixture(t)
	f.open()
	rep, err := audit.CheckLog(context.Background(), f.snapshot(), f.opts(true))
	if err != nil || rep.Size != 0 || rep.Checkpoints != 0 {
		t.Fatalf("empty log: %+v, %v", rep, err)
	}
}

// hexSwap changes a lowercase hex digit into another one.
func hexSwap(c byte) byte {
	if c >= '0' && c <= '9' {
		return c ^ 1
	}
	return 'a' + (c-'a'+1)%6
}

// b64Swap changes a base64 character into another one of the same alphabet.
func b64Swap(c byte) byte {
	switch {
	case c >= 'A' && c < 'Z', c >= 'a' && c < 'z', c >= '0' && c < '9':
		return c + 1
	case c == 'Z', c == 'z', c == '9':
		return c - 1
	}
	return 'A'
}

// lineStart returns the offset of line n of a leaf.
func lineStart(leaf []byte, n int) int {
	off := 0
	for range n {
		off += bytes.IndexByte(leaf[off:], '\n') + 1
	}
	return off
}

// after returns the offset just past the first marker in line n of a leaf.
func after(t testing.TB, leaf []byte, n int, marker string) int {
	t.Helper()
	start := lineStart(leaf, n)
	i := bytes.Index(leaf[start:], []byte(marker))
	if i < 0 {
		t.Fatalf("no %q in line %d of %q", marker, n, leaf)
	}
	return start + i + len(marker)
}

// flips are single-byte changes to one leaf, by where they land.
var flips = []struct {
	name string
	at   func(t testing.TB, leaf []byte) // changes one byte in place
}{
	{"header line", func(t testing.TB, l []byte) { l[3] ^= 0x01 }},
	{"origin line", func(t testing.TB, l []byte) { l[lineStart(l, 1)+2] ^= 0x01 }},
	{"index line", func(t testing.TB, l []byte) { l[lineStart(l, 2)] ^= 0x01 }},
	{"prevHash", func(t testing.TB, l []byte) { i := lineStart(l, 3) + 17; l[i] = hexSwap(l[i]) }},
	{"prevHash not hex", func(t testing.TB, l []byte) { l[lineStart(l, 3)+5] = 'g' }},
	{"receivedAt year", func(t testing.TB, l []byte) { l[lineStart(l, 4)+3] ^= 0x01 }},
	{"receivedAt garbled", func(t testing.TB, l []byte) { l[lineStart(l, 4)+4] = 'x' }},
	{"metadata signer name", func(t testing.TB, l []byte) { l[after(t, l, 5, `"name":"`)] ^= 0x01 }},
	{"metadata signer keyId", func(t testing.TB, l []byte) { i := after(t, l, 5, `"keyId":"`) + 30; l[i] = hexSwap(l[i]) }},
	{"metadata recordDigest", func(t testing.TB, l []byte) { i := after(t, l, 5, `"recordDigest":"`) + 63; l[i] = hexSwap(l[i]) }},
	{"metadata structure", func(t testing.TB, l []byte) { l[lineStart(l, 5)] = '[' }},
	{"metadata findings", func(t testing.TB, l []byte) { l[after(t, l, 5, `"findings":`)] = '{' }},
	{"envelope payloadType", func(t testing.TB, l []byte) { l[after(t, l, 6, `"payloadType":"`)+5] ^= 0x01 }},
	{"envelope payload", func(t testing.TB, l []byte) { i := after(t, l, 6, `"payload":"`) + 101; l[i] = b64Swap(l[i]) }},
	{"envelope payload raw bit", func(t testing.TB, l []byte) { l[after(t, l, 6, `"payload":"`)+40] ^= 0x01 }},
	{"envelope signature", func(t testing.TB, l []byte) { i := after(t, l, 6, `"sig":"`) + 20; l[i] = b64Swap(l[i]) }},
	{"envelope keyid", func(t testing.TB, l []byte) { i := after(t, l, 6, `"keyid":"`) + 7; l[i] = hexSwap(l[i]) }},
	{"envelope structure", func(t testing.TB, l []byte) { l[lineStart(l, 6)] = 'x' }},
	{"trailing newline", func(t testing.TB, l []byte) { l[len(l)-1] = ' ' }},
	{"newline inserted", func(t testing.TB, l []byte) { l[after(t, l, 6, `"payload":"`)+10] = '\n' }},
}

// TestCheckLogFlippedByte flips one byte at many places of one leaf of an
// export, at entries before, at and between checkpoints, and checks CheckLog
// names exactly that entry.
func TestCheckLogFlippedByte(t *testing.T) {
	f := buildStandardLog(t)
	clean := f.export()
	if _, err := checkExport(clean, f.opts(true)); err != nil {
		t.Fatalf("clean export: %v", err)
	}
	// Entry 0 is the genesis, 3 is mid-way between checkpoints 1 and 5,
	// 4 is the last under checkpoint 5, 6 (ECDSA-signed) is mid-way between
	// checkpoints 6 and 9, 8 is the last.
	for _, k := range []int{0, 3, 4, 6, 8} {
		for _, fl := range flips {
			for _, signatures := range []bool{true, false} {
				t.Run(fmt.Sprintf("entry %d/%s/signatures=%v", k, fl.name, signatures), func(t *testing.T) {
					e := splitExport(t, clean)
					leaf := e.leaf(k)
					before := bytes.Clone(leaf)
					fl.at(t, leaf)
					if n := countDiff(before, leaf); n != 1 {
						t.Fatalf("the flip changed %d bytes", n)
					}
					e.setLeaf(k, leaf)
					_, err := checkExport(e.bytes(), f.opts(signatures))
					if err == nil {
						t.Fatal("CheckLog accepted the altered export")
					}
					if got := badIndex(t, err); got != uint64(k) {
						t.Fatalf("CheckLog names entry %d, want %d: %v", got, k, err)
					}
				})
			}
		}
	}
}

func countDiff(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestCheckLogExportDamage(t *testing.T) {
	f := buildStandardLog(t)
	clean := f.export()
	otherLog := buildLogAt(t, verifiertest.Time.Add(time.Hour)) // same keys and origin, other records and times
	otherClean := otherLog.export()

	cases := []struct {
		name string
		edit func(e *exportLines) []byte
		want int // entry index; -1: any error that is not a *BadEntryError
	}{
		{"dropped entry line", func(e *exportLines) []byte {
			i := e.entryLine(3)
			e.lines = append(e.lines[:i], e.lines[i+1:]...)
			return e.bytes()
		}, 3},
		{"dropped first entry line", func(e *exportLines) []byte {
			i := e.entryLine(0)
			e.lines = append(e.lines[:i], e.lines[i+1:]...)
			return e.bytes()
		}, 0},
		{"swapped entry lines", func(e *exportLines) []byte {
			i := e.entryLine(5)
			e.lines[i], e.lines[i+1] = e.lines[i+1], e.lines[i]
			return e.bytes()
		}, 5},
		{"swapped leaves, line indexes kept", func(e *exportLines) []byte {
			a, b := e.leaf(2), e.leaf(3)
			e.setLeaf(2, b)
			e.setLeaf(3, a)
			return e.bytes()
		}, 2},
		{"duplicated entry line", func(e *exportLines) []byte {
			i := e.entryLine(6)
			e.lines = append(e.lines[:i+1], e.lines[i:]...)
			return e.bytes()
		}, 7},
		{"entry from another log with the same key", func(e *exportLines) []byte {
			e.setLeaf(4, splitExport(t, otherClean).leaf(4))
			return e.bytes()
		}, 4},
		{"entry reindexed", func(e *exportLines) []byte {
			en := e.entry(5)
			en.Index = 6
			e.setEntry(5, en)
			return e.bytes()
		}, 5},
		{"truncated mid-line", func(e *exportLines) []byte {
			b := e.bytes()
			end := bytes.Index(b, e.lines[e.entryLine(6)]) + 40
			return b[:end]
		}, 6},
		{"truncated at a line end", func(e *exportLines) []byte {
			e.lines = e.lines[:e.entryLine(7)]
			return e.bytes()
		}, 7},
		{"truncated, last newline missing", func(e *exportLines) []byte {
			b := e.bytes()
			return b[:len(b)-1]
		}, -2}, // a final line without its newline is still a complete line
		{"empty leaf", func(e *exportLines) []byte {
			e.setLeaf(2, nil)
			return e.bytes()
		}, 2},
		{"leaf not base64", func(e *exportLines) []byte {
			e.lines[e.entryLine(2)] = []byte(`{"index":2,"leaf":"***"}`)
			return e.bytes()
		}, 2},
		{"entry line not JSON", func(e *exportLines) []byte {
			e.lines[e.entryLine(2)] = []byte(`{"index":2,`)
			return e.bytes()
		}, 2},
		{"data after the last entry", func(e *exportLines) []byte {
			e.lines = append(e.lines, e.lines[e.entryLine(8)])
			return e.bytes()
		}, -1},
		{"header announces fewer entries", func(e *exportLines) []byte {
			e.header.Size = 8
			e.lines = e.lines[:len(e.lines)-1]
			e.setCheckpoints(e.checkpoints())
			return e.bytes()
		}, -1},
		{"header announces more entries", func(e *exportLines) []byte {
			e.header.Size = 10
			e.setCheckpoints(e.checkpoints())
			return e.bytes()
		}, 9},
		{"checkpoints dropped, entries kept", func(e *exportLines) []byte {
			// The tree is not checked against anything, but the chain and
			// records still are; an empty checkpoint list is allowed.
			e.setCheckpoints(nil)
			return e.bytes()
		}, -2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, signatures := range []bool{false, true} {
				data := c.edit(splitExport(t, clean))
				rep, err := checkExport(data, f.opts(signatures))
				switch {
				case c.want == -2:
					if err != nil {
						t.Fatalf("signatures=%v: %v", signatures, err)
					}
				case err == nil:
					t.Fatalf("signatures=%v: CheckLog accepted the damaged export: %+v", signatures, rep)
				case c.want == -1:
					var bad *audit.BadEntryError
					if errors.As(err, &bad) {
						t.Fatalf("signatures=%v: err = %v, want an error about the whole export", signatures, err)
					}
				default:
					if got := badIndex(t, err); got != uint64(c.want) {
						t.Fatalf("signatures=%v: CheckLog names entry %d, want %d: %v", signatures, got, c.want, err)
					}
				}
			}
		})
	}
}

func TestOpenExportRefuses(t *testing.T) {
	f := buildStandardLog(t)
	clean := f.export()
	e := splitExport(t, clean)
	for name, data := range map[string][]byte{
		"empty":                        nil,
		"not JSON":                     []byte("hello\n"),
		"wrong format":                 bytes.Replace(clean, []byte(audit.ExportFormat), []byte("evident-export/v9"), 1),
		"unknown header field":         bytes.Replace(clean, []byte(`{"format"`), []byte(`{"extra":1,"format"`), 1),
		"header only":                  e.lines[0],
		"truncated in the checkpoints": bytes.Join(e.lines[:2], []byte("\n")),
		"checkpoint line not JSON":     bytes.Replace(clean, e.lines[1], []byte(`{"checkpoint":`), 1),
	} {
		if _, err := audit.OpenExport(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: OpenExport accepted it", name)
		}
	}
}

// TestCheckLogCheckpoints alters the signed checkpoints.
func TestCheckLogCheckpoints(t *testing.T) {
	f := buildStandardLog(t)
	clean := f.export()
	stranger, err := checkpoint.NewSigner(testOrigin, verifiertest.NewKey(t, "ed25519").Priv.(ed25519.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	leaves := func(e *exportLines, n int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, e.leaf(i))
		}
		return out
	}
	var forged [32]byte
	copy(forged[:], bytes.Repeat([]byte{0x5a}, 32))

	cases := []struct {
		name string
		edit func(e *exportLines)
		want int // entry index; -1: an error that is not a *BadEntryError
	}{
		{"bad signature", func(e *exportLines) {
			cps := e.checkpoints()
			sig := bytes.LastIndex(cps[1], []byte(" ")) + 10
			cps[1][sig] = b64Swap(cps[1][sig])
			e.setCheckpoints(cps)
		}, -1},
		{"root changed, old signature", func(e *exportLines) {
			cps := e.checkpoints()
			i := bytes.IndexByte(cps[1], '\n') + 3 + 5
			cps[1][i] = b64Swap(cps[1][i])
			e.setCheckpoints(cps)
		}, -1},
		{"signed by another key", func(e *exportLines) {
			cps := e.checkpoints()
			cps[1] = signCheckpoint(t, stranger, 5, merkleRoot(leaves(e, 5)))
			e.setCheckpoints(cps)
		}, -1},
		{"forged root, signed by the log key", func(e *exportLines) {
			cps := e.checkpoints()
			cps[1] = signCheckpoint(t, f.signer, 5, forged)
			e.setCheckpoints(cps)
		}, 4},
		{"forged root of the latest checkpoint", func(e *exportLines) {
			cps := e.checkpoints()
			cps[2] = signCheckpoint(t, f.signer, 9, forged)
			e.setCheckpoints(cps)
		}, 8},
		{"root of another size", func(e *exportLines) {
			cps := e.checkpoints()
			cps[1] = signCheckpoint(t, f.signer, 7, merkleRoot(leaves(e, 5)))
			e.setCheckpoints(cps)
		}, 6},
		{"split view: a second checkpoint of the same size", func(e *exportLines) {
			e.setCheckpoints(append(e.checkpoints(), signCheckpoint(t, f.signer, 5, forged)))
		}, 4},
		{"checkpoint beyond the log", func(e *exportLines) {
			e.setCheckpoints(append(e.checkpoints(), signCheckpoint(t, f.signer, 12, forged)))
		}, -1},
		{"checkpoint of the empty log with a forged root", func(e *exportLines) {
			e.setCheckpoints(append(e.checkpoints(), signCheckpoint(t, f.signer, 0, forged)))
		}, -1},
		{"checkpoint of another origin", func(e *exportLines) {
			cps := e.checkpoints()
			cps[1] = bytes.Replace(cps[1], []byte(testOrigin+"\n"), []byte("evident.test/other\n"), 1)
			e.setCheckpoints(cps)
		}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := splitExport(t, clean)
			c.edit(e)
			for _, signatures := range []bool{false, true} {
				_, err := checkExport(e.bytes(), f.opts(signatures))
				if err == nil {
					t.Fatalf("signatures=%v: CheckLog accepted it", signatures)
				}
				if c.want == -1 {
					var bad *audit.BadEntryError
					if errors.As(err, &bad) {
						t.Fatalf("signatures=%v: err = %v, want an error about a checkpoint", signatures, err)
					}
					continue
				}
				if got := badIndex(t, err); got != uint64(c.want) {
					t.Fatalf("signatures=%v: CheckLog names entry %d, want %d: %v", signatures, got, c.want, err)
				}
			}
		})
	}
	t.Run("correct extra checkpoints are fine", func(t *testing.T) {
		e := splitExport(t, clean)
		e.setCheckpoints(append(e.checkpoints(),
			signCheckpoint(t, f.signer, 0, merkleRoot(nil)),
			signCheckpoint(t, f.signer, 7, merkleRoot(leaves(e, 7)))))
		rep, err := checkExport(e.bytes(), f.opts(true))
		if err != nil || rep.Checkpoints != 6 {
			t.Fatalf("%+v, %v", rep, err)
		}
	})
}

// TestCheckLogPinnedKey: the auditor pins the log key; the export's header
// is not trusted.
func TestCheckLogPinnedKey(t *testing.T) {
	f := buildStandardLog(t)
	clean := f.export()
	otherKey := verifiertest.NewKey(t, "ed25519").Priv.(ed25519.PrivateKey)
	sameOrigin, _ := checkpoint.NewSigner(testOrigin, otherKey)
	otherOrigin, _ := checkpoint.NewSigner("evident.test/other", f.logKey.Priv.(ed25519.PrivateKey))

	for name, opts := range map[string]audit.CheckOptions{
		"another key under the same origin": {Origin: testOrigin, LogKey: sameOrigin.VerifierKey()},
		"the same key under another origin": {Origin: "evident.test/other", LogKey: otherOrigin.VerifierKey()},
		"origin and key name disagree":      {Origin: "evident.test/other", LogKey: f.vkey},
		"no key":                            {Origin: testOrigin},
		"not a key":                         {Origin: testOrigin, LogKey: "evident.test/log+12345678+AAAA"},
	} {
		for _, signatures := range []bool{false, true} {
			opts.Signatures = signatures
			t.Run(fmt.Sprintf("%s/signatures=%v", name, signatures), func(t *testing.T) {
				if rep, err := checkExport(clean, opts); err == nil {
					t.Fatalf("CheckLog accepted the log under a key that is not its own: %+v", rep)
				}
				if rep, err := audit.CheckLog(context.Background(), f.snapshot(), opts); err == nil {
					t.Fatalf("CheckLog (snapshot) accepted the log under a key that is not its own: %+v", rep)
				}
			})
		}
	}

	// An export re-signed throughout by another key (checkpoints and all)
	// verifies only under that key, not under the pinned one.
	e := splitExport(t, clean)
	e.header.LogKey = sameOrigin.VerifierKey()
	e.setCheckpoints(e.checkpoints())
	e.rechain(sameOrigin)
	if _, err := checkExport(e.bytes(), f.opts(false)); err == nil {
		t.Fatal("CheckLog accepted checkpoints signed by another key")
	}
	// With that key pinned, the checkpoints verify but the genesis names
	// the real log key.
	opts := audit.CheckOptions{Origin: testOrigin, LogKey: sameOrigin.VerifierKey(), Signatures: true}
	_, err := checkExport(e.bytes(), opts)
	if got := badIndex(t, err); got != 0 {
		t.Fatalf("CheckLog names entry %d, want 0 (the genesis names another key): %v", got, err)
	}
	opts.Signatures = false
	if _, err := checkExport(e.bytes(), opts); err != nil {
		t.Fatalf("structure-only check of a consistently re-signed log: %v", err)
	}
}

// TestCheckLogRewrittenByLogKeyHolder: edits made consistent again by the
// holder of the log key (chain recomputed, checkpoints re-signed) pass the
// structural check; only re-verifying the records' signatures finds them.
func TestCheckLogRewrittenByLogKeyHolder(t *testing.T) {
	f := buildStandardLog(t)
	clean := f.export()
	stranger := verifiertest.NewKey(t, "ed25519")

	cases := []struct {
		name string
		k    int
		edit func(en *evidence.Entry)
	}{
		{"recorded signer renamed", 3, func(en *evidence.Entry) { en.Meta.Signer.Name = "ci" }},
		{"recorded signer swapped for another runner", 1, func(en *evidence.Entry) {
			en.Meta.Signer = evidence.Signer{Name: "apply", KeyID: f.keys["apply"].ID}
		}},
		{"recorded signer is the log", 6, func(en *evidence.Entry) {
			en.Meta.Signer = evidence.Signer{Name: verifier.LogSigner, KeyID: f.logKey.ID}
		}},
		{"genesis signer renamed", 0, func(en *evidence.Entry) { en.Meta.Signer.Name = "ci" }},
		{"record digest changed", 5, func(en *evidence.Entry) {
			en.Meta.RecordDigest = strings.Repeat("0", 64)
		}},
		{"envelope replaced by a stranger's", 2, func(en *evidence.Entry) {
			en.Envelope = verifiertest.Sign(t, stranger, verifiertest.Record(t, "CHG-X", verifiertest.Prod()))
			sum := sha256.Sum256(verifiertest.PAE(evidence.PayloadType, verifiertest.Record(t, "CHG-X", verifiertest.Prod())))
			en.Meta.RecordDigest = hex.EncodeToString(sum[:])
		}},
		{"envelope replaced by an out-of-scope record of a trusted runner", 7, func(en *evidence.Entry) {
			payload := verifiertest.PayloadOf(t, verifiertest.Transition(evidence.KindSyncSucceeded, "CHG-X", evidence.Target{Environment: "prod", Cluster: "prod-us-1"}))
			en.Envelope = verifiertest.Sign(t, f.keys["argocd"], payload)
			sum := sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload))
			en.Meta.RecordDigest = hex.EncodeToString(sum[:])
		}},
		{"bootstrap replaced by a runner record", 0, func(en *evidence.Entry) {
			payload := verifiertest.Record(t, "CHG-X", verifiertest.Prod())
			en.Envelope = verifiertest.Sign(t, f.keys["ci"], payload)
			sum := sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload))
			en.Meta.RecordDigest = hex.EncodeToString(sum[:])
			en.Meta.Signer = evidence.Signer{Name: "ci", KeyID: f.keys["ci"].ID}
		}},
		{"log-key-signed change record", 4, func(en *evidence.Entry) {
			payload := verifiertest.Record(t, "CHG-X", verifiertest.Prod())
			en.Envelope = verifiertest.Sign(t, f.logKey, payload)
			sum := sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload))
			en.Meta.RecordDigest = hex.EncodeToString(sum[:])
			en.Meta.Signer = evidence.Signer{Name: verifier.LogSigner, KeyID: f.logKey.ID}
		}},
		{"genesis names another log key", 0, func(en *evidence.Entry) {
			resignBootstrap(t, f, en, func(b *evidence.Bootstrap) { b.LogKey = newLogFixtureKeyless(t) })
		}},
		{"genesis names another origin", 0, func(en *evidence.Entry) {
			resignBootstrap(t, f, en, func(b *evidence.Bootstrap) { b.LogOrigin = "evident.test/other" })
		}},
		{"genesis trust digest does not match its trust", 0, func(en *evidence.Entry) {
			resignBootstrap(t, f, en, func(b *evidence.Bootstrap) { b.TrustDigest = strings.Repeat("b", 64) })
		}},
		{"second bootstrap", 5, func(en *evidence.Entry) {
			e0 := splitExport(t, clean).entry(0)
			en.Envelope, en.Meta = e0.Envelope, e0.Meta
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := splitExport(t, clean)
			en := e.entry(c.k)
			c.edit(en)
			e.setEntry(c.k, en)
			e.rechain(f.signer)
			if _, err := checkExport(e.bytes(), f.opts(false)); err != nil {
				t.Fatalf("the rewrite is not consistent: %v", err)
			}
			_, err := checkExport(e.bytes(), f.opts(true))
			if err == nil {
				t.Fatal("CheckLog with Signatures accepted the rewritten log")
			}
			if got := badIndex(t, err); got != uint64(c.k) {
				t.Fatalf("CheckLog names entry %d, want %d: %v", got, c.k, err)
			}
		})
	}

	t.Run("two bad entries: the first is named", func(t *testing.T) {
		for range 5 { // the workers race; the answer must not
			e := splitExport(t, clean)
			for _, k := range []int{7, 2, 5} {
				en := e.entry(k)
				en.Meta.Signer.Name = "someone"
				e.setEntry(k, en)
			}
			e.rechain(f.signer)
			opts := f.opts(true)
			opts.Workers = 4
			_, err := checkExport(e.bytes(), opts)
			if got := badIndex(t, err); got != 2 {
				t.Fatalf("CheckLog names entry %d, want 2: %v", got, err)
			}
		}
	})
}

// trustHistoryLog writes a log whose trust changes at a restart:
//
//	0 bootstrap | 1 apply | 2 ci (prod) || 3 trust.updated | 4 newcomer | 5 ci (staging)
//
// The new trust drops "apply", adds "newcomer" and narrows ci to staging. It
// returns the fixture and verifiers for the old and the new trust.
func trustHistoryLog(t *testing.T) (f *logFixture, old, current *verifier.Verifier) {
	f = newLogFixture(t)
	f.open()
	f.ensureTrust(f.trust)
	old = f.verifierFor(f.trust)
	f.postAs(old, "apply", evidence.KindApplyCompleted, evidence.Target{Environment: "prod", Stack: verifiertest.StackA})
	f.postAs(old, "ci", evidence.KindPlanCreated, verifiertest.Prod())
	f.close()

	newTrust := verifier.TrustConfig{Runners: []verifier.Runner{
		verifiertest.Runner("ci", f.keys["ci"], "staging"),
		{Name: "argocd", PublicKey: f.keys["argocd"].PubPEM, Scope: verifier.Scope{Environments: []string{"prod"}, Clusters: []string{clusterC}}},
		verifiertest.Runner("newcomer", f.keys["newcomer"], "prod"),
	}}
	f.open()
	f.ensureTrust(newTrust)
	if f.log.Size() != 4 {
		t.Fatalf("size %d after the trust change, want 4", f.log.Size())
	}
	current = f.verifierFor(newTrust)
	f.postAs(current, "newcomer", evidence.KindPlanCreated, verifiertest.Prod())
	f.postAs(current, "ci", evidence.KindPlanCreated, evidence.Target{Environment: "staging"})
	return f, old, current
}

// TestCheckLogTrustHistory: records are checked against the trust in force
// when they were appended, as the log itself records it.
func TestCheckLogTrustHistory(t *testing.T) {
	t.Run("clean", func(t *testing.T) {
		f, _, _ := trustHistoryLog(t)
		if _, err := checkExport(f.export(), f.opts(true)); err != nil {
			t.Fatalf("the log with a trust change: %v", err)
		}
	})

	// A server still running with the old trust (or a forger) appends what
	// the recorded trust no longer allows: each is named.
	for name, post := range map[string]func(f *logFixture, old *verifier.Verifier){
		"record by a removed runner": func(f *logFixture, old *verifier.Verifier) {
			f.postAs(old, "apply", evidence.KindApplyCompleted, evidence.Target{Environment: "prod", Stack: verifiertest.StackA})
		},
		"record outside a narrowed scope": func(f *logFixture, old *verifier.Verifier) {
			f.postAs(old, "ci", evidence.KindPlanCreated, verifiertest.Prod())
		},
	} {
		t.Run(name, func(t *testing.T) {
			f, old, current := trustHistoryLog(t)
			post(f, old)
			f.postAs(current, "newcomer", evidence.KindPlanCreated, verifiertest.Prod()) // a good one after it
			_, err := audit.CheckLog(context.Background(), f.snapshot(), f.opts(true))
			if got := badIndex(t, err); got != 6 {
				t.Fatalf("CheckLog names entry %d, want 6: %v", got, err)
			}
			if !errors.Is(err, verifier.ErrUntrusted) && !errors.Is(err, verifier.ErrOutOfScope) {
				t.Errorf("err = %v, want it to say the signer is untrusted or out of scope", err)
			}
			if _, err := audit.CheckLog(context.Background(), f.snapshot(), f.opts(false)); err != nil {
				t.Fatalf("structure-only check: %v", err)
			}
		})
	}

	t.Run("record by a runner before it was trusted", func(t *testing.T) {
		g := newLogFixture(t)
		g.open()
		g.ensureTrust(g.trust)
		both := append(slices.Clone(g.trust.Runners), verifiertest.Runner("newcomer", g.keys["newcomer"], "prod"))
		v := g.verifierFor(verifier.TrustConfig{Runners: both})
		g.postAs(v, "newcomer", evidence.KindPlanCreated, verifiertest.Prod()) // 1: not yet trusted by the log
		g.ensureTrust(verifier.TrustConfig{Runners: both})                     // 2
		g.postAs(v, "newcomer", evidence.KindPlanCreated, verifiertest.Prod()) // 3: fine
		_, err := audit.CheckLog(context.Background(), g.snapshot(), g.opts(true))
		if got := badIndex(t, err); got != 1 {
			t.Fatalf("CheckLog names entry %d, want 1: %v", got, err)
		}
	})

	t.Run("trust.updated with a digest that does not match", func(t *testing.T) {
		f, _, _ := trustHistoryLog(t)
		e := splitExport(t, f.export())
		en := e.entry(3)
		st, err := en.Statement()
		if err != nil {
			t.Fatal(err)
		}
		if st.Predicate.Kind != evidence.KindTrustUpdated {
			t.Fatalf("entry 3 is %s", st.Predicate.Kind)
		}
		st.Predicate.Trust.Digest = strings.Repeat("a", 64)
		payload, _ := json.Marshal(st)
		en.Envelope = verifiertest.Sign(t, f.logKey, payload)
		sum := sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload))
		en.Meta.RecordDigest = hex.EncodeToString(sum[:])
		e.setEntry(3, en)
		e.rechain(f.signer)
		_, err = checkExport(e.bytes(), f.opts(true))
		if got := badIndex(t, err); got != 3 {
			t.Fatalf("CheckLog names entry %d, want 3: %v", got, err)
		}
	})
}

// resignBootstrap edits the bootstrap record of en and signs it again with
// the log key, as the key's holder could.
func resignBootstrap(t *testing.T, f *logFixture, en *evidence.Entry, edit func(*evidence.Bootstrap)) {
	t.Helper()
	st, err := en.Statement()
	if err != nil || st.Predicate.Bootstrap == nil {
		t.Fatalf("not a bootstrap entry: %v", err)
	}
	edit(st.Predicate.Bootstrap)
	payload, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	en.Envelope = verifiertest.Sign(t, f.logKey, payload)
	sum := sha256.Sum256(verifiertest.PAE(evidence.PayloadType, payload))
	en.Meta.RecordDigest = hex.EncodeToString(sum[:])
}

func TestCheckLogGenesisMustBeBootstrap(t *testing.T) {
	f := newLogFixture(t)
	f.open()
	v := f.verifierFor(f.trust)
	f.postAs(v, "ci", evidence.KindPlanCreated, verifiertest.Prod())
	_, err := audit.CheckLog(context.Background(), f.snapshot(), f.opts(true))
	if got := badIndex(t, err); got != 0 {
		t.Fatalf("CheckLog names entry %d, want 0: %v", got, err)
	}
}

func TestCheckLogCanceled(t *testing.T) {
	f := buildStandardLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := audit.CheckLog(ctx, f.snapshot(), f.opts(true)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestLogPublicKey(t *testing.T) {
	f := newLogFixture(t)
	pub, nv, err := audit.LogPublicKey(f.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(f.logKey.Priv.Public()) || nv.Name() != testOrigin {
		t.Errorf("LogPublicKey = %x, %q", pub, nv.Name())
	}
	for _, bad := range []string{"", "origin", "origin+1234+", f.vkey + "x", strings.Replace(f.vkey, "+", "-", 1)} {
		if _, _, err := audit.LogPublicKey(bad); err == nil {
			t.Errorf("LogPublicKey(%q) succeeded", bad)
		}
	}
}
