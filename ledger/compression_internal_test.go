package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// TestZSTDTablesStillRead: logs written before the index moved to Snappy
// hold ZSTD tables. Badger reads each table with the compression its
// manifest records, and the start-up damage check accepts them, so such a
// log opens and answers as before.
func TestZSTDTablesStillRead(t *testing.T) {
	dir := t.TempDir()
	l := internalLog(t, dir, nil)
	const n = 5000
	for i := range n {
		if _, err := l.Append(context.Background(), rawRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite the index as the previous version wrote it: every key copied
	// into a Badger of ZSTD tables, which then takes its place.
	quiet := slog.New(slog.DiscardHandler)
	src, err := openIndex(badgerOptions(Config{Dir: dir, CacheMB: 8, Logger: quiet}), dir)
	if err != nil {
		t.Fatal(err)
	}
	old := t.TempDir()
	dst, err := badger.Open(badgerOptions(Config{Dir: old, CacheMB: 8, Logger: quiet}).WithCompression(options.ZSTD))
	if err != nil {
		t.Fatal(err)
	}
	wb := dst.NewWriteBatch()
	err = src.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err == nil {
				err = wb.Set(it.Item().KeyCopy(nil), v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err = errors.Join(err, wb.Flush(), src.Close(), dst.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(old, "index"), filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	tables, err := manifestTables(filepath.Join(dir, "index"), badgerOptions(Config{Dir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	zstd := 0
	for _, tm := range tables {
		if tm.Compression == options.ZSTD {
			zstd++
		}
	}
	if zstd == 0 {
		t.Fatalf("none of %d tables is ZSTD-compressed; the test does not test what it says", len(tables))
	}

	l2 := internalLog(t, dir, nil)
	if l2.Size() != n {
		t.Fatalf("size %d after reopening, want %d", l2.Size(), n)
	}
	// Entries of sealed chunks: the open chunk is rebuilt from the segments,
	// where rawRecord's terms are not.
	for _, i := range []int{0, 1234, chunkSize - 1} {
		got, err := l2.Lookup(context.Background(), Query{Name: TermChange, Value: fmt.Sprint("CHG-", i)})
		if err != nil || len(got) != 1 || got[0] != uint64(i) {
			t.Fatalf("lookup of record %d in a log with ZSTD tables: %v, %v", i, got, err)
		}
		if _, err := l2.InclusionProof(context.Background(), uint64(i), l2.Size()); err != nil {
			t.Fatalf("proof of %d: %v", i, err)
		}
	}
}
