package ledger

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"
)

// TestLowTreeHashes: hashes below minStoredLevel are not stored but every
// proof and root still comes out right, from the leaves; a log written
// before, which stores them, opens from its old head, and verification
// checks the low hashes it holds without requiring them.
func TestLowTreeHashes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := internalLog(t, dir, nil)
	for i := range 37 {
		if _, err := l.Append(ctx, rawRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	var leafHashes [][32]byte
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	refresh := func(l *Log) {
		leafHashes, stored = nil, nil
		for i := range l.Size() {
			leaf, err := l.Leaf(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			lh := tlog.RecordHash(leaf)
			leafHashes = append(leafHashes, lh)
			hs, err := tlog.StoredHashesForRecordHash(int64(i), lh, reader)
			if err != nil {
				t.Fatal(err)
			}
			stored = append(stored, hs...)
		}
	}
	checkProofs := func(l *Log) {
		t.Helper()
		size := l.Size()
		root, err := tlog.TreeHash(int64(size), reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := l.RootHash(ctx, size); err != nil || got != root {
			t.Fatalf("root of %d: %x, %v; want %x", size, got, err, root)
		}
		for i := range size {
			p, err := l.InclusionProof(ctx, i, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckRecord(toTlog(p), int64(size), root, int64(i), leafHashes[i]); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, size, err)
			}
		}
		for from := uint64(1); from < size; from += 5 {
			p, err := l.ConsistencyProof(ctx, from, size)
			if err != nil {
				t.Fatal(err)
			}
			old, _ := tlog.TreeHash(int64(from), reader)
			if err := tlog.CheckTree(toTlog(p), int64(size), root, int64(from), old); err != nil {
				t.Fatalf("consistency of %d with %d: %v", from, size, err)
			}
		}
	}
	lowKeys := func(l *Log) int {
		n := 0
		err := l.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixHash}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if level, _ := tlog.SplitStoredHashIndex(int64(binary.BigEndian.Uint64(it.Item().Key()[1:]))); level < minStoredLevel {
					n++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	checkTree := func(l *Log) error {
		snap, err := l.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Close()
		return snap.CheckTree(ctx, leafHashes)
	}

	refresh(l)
	checkProofs(l)
	if n := lowKeys(l); n != 0 {
		t.Fatalf("%d tree hashes below level %d stored", n, minStoredLevel)
	}
	if err := checkTree(l); err != nil {
		t.Fatal(err)
	}

	// A log from before: every level stored, and a head without the low
	// frontier hashes.
	err := l.db.Update(func(txn *badger.Txn) error {
		for idx, h := range stored {
			if level, _ := tlog.SplitStoredHashIndex(int64(idx)); level < minStoredLevel {
				if err := txn.Set(u64Key(prefixHash, uint64(idx)), h[:]); err != nil {
					return err
				}
			}
		}
		return txn.Set([]byte(keyHead), l.durable().encode(frontier{})[:headLen])
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = internalLog(t, dir, nil)
	if lowKeys(l) == 0 {
		t.Fatal("the old log's low hashes are gone")
	}
	if err := checkTree(l); err != nil {
		t.Fatalf("an old log with every level stored: %v", err)
	}
	for i := 37; i < 70; i++ {
		if _, err := l.Append(ctx, rawRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	refresh(l)
	checkProofs(l)
	if err := checkTree(l); err != nil {
		t.Fatal(err)
	}
	// A damaged low hash an old log still holds is reported.
	bad := tlog.StoredHashIndex(1, 3)
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set(u64Key(prefixHash, uint64(bad)), make([]byte, 32)) }); err != nil {
		t.Fatal(err)
	}
	if err := checkTree(l); err == nil || !strings.Contains(err.Error(), "level 1, node 3") {
		t.Fatalf("a damaged low hash: %v", err)
	}
}

// toTlog is the inverse of hashes: a proof as tlog checks it.
func toTlog(p [][32]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(p))
	for i, h := range p {
		out[i] = h
	}
	return out
}
