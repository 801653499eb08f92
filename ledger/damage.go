package ledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	if err := checkTables(index); err != nil {
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

// checkTables reads every block of every Badger table (.sst) in dir and
// checks its checksum, naming the first damaged file. Tables are written
// Snappy-compressed (badgerOptions); older ones were ZSTD-compressed, and one
// that reads as neither is tried uncompressed.
func checkTables(dir string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return err
	}
	for _, path := range paths {
		err := checkTable(path, options.Snappy)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			continue
		}
		if checkTable(path, options.ZSTD) == nil || checkTable(path, options.None) == nil {
			continue
		}
		return fmt.Errorf("%w: index table %s: %v%s", ErrDamaged, path, err, damageHint)
	}
	return nil
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
		return fmt.Errorf("disk nearly full: %d bytes free on the filesystem of %s, below the reserve of %d", free, l.cfg.Dir, l.cfg.MinFreeBytes)
	}
	return nil
}
