package ledger_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"evident.dev/evident/ledger"
)

// TestFreeSpaceReserve: while the log's filesystem has less free space
// than the reserve, appends fail with ErrStorage naming the cause and
// nothing is written; with the reserve met the same records are appended.
// (No filesystem here has an exabyte free: asking for one is a disk that is
// always "nearly full".)
func TestFreeSpaceReserve(t *testing.T) {
	dir := t.TempDir()
	recs := makeRecords(t, 0, 3)
	l := openLog(t, dir, func(c *ledger.Config) { c.MinFreeBytes = 1 << 60 })
	before := l.Size()
	_, err := l.Append(context.Background(), recs[0])
	if !errors.Is(err, ledger.ErrStorage) || !strings.Contains(err.Error(), "disk nearly full") {
		t.Fatalf("Append below the reserve = %v, want ErrStorage: disk nearly full", err)
	}
	if l.Size() != before {
		t.Fatalf("the log grew from %d to %d below the reserve", before, l.Size())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	rcs := appendAll(t, l, recs)
	if rcs[0].Index != before {
		t.Fatalf("first record appended at %d, want %d: the refused batch left something behind", rcs[0].Index, before)
	}
	checkChain(t, leaves(t, l))
}
