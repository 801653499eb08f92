package ledger_test

import "testing"

// TestDedupeAcrossRestart: the writer's in-memory digest filter is rebuilt
// from the index when the log opens, so a record posted again after a
// restart is still answered with its original entry, not appended twice.
func TestDedupeAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	recs := makeRecords(t, 0, 50)
	l := openLog(t, dir, nil)
	first := appendAll(t, l, recs)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	again := appendAll(t, l, recs)
	for i, r := range again {
		if !r.Duplicate || r.Index != first[i].Index || r.EntryHash != first[i].EntryHash {
			t.Fatalf("record %d posted again after a restart: index %d duplicate %v, want the original entry %d",
				i, r.Index, r.Duplicate, first[i].Index)
		}
	}
	fresh := appendAll(t, l, makeRecords(t, 50, 10))
	for i, r := range fresh {
		if r.Duplicate || r.Index != uint64(50+i) {
			t.Fatalf("new record %d: index %d duplicate %v", i, r.Index, r.Duplicate)
		}
	}
	if l.Size() != 60 {
		t.Fatalf("size %d, want 60", l.Size())
	}
}
