package ledger

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Entries live in append-only segment files, the log's source of truth; Badger
// holds only what is derived from them (locations, tree hashes, indexes,
// checkpoints) and can be rebuilt from them. Segment k holds entries
// [k*segmentEntries, (k+1)*segmentEntries), each framed as
//
//	length u32 | leaf | CRC-32C(leaf) u32
//
// so that a torn write at the tail is recognised and cut off on open.
// Appends are write(2) + fdatasync(2): one sync per batch, and the page cache
// (not the server's memory) holds what readers touch.
const segmentEntries = 1 << 16

const frameOverhead = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segmentOf(index uint64) uint64 { return index / segmentEntries }

// segments reads and appends segment files.
type segments struct {
	dir string

	// mu guards readers: open read handles by segment number. A read holds
	// mu (shared) while it uses a handle, so that evicting handles, which
	// holds it exclusively, never closes one in use.
	mu      sync.RWMutex
	readers map[uint64]*os.File

	// Owned by the committer: the segment being appended to.
	tail    *os.File
	tailSeg uint64
}

func openSegments(dir string) (*segments, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("entry segments: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("entry segments: %w", err)
	}
	return &segments{dir: dir, readers: map[uint64]*os.File{}}, nil
}

// syncDir makes the entries of a directory durable: fdatasync of a new file
// does not make its name durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

func (s *segments) path(seg uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%012d.seg", seg))
}

// frame appends one framed leaf to buf.
func frame(buf, leaf []byte) []byte {
	start := len(buf)
	return sealFrame(append(append(buf, 0, 0, 0, 0), leaf...), start)
}

// sealFrame completes the frame begun at buf[start:]: four bytes for the
// length, then the leaf, which ends buf. It fills in the length and appends
// the checksum.
func sealFrame(buf []byte, start int) []byte {
	leaf := buf[start+4:]
	binary.BigEndian.PutUint32(buf[start:], uint32(len(leaf)))
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(leaf, castagnoli))
}

// segmentWrite is a run of framed leaves for one segment, starting at offset.
type segmentWrite struct {
	seg    uint64
	offset uint64
	data   []byte
}

// append writes runs at their offsets and makes them durable. Runs are in
// log order; each run's offset is where the previous write to its segment
// ended, so a retried or crashed write is simply overwritten.
func (s *segments) append(runs []segmentWrite) error {
	for _, r := range runs {
		if s.tail == nil || s.tailSeg != r.seg {
			if err := s.closeTail(); err != nil {
				return err
			}
			f, err := os.OpenFile(s.path(r.seg), os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return fmt.Errorf("open entry segment %d: %w", r.seg, err)
			}
			if err := syncDir(s.dir); err != nil { // the segment may be new
				f.Close()
				return fmt.Errorf("sync entry segments directory: %w", err)
			}
			s.tail, s.tailSeg = f, r.seg
		}
		if _, err := s.tail.WriteAt(r.data, int64(r.offset)); err != nil {
			return fmt.Errorf("write entry segment %d: %w", r.seg, err)
		}
		if err := unix.Fdatasync(int(s.tail.Fd())); err != nil {
			return fmt.Errorf("sync entry segment %d: %w", r.seg, err)
		}
	}
	return nil
}

// discard removes what a failed batch's runs may have written, so that no
// stale frames are left after the (possibly shorter) batch written at the
// same offsets next: the first run's segment is cut back to where the run
// started; later runs each began a new segment, which is removed.
func (s *segments) discard(runs []segmentWrite) error {
	errs := []error{s.closeTail()}
	for i, r := range runs {
		var err error
		if i == 0 {
			err = os.Truncate(s.path(r.seg), int64(r.offset))
		} else {
			err = os.Remove(s.path(r.seg))
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *segments) closeTail() error {
	if s.tail == nil {
		return nil
	}
	err := s.tail.Close()
	s.tail = nil
	return err
}

// read returns the leaf framed at offset in the segment of index.
func (s *segments) read(index, offset uint64, length uint32) ([]byte, error) {
	buf := make([]byte, int(length)+frameOverhead)
	if err := s.readAt(segmentOf(index), buf, int64(offset)); err != nil {
		return nil, fmt.Errorf("read entry %d: %w", index, err)
	}
	leaf, err := unframe(buf)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	return leaf, nil
}

// readRun reads the n consecutive entries from index, whose first and last
// frames are at first and last in the same segment, with one read.
func (s *segments) readRun(index uint64, n int, first, last location) ([][]byte, error) {
	end := last.offset + uint64(last.length) + frameOverhead
	if n < 1 || segmentOf(index) != segmentOf(index+uint64(n)-1) || end < first.offset || end-first.offset > uint64(n)*(maxLeaf+frameOverhead) {
		return nil, fmt.Errorf("read entries %d to %d: not one run of a segment", index, index+uint64(n)-1)
	}
	buf := make([]byte, end-first.offset)
	if err := s.readAt(segmentOf(index), buf, int64(first.offset)); err != nil {
		return nil, fmt.Errorf("read entries %d to %d: %w", index, index+uint64(n)-1, err)
	}
	leaves := make([][]byte, n)
	for k := range leaves {
		if len(buf) < frameOverhead {
			return nil, fmt.Errorf("entry %d: truncated frame", index+uint64(k))
		}
		size := uint64(binary.BigEndian.Uint32(buf)) + frameOverhead
		if size > uint64(len(buf)) {
			return nil, fmt.Errorf("entry %d: frame runs past the entries after it", index+uint64(k))
		}
		leaf, err := unframe(buf[:size])
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", index+uint64(k), err)
		}
		leaves[k], buf = leaf, buf[size:]
	}
	if len(buf) != 0 {
		return nil, fmt.Errorf("entries %d to %d do not fill their locations", index, index+uint64(n)-1)
	}
	return leaves, nil
}

func unframe(buf []byte) ([]byte, error) {
	if len(buf) < frameOverhead {
		return nil, errors.New("truncated frame")
	}
	n := binary.BigEndian.Uint32(buf)
	if n == 0 {
		// No leaf is empty; zeros are what a crash can leave at the tail.
		return nil, errors.New("empty frame")
	}
	if uint64(n)+frameOverhead != uint64(len(buf)) {
		return nil, fmt.Errorf("frame length %d does not match its location", n)
	}
	leaf := buf[4 : 4+n]
	if binary.BigEndian.Uint32(buf[4+n:]) != crc32.Checksum(leaf, castagnoli) {
		return nil, errors.New("checksum mismatch: the segment file is damaged")
	}
	return leaf, nil
}

// readAt reads from a segment through a cached read handle.
func (s *segments) readAt(seg uint64, buf []byte, off int64) error {
	s.mu.RLock()
	if f, ok := s.readers[seg]; ok {
		_, err := f.ReadAt(buf, off)
		s.mu.RUnlock()
		return err
	}
	s.mu.RUnlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.readers[seg]
	if !ok {
		var err error
		if f, err = os.Open(s.path(seg)); err != nil {
			return fmt.Errorf("open entry segment %d: %w", seg, err)
		}
		if len(s.readers) >= 64 { // bound open files; reopening is cheap
			for k, r := range s.readers {
				r.Close()
				delete(s.readers, k)
			}
		}
		s.readers[seg] = f
	}
	_, err := f.ReadAt(buf, off)
	return err
}

func (s *segments) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.readers {
		r.Close()
		delete(s.readers, k)
	}
	return s.closeTail()
}

// scan calls fn for each intact frame of the log from entry first (which
// starts at offset in its segment) on, up to limit entries (0: all). It stops
// quietly at the first missing, short or damaged frame: the torn tail of a
// crash, which the caller truncates or reports.
func (s *segments) scan(first, offset, limit uint64, fn func(index, offset uint64, leaf []byte) error) (next, nextOffset uint64, err error) {
	index := first
	for {
		seg := segmentOf(index)
		f, err := os.Open(s.path(seg))
		if errors.Is(err, fs.ErrNotExist) {
			return index, offset, nil
		}
		if err != nil {
			return index, offset, fmt.Errorf("open entry segment %d: %w", seg, err)
		}
		if _, err := f.Seek(int64(offset), io.SeekStart); err != nil {
			f.Close()
			return index, offset, err
		}
		r := bufio.NewReaderSize(f, 1<<20)
		var hdr [4]byte
		buf := make([]byte, 0, 4096)
		for segmentOf(index) == seg {
			if limit > 0 && index-first >= limit {
				f.Close()
				return index, offset, nil
			}
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				f.Close()
				return index, offset, nil
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if n > maxLeaf {
				f.Close()
				return index, offset, nil
			}
			buf = append(buf[:0], hdr[:]...)
			buf = append(buf, make([]byte, int(n)+4)...)
			if _, err := io.ReadFull(r, buf[4:]); err != nil {
				f.Close()
				return index, offset, nil
			}
			leaf, err := unframe(buf)
			if err != nil {
				f.Close()
				return index, offset, nil
			}
			if err := fn(index, offset, leaf); err != nil {
				f.Close()
				return index, offset, err
			}
			offset += uint64(n) + frameOverhead
			index++
		}
		f.Close()
		offset = 0
	}
}

// maxTornTail is the most a crash can leave unacknowledged at the end of the
// segments: one batch in flight. More than that after the last intact frame
// is damage, not a torn write, and is never cut off.
const maxTornTail = 256 << 20

// cutTornTail cuts the segment of index at offset: the frames a crash left
// half-written, never synced and never acknowledged.
func (s *segments) cutTornTail(index, offset uint64) error {
	seg := segmentOf(index)
	if _, err := os.Stat(s.path(seg + 1)); err == nil {
		return fmt.Errorf("entry segment %d is damaged at entry %d but later segments exist: refusing to cut acknowledged entries (run evident verify)", seg, index)
	}
	st, err := os.Stat(s.path(seg))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	tail := st.Size() - int64(offset)
	switch {
	case tail <= 0:
		return nil
	case tail > maxTornTail:
		return fmt.Errorf("entry segment %d is damaged at entry %d with %d bytes after it: refusing to cut acknowledged entries (run evident verify)", seg, index, tail)
	}
	if err := s.refuseIntactFrames(seg, index, offset); err != nil {
		return err
	}
	if err := os.Truncate(s.path(seg), int64(offset)); err != nil {
		return fmt.Errorf("cut torn tail of entry segment %d: %w", seg, err)
	}
	return nil
}

// maxLeaf bounds one leaf: a maximal record plus the log's metadata.
const maxLeaf = 64 << 20

// maxEnvelope bounds the envelope of a record, leaving room in its leaf for
// the log's metadata.
const maxEnvelope = maxLeaf - 1<<20

// refuseIntactFrames fails if an intact frame follows the damaged one: a
// torn write leaves only a partial frame (or zeros) at the end, so an intact
// frame after the damage means acknowledged entries would be cut off.
func (s *segments) refuseIntactFrames(seg, index, offset uint64) error {
	tail, err := os.ReadFile(s.path(seg))
	if err != nil {
		return fmt.Errorf("read entry segment %d: %w", seg, err)
	}
	tail = tail[offset:]
	header := []byte("evident.dev/entry/v1\n")
	for i := 1; i < len(tail); i++ {
		j := bytes.Index(tail[i:], header)
		if j < 0 {
			return nil
		}
		i += j
		if i < 4 {
			continue
		}
		n := uint64(binary.BigEndian.Uint32(tail[i-4:]))
		if end := uint64(i) + n + 4; end <= uint64(len(tail)) {
			if _, err := unframe(tail[i-4 : end]); err == nil {
				return fmt.Errorf("entry segment %d is damaged at entry %d and intact entries follow: refusing to cut acknowledged entries (run evident verify)", seg, index)
			}
		}
	}
	return nil
}

// HasEntries reports whether dir, a log's data directory, holds entries: a
// segment file with something in it. A caller deciding whether a missing
// log key may be generated asks this before opening anything.
func HasEntries(dir string) (bool, error) {
	des, err := os.ReadDir(filepath.Join(dir, "entries"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("entry segments: %w", err)
	}
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".seg") {
			continue
		}
		info, err := de.Info()
		if err != nil {
			return false, fmt.Errorf("entry segments: %w", err)
		}
		if info.Size() > 0 {
			return true, nil
		}
	}
	return false, nil
}
