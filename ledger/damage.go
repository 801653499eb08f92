package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
	"golang.org/x/sys/unix"
)

// ErrDamaged: the log's index storage (Badger's manifest, tables or value
// log) failed a checksum or format check. The entries themselves live in
// the segment files, which verify checks frame by frame; the index is
// derived from them, but a server does not start on a damaged one.
var ErrDamaged = errors.New("ledger storage damaged")

// ErrInUse: another process (a running server) has the log open.
var ErrInUse = errors.New("ledger in use by another process")

// openIndex opens the Badger index under dir after checking every block of
// every table. It tells a damaged index, naming the damaged file, from one
// that another process holds. Blocks are not checked again as they are
// read (Badger's OnBlockRead) while the server runs: that would cost every
// query that misses the block cache, and damage that appears while running
// is found by the next start or by evident verify.
func openIndex(opts badger.Options, dir string) (*badger.DB, error) {
	// Badger is not asked to verify whole tables at open: on a damaged
	// table it either panics (v4.9: a nil block in Table.VerifyChecksum)
	// or leaves the table out and opens without it, which would serve a
	// log with part of its index missing. checkTables does that check
	// first, without Badger's DB, once no other process holds the
	// directory (a running server's compactions would look like damage).
	index := filepath.Join(dir, "index")
	if err := notInUse(index); err != nil {
		return nil, fmt.Errorf("open ledger storage in %s (is a server running on it?): %w", dir, err)
	}
	if err := checkTables(index, opts); err != nil {
		return nil, err
	}
	db, err := badger.Open(opts)
	if err == nil {
		return db, nil
	}
	// Badger's errors are not typed; its lock error is the one that does
	// not mean damage (a process that started since notInUse looked).
	if strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return nil, fmt.Errorf("open ledger storage in %s (is a server running on it?): %w: %v", dir, ErrInUse, err)
	}
	return nil, fmt.Errorf("%w: the index in %s cannot be opened: %v%s", ErrDamaged, index, err, damageHint)
}

// notInUse fails with ErrInUse if another process holds the lock Badger
// takes on the index directory (flock, exclusive); it does not keep it.
// A directory that does not exist yet is not in use.
func notInUse(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s is locked", ErrInUse, dir)
		}
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}

// damageHint says what to do, after a damage report.
const damageHint = " (the index files failed a checksum or format check; the entries in the segment files are not affected by this: " +
	"keep a copy of the data directory, check the disk, and restore the index from a backup or rebuild the data directory from an export)"

// checkTables reads every block of every Badger table (.sst) the index's
// manifest lists, with the compression the manifest records for it (tables
// are written Snappy-compressed, older ones ZSTD), and checks its checksum,
// naming the first damaged file. A table file the manifest does not list is
// one a crash left half-written before Badger recorded it; Badger deletes
// such files at open, so they are not damage.
func checkTables(dir string, opts badger.Options) error {
	tables, err := manifestTables(dir, opts)
	if err != nil {
		return fmt.Errorf("%w: the index manifest in %s: %v%s", ErrDamaged, dir, err, damageHint)
	}
	ids := make([]uint64, 0, len(tables))
	for id := range tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		path := table.NewFilename(id, dir)
		if err := checkTable(path, tables[id].Compression); err != nil {
			return fmt.Errorf("%w: index table %s: %v%s", ErrDamaged, path, err, damageHint)
		}
	}
	return nil
}

// manifestTables replays Badger's MANIFEST in dir. A directory without one
// is a new index, unless it holds tables: Badger would start a new manifest
// and delete them.
func manifestTables(dir string, opts badger.Options) (map[uint64]badger.TableManifest, error) {
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		if orphans, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(orphans) > 0 {
			return nil, fmt.Errorf("%s is missing but %d table files are there", badger.ManifestFilename, len(orphans))
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, _, err := badger.ReplayManifestFile(f, opts.ExternalMagicVersion, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", badger.ManifestFilename, err)
	}
	return m.Tables, nil
}

// checkTable opens one table read-only and verifies all its blocks. Badger
// panics on some damage (an unreadable index or block); that is recovered
// here and reported as the damage it is.
func checkTable(path string, compression options.CompressionType) (err error) {
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("a block or the table index cannot be decoded (Badger: %v)", r)
		}
	}()
	t, err := table.OpenTable(mf, table.Options{
		ReadOnly:    true,
		ChkMode:     options.NoVerification, // VerifyChecksum then checks each block itself
		Compression: compression,
		BlockSize:   badger.DefaultOptions("").BlockSize, // badgerOptions keeps the default
	})
	if err != nil {
		_ = mf.Close(-1)
		return err
	}
	defer t.DecrRef()
	return t.VerifyChecksum()
}

// ErrDiskFull is a batch refused because the filesystem holding the log has
// less free space than its reserve.
var ErrDiskFull = errors.New("disk nearly full")

// diskFullLog logs the disk-full state when it starts, a reminder at most
// once a minute while it lasts, and when it ends, rather than one line per
// refused batch: under load that was thousands of lines a second. Used by
// the committer goroutine only.
type diskFullLog struct {
	since, reminded time.Time
	refused         int // batches refused since the last line
}

func (d *diskFullLog) refuse(logger *slog.Logger, records int, err error) {
	now := time.Now()
	d.refused++
	switch {
	case d.since.IsZero():
		d.since, d.reminded = now, now
		logger.Error("refusing records: the disk is nearly full; free space or raise the reserve (limits.minFreeMB)", "records", records, "err", err)
		d.refused = 0
	case now.Sub(d.reminded) >= time.Minute:
		logger.Error("still refusing records: the disk is nearly full", "for", now.Sub(d.since).Round(time.Second), "batchesRefused", d.refused, "err", err)
		d.reminded, d.refused = now, 0
	}
}

func (d *diskFullLog) ok(logger *slog.Logger) {
	if d.since.IsZero() {
		return
	}
	logger.Info("free space is back above the reserve: accepting records again", "after", time.Since(d.since).Round(time.Second), "batchesRefused", d.refused)
	*d = diskFullLog{}
}

// checkSpace fails while the filesystem holding the log has less than
// MinFreeBytes free.
func (l *Log) checkSpace() error {
	if l.cfg.MinFreeBytes < 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(l.cfg.Dir, &st); err != nil {
		return fmt.Errorf("free space of %s: %w", l.cfg.Dir, err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < l.cfg.MinFreeBytes {
		return fmt.Errorf("%w: %d bytes free on the filesystem of %s, below the reserve of %d", ErrDiskFull, free, l.cfg.Dir, l.cfg.MinFreeBytes)
	}
	return nil
}
