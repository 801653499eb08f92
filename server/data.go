package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"evident.dev/evident/audit"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// Data is the log in a stopped server's data directory, open for reading:
// what export and verify read. Opening it fails with ledger.ErrInUse while
// a server runs on it.
type Data struct {
	dir   string
	store *ledger.Store
	snap  *ledger.Snapshot
}

// OpenData opens the log in the data directory dataDir.
func OpenData(dataDir string) (*Data, error) {
	store, err := ledger.OpenStore(filepath.Join(dataDir, "ledger"), nil)
	if err != nil {
		return nil, err
	}
	snap, err := store.Snapshot()
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	return &Data{dir: dataDir, store: store, snap: snap}, nil
}

// Close releases the log.
func (d *Data) Close() error {
	d.snap.Close()
	return d.store.Close()
}

// Size is the number of entries in the log.
func (d *Data) Size() uint64 { return d.snap.Size() }

// Log is the log's checkpoints and leaves, to check.
func (d *Data) Log() audit.LogSource { return d.snap }

// Witnessed is the latest checkpoint the log's witnesses cosigned, as the
// server kept it; nil when it has none (no witnesses configured, or none
// cosigned yet).
func (d *Data) Witnessed() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, witnessedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the witnessed checkpoint: %w", err)
	}
	return b, nil
}

// Genesis is the log origin and log key the log's genesis entry names.
func (d *Data) Genesis() (origin, key string, err error) { return genesisIdentity(d.snap) }

// Export writes the log in the export format (audit.WriteExport).
func (d *Data) Export(ctx context.Context, w io.Writer) error {
	origin, key, err := d.Genesis()
	if err != nil {
		return err
	}
	return audit.WriteExport(ctx, w, d.snap, origin, key)
}

// Check checks the log read through src (d.Log(), perhaps counted) with
// audit.CheckLog, then what the data directory derives from it: the stored
// tree hashes and entry locations, and with opts.Signatures the secondary
// indexes.
func (d *Data) Check(ctx context.Context, src audit.LogSource, opts audit.CheckOptions) (*audit.CheckReport, error) {
	var mu sync.Mutex
	var want ledger.IndexDigest
	opts.KeepLeafHashes = true
	opts.OnEntry = func(index uint64, e *evidence.Entry, v *verifier.Verified) {
		// Hashed by the calling worker; only the sums are serialized.
		var dg ledger.IndexDigest
		dg.AddTerms(index, d.snap.Indexed(index, ledger.TermsFor(v.Statement, e.Meta)))
		mu.Lock()
		want.Merge(dg)
		mu.Unlock()
	}
	rep, err := audit.CheckLog(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	if err := d.snap.CheckTree(ctx, rep.LeafHashes); err != nil {
		return nil, err
	}
	if opts.Signatures {
		have, err := d.snap.Indexes(ctx)
		if err != nil {
			return nil, err
		}
		if have != want {
			return nil, fmt.Errorf("indexes: the stored secondary indexes (%d keys) differ from those the entries define (%d keys)", have.Count, want.Count)
		}
	}
	return rep, nil
}
