package ledger

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestOffsetsRoundTrip: both encodings of a chunk's offsets decode to what
// was encoded and answer membership exactly.
func TestOffsetsRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 2, bitmapLen/2 - 1, bitmapLen / 2, chunkSize} {
		var offs []uint16
		for i := range n {
			offs = append(offs, uint16(i*chunkSize/max(n, 1)))
		}
		v := appendOffsets(nil, offs)
		if wantBitmap := 2*n >= bitmapLen; (len(v) == bitmapLen) != wantBitmap {
			t.Errorf("%d offsets: %d bytes", n, len(v))
		}
		got, err := decodeOffsets(nil, v)
		if err != nil || !slices.Equal(got, offs) {
			t.Fatalf("%d offsets: decoded %d (%v)", n, len(got), err)
		}
		for o := range uint16(chunkSize) {
			has, err := hasOffset(v, o)
			if _, want := slices.BinarySearch(offs, o); err != nil || has != want {
				t.Fatalf("%d offsets: has(%d) = %v (%v), want %v", n, o, has, err, want)
			}
		}
	}
}

// FuzzDecodeOffsets: a damaged chunk value gives an error or offsets that
// membership agrees with, never a panic.
func FuzzDecodeOffsets(f *testing.F) {
	f.Add(appendOffsets(nil, []uint16{1, 5, 4095}))
	f.Add(make([]byte, bitmapLen))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, v []byte) {
		offs, err := decodeOffsets(nil, v)
		if err != nil {
			return
		}
		for _, o := range offs {
			if o >= chunkSize {
				continue // a list may name offsets beyond the chunk; readers add them to its start
			}
			if ok, err := hasOffset(v, o); err != nil || (!ok && slices.IsSorted(offs)) {
				t.Fatalf("decoded offset %d is not a member (%v)", o, err)
			}
		}
	})
}

// TestStaleChunk: a chunk whose tag is not the log's (written for a batch
// whose commit then failed) is read as absent, by searches and by the
// index digest `evident verify` compares; one with the log's tag is read.
func TestStaleChunk(t *testing.T) {
	l := internalLog(t, t.TempDir(), nil)
	var wg sync.WaitGroup
	var seventh sync.Map // the change of entry 7
	for g := range 64 {
		wg.Go(func() {
			for i := g; i < chunkSize+10; i += 64 {
				r, err := l.Append(t.Context(), rawRecord(i))
				if err != nil {
					t.Error(err)
				}
				if r.Index == 7 {
					seventh.Store("change", rawRecord(i).Terms[0].Value)
				}
			}
		})
	}
	wg.Wait()
	change, _ := seventh.Load("change")
	if len(l.tags) != 1 {
		t.Fatalf("%d complete chunks, want 1", len(l.tags))
	}
	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	before, err := snap.Indexes(t.Context())
	snap.Close()
	if err != nil || before.Count != chunkSize {
		t.Fatalf("index digest of %d postings (%v), want %d: the complete chunk's", before.Count, err, chunkSize)
	}

	write := func(value string, tag uint64) {
		v := binary.BigEndian.AppendUint64(nil, tag)
		v = appendOffsets(v, []uint16{7})
		if err := l.db.Update(func(txn *badger.Txn) error {
			tp := termPrefix(TermChange, value)
			if err := txn.Set(firstKey(tp), binary.BigEndian.AppendUint64(nil, 0)); err != nil {
				return err
			}
			return txn.Set(chunkKey(tp, 0), v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	write("stale", l.tags[0]^1)
	write("current", l.tags[0])
	for value, want := range map[string]int{"stale": 0, "current": 1} {
		got, err := l.Lookup(t.Context(), Query{Name: TermChange, Value: value})
		if err != nil || len(got) != want {
			t.Errorf("Lookup %s: %v (%v), want %d entries", value, got, err, want)
		}
		res, err := l.Search(t.Context(), Search{Driver: Query{Name: TermChange, Value: change.(string)}, Must: []Term{{Name: TermChange, Value: value}}})
		if err != nil || len(res.Hits) != want {
			t.Errorf("Search must %s: %v (%v), want %d hits", value, res.Hits, err, want)
		}
	}
	snap, err = l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	after, err := snap.Indexes(t.Context())
	if err != nil || after.Count != before.Count+1 {
		t.Fatalf("index digest of %d postings after a stale and a current chunk (%v), want %d", after.Count, err, before.Count+1)
	}

	// Without its first-chunk key a term's chunks are never walked:
	// verify's index check says so.
	if err := l.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(firstKey(termPrefix(TermChange, "current")))
	}); err != nil {
		t.Fatal(err)
	}
	snap2, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap2.Close()
	if _, err := snap2.Indexes(t.Context()); err == nil || !strings.Contains(err.Error(), "no first-chunk key") {
		t.Fatalf("a term's first-chunk key removed: %v", err)
	}
}
