package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"evident.dev/evident/evidence"
)

// TestReindexOldLog: a log whose indexes an older TermsFor built (here: the
// version key is gone and only change terms are stored) has every index of
// the current definition after it opens, and queries on new terms find its
// old entries.
func TestReindexOldLog(t *testing.T) {
	example, err := os.ReadFile("../evidence/testdata/kinds/plan.created.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := internalLog(t, dir, nil)
	var terms [][]Term
	for i := range 30 {
		stJSON := strings.ReplaceAll(string(example), "CHG-2026-07-03-1421", "CHG-R-"+string(rune('a'+i)))
		st, err := evidence.Decode([]byte(stJSON))
		if err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(stJSON)); err != nil {
			t.Fatal(err)
		}
		env, _ := json.Marshal(map[string]any{"payloadType": evidence.PayloadType, "payload": base64.StdEncoding.EncodeToString(compact.Bytes()), "signatures": []any{}})
		meta := evidence.EntryMeta{Findings: []evidence.Finding{{Code: "approval.missing"}}}
		rec := Record{Envelope: env, Digest: [32]byte{byte(i), 1}, Findings: meta.Findings,
			Terms: []Term{{Name: TermChange, Value: st.Predicate.ChangeID}}} // an "old" index: change only
		if _, err := l.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		terms = append(terms, TermsFor(st, meta))
	}
	// Make it look like a log from before index versions.
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(keyTermsVersion)) }); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := internalLog(t, dir, nil)
	snap, err := l2.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var want IndexDigest
	for i, ts := range terms {
		want.AddTerms(uint64(i), snap.Indexed(uint64(i), ts))
	}
	have, err := snap.Indexes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if have != want {
		t.Fatalf("after reopening: %d index keys, the entries define %d", have.Count, want.Count)
	}
	idx, err := l2.Lookup(context.Background(), Query{Name: TermFinding, Value: "approval.missing", Limit: 100})
	if err != nil || len(idx) != 30 {
		t.Fatalf("a new term finds %d old entries (%v), want 30", len(idx), err)
	}
}
