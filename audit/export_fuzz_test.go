package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"

	"evident.dev/evident/audit"
	"evident.dev/evident/checkpoint"
	"evident.dev/evident/verifier/verifiertest"
)

// FuzzOpenExport: reading and checking an arbitrary export never panics,
// reads no more than the input, names entries inside the log, and accepts
// only what the pinned log key signed.
func FuzzOpenExport(f *testing.F) {
	fx := newLogFixture(f)
	clean := goldenExport(f)
	opts := fx.opts(true)
	opts.Workers = 1
	opts.KeepLeafHashes = true
	var realLeafHashes [][32]byte
	golden := splitExport(f, clean)
	for i := range int(golden.header.Size) {
		realLeafHashes = append(realLeafHashes, [32]byte(rfc6962.DefaultHasher.HashLeaf(golden.leaf(i))))
	}

	f.Add(clean)
	e := splitExport(f, clean)
	f.Add(bytes.Join(e.lines[:1+e.header.Checkpoints+3], []byte("\n")))
	f.Add(clean[:len(clean)/2])
	f.Add(e.lines[0])
	e.setCheckpoints(nil)
	f.Add(e.bytes())
	f.Add([]byte(`{"format":"evident-export/v1","origin":"evident.test/log","logKey":"","size":18446744073709551615,"checkpoints":2147483647}` + "\n"))
	f.Add([]byte(`{"format":"evident-export/v1","size":1,"checkpoints":0}` + "\n" + `{"index":0,"leaf":"ZXZpZGVudC5kZXYvZW50cnkvdjEK"}` + "\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		ex, err := audit.OpenExport(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(ex.Header.LogKey) > len(data) {
			t.Fatal("header longer than the input")
		}
		rep, err := audit.CheckLog(context.Background(), ex, opts)
		if err != nil {
			var bad *audit.BadEntryError
			if errors.As(err, &bad) && bad.Index > ex.Header.Size {
				t.Fatalf("CheckLog names entry %d of an export of %d: %v", bad.Index, ex.Header.Size, err)
			}
			return
		}
		if rep.Size != ex.Header.Size || rep.Signatures != rep.Size {
			t.Fatalf("accepted: size %d, %d signatures; the header says %d", rep.Size, rep.Signatures, ex.Header.Size)
		}
		// What the log key signed is the real log: every entry under the
		// latest checkpoint is the real one.
		if rep.CheckpointSize > uint64(len(realLeafHashes)) {
			t.Fatalf("accepted a checkpoint of %d entries", rep.CheckpointSize)
		}
		for i := range rep.CheckpointSize {
			if rep.LeafHashes[i] != realLeafHashes[i] {
				t.Fatalf("accepted entry %d, under a signed checkpoint, that is not the log's", i)
			}
		}
	})
}

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

const goldenPath = "testdata/standard-export.jsonl"

// goldenExport is the export of buildStandardLog committed as a test vector:
// the keys are fixed, so it verifies under the fixture's pinned log key. With
// -update it is written anew.
func goldenExport(t testing.TB) []byte {
	t.Helper()
	if *update {
		data := buildStandardLog(t).export()
		if err := os.WriteFile(goldenPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenExport -update to write it)", err)
	}
	return data
}

// TestGoldenExport: an export written by an earlier version keeps verifying.
// If the entry or record format changes on purpose, rewrite it with -update.
func TestGoldenExport(t *testing.T) {
	fx := newLogFixture(t)
	data := goldenExport(t)
	rep, err := checkExport(data, fx.opts(true))
	if err != nil {
		t.Fatalf("the committed export no longer verifies: %v", err)
	}
	if rep.Size != 9 || rep.Checkpoints != 4 || rep.Signatures != 9 {
		t.Errorf("report %+v", rep)
	}
	if _, err := checkExport(data, audit.CheckOptions{Origin: testOrigin, LogKey: newLogFixtureKeyless(t)}); err == nil {
		t.Error("the committed export verifies under another log key")
	}
}

// newLogFixtureKeyless returns a note verifier key of another key under the
// fixture's origin.
func newLogFixtureKeyless(t testing.TB) string {
	t.Helper()
	k := verifiertest.FixedKey(t, "ed25519", "not the log")
	s, err := checkpoint.NewSigner(testOrigin, k.Priv.(ed25519.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return s.VerifierKey()
}

// endlessReader yields one byte forever, counting what was read.
type endlessReader struct {
	b byte
	n int64
}

func (r *endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.b
	}
	r.n += int64(len(p))
	return len(p), nil
}

// TestOpenExportBoundedMemory: a line without end is refused once it passes
// the line limit, without reading on or holding more than about that much.
func TestOpenExportBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 64 MiB")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := &endlessReader{b: 'a'}
	_, err := audit.OpenExport(r)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, bufio.ErrTooLong) {
		t.Fatalf("err = %v, want bufio.ErrTooLong", err)
	}
	if r.n > 80<<20 {
		t.Errorf("read %d bytes of an endless line", r.n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("allocated %d MiB for one line", alloc>>20)
	}

	// Counts in the header allocate nothing by themselves.
	hdr := `{"format":"evident-export/v1","origin":"o","logKey":"k","size":18446744073709551615,"checkpoints":2147483647}` + "\n"
	runtime.ReadMemStats(&before)
	ex, err := audit.OpenExport(strings.NewReader(hdr))
	runtime.ReadMemStats(&after)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("OpenExport = %+v, %v; want a truncation error", ex, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("allocated %d MiB for a header", alloc>>20)
	}
}
