package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// TestDigestFilter: every digest added is reported, across more than one
// block, and the false-positive rate stays near the 1% it is sized for.
func TestDigestFilter(t *testing.T) {
	digest := func(i uint64) [sha256.Size]byte {
		return sha256.Sum256(binary.BigEndian.AppendUint64(nil, i))
	}
	var f digestFilter
	n := uint64(filterBlockEntries + filterBlockEntries/2)
	for i := range n {
		f.add(digest(i))
	}
	if len(f.blocks) != 2 {
		t.Fatalf("%d blocks for %d digests, want 2", len(f.blocks), n)
	}
	for i := uint64(0); i < n; i += 97 {
		if !f.mayContain(digest(i)) {
			t.Fatalf("digest %d was added but the filter does not have it", i)
		}
	}
	const tries = 200000
	fp := 0
	for i := n; i < n+tries; i++ {
		if f.mayContain(digest(i)) {
			fp++
		}
	}
	// Two blocks, one full (about 0.8%) and one half full (far less).
	if rate := float64(fp) / tries; rate > 0.015 {
		t.Fatalf("false-positive rate %.4f, want at most 0.015", rate)
	}
	var none *digestFilter
	if !none.mayContain(digest(1)) {
		t.Fatal("a nil filter must answer maybe, so the index is asked")
	}
}
