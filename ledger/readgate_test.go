package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestCloseUnderReads closes the log while readers of every kind (leaves,
// proofs, term lookups, snapshots) run against it, as the completeness
// tracker and the query handlers do when a server stops. Close waits for
// the reads in flight; every read after it fails with ErrClosed. Without the
// read gate, reads across Close failed with Badger's untyped "DB Closed",
// or, where Badger unmapped its memtable under a running read, the process
// died of a segmentation fault (a server stopped while its tracker caught up).
func TestCloseUnderReads(t *testing.T) {
	l := internalLog(t, t.TempDir(), nil)
	const n = 3 * chunkSize
	for i := range n {
		if _, err := l.Append(context.Background(), rawRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	readers := map[string]func(i uint64) error{
		"leaf": func(i uint64) error { _, err := l.Leaf(ctx, i); return err },
		"proof": func(i uint64) error {
			_, err := l.InclusionProof(ctx, i, n)
			return err
		},
		"lookup": func(i uint64) error {
			got, err := l.Lookup(ctx, Query{Name: TermChange, Value: fmt.Sprint("CHG-", i)})
			if err == nil && (len(got) != 1 || got[0] != i) {
				return fmt.Errorf("lookup of %d: %v", i, got)
			}
			return err
		},
		"snapshot": func(uint64) error {
			s, err := l.Snapshot()
			if err != nil {
				return err
			}
			defer s.Close()
			_, err = s.Checkpoints(ctx)
			return err
		},
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, 2*len(readers))
	errs := make(chan error, 2*len(readers))
	for name, read := range readers {
		for r := range 2 {
			wg.Go(func() {
				for i := uint64(r); ; i = (i + 7919) % n {
					if i == uint64(r)+7919%n {
						started <- struct{}{}
					}
					if err := read(i); err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						return
					}
				}
			})
		}
	}
	for range 2 * len(readers) {
		<-started
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("a read across Close: %v, want ErrClosed", err)
		}
	}
}
