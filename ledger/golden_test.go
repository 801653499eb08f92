package ledger_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The golden log: five entries appended one by one at a fixed time, with
// fixed keys, then closed. testdata/golden.seg is its segment file and
// testdata/golden.checkpoint its final signed checkpoint. Both are on-disk
// and wire formats: a change to them is a compatibility break.
const (
	goldenSegment    = "testdata/golden.seg"
	goldenCheckpoint = "testdata/golden.checkpoint"
	goldenEntries    = 5
)

// writeGolden appends recs to a fresh log the golden way and returns its
// segment file and final checkpoint.
func writeGolden(t *testing.T, recs []ledger.Record) (seg, cp []byte) {
	t.Helper()
	dir := t.TempDir()
	clock := &manualClock{now: baseTime}
	l := openLog(t, dir, func(c *ledger.Config) { c.Clock = clock.Now; c.CheckpointInterval = time.Hour })
	appendAll(t, l, recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	seg, err = os.ReadFile(filepath.Join(dir, "entries", "000000000000.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return seg, cp
}

func TestGolden(t *testing.T) {
	if *update {
		seg, cp := writeGolden(t, makeRecords(t, 0, goldenEntries))
		if err := os.WriteFile(goldenSegment, seg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenCheckpoint, cp, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seg, err := os.ReadFile(goldenSegment)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(goldenCheckpoint)
	if err != nil {
		t.Fatal(err)
	}

	// The committed log opens: its entries are replayed from the segment
	// file alone, and the checkpoint signed for them is the committed one.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "entries"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "entries", "000000000000.seg"), seg, 0o600); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, nil)
	if l.Size() != goldenEntries {
		t.Fatalf("golden log opens with %d entries, want %d", l.Size(), goldenEntries)
	}
	waitFor(t, "the checkpoint of the replayed golden log", func() bool { return l.CheckpointSize() == goldenEntries })
	if got := must(l.Checkpoint()); !bytes.Equal(got, cp) {
		t.Fatalf("checkpoint of the replayed golden log:\n%s\nwant:\n%s", got, cp)
	}
	c := parseCheckpoint(t, cp)
	root := must(l.RootHash(t.Context(), goldenEntries))
	if c.Size != goldenEntries || !bytes.Equal(c.Hash, root[:]) {
		t.Fatalf("golden checkpoint (%d, %x) does not sign the golden log's root %x", c.Size, c.Hash, root)
	}
	ls := leaves(t, l)
	checkChain(t, ls)

	// Appending the same records the same way writes the same bytes.
	var recs []ledger.Record
	for _, leaf := range ls {
		e := must(evidence.ParseLeaf(leaf))
		if !e.ReceivedAt.Equal(baseTime) {
			t.Fatalf("golden entry %d received at %v", e.Index, e.ReceivedAt)
		}
		var rec ledger.Record
		rec.Envelope = e.Envelope
		if _, err := hex.Decode(rec.Digest[:], []byte(e.Meta.RecordDigest)); err != nil {
			t.Fatal(err)
		}
		rec.Signer, rec.Findings = e.Meta.Signer, e.Meta.Findings
		rec.Terms = ledger.TermsFor(must(e.Statement()), e.Meta)
		recs = append(recs, rec)
	}
	seg2, cp2 := writeGolden(t, recs)
	if !bytes.Equal(seg2, seg) {
		t.Fatalf("appending the golden records wrote a different segment file (%d bytes, golden %d)", len(seg2), len(seg))
	}
	if !bytes.Equal(cp2, cp) {
		t.Fatalf("appending the golden records signed a different checkpoint:\n%s\nwant:\n%s", cp2, cp)
	}
}
