// Package spool is a watcher's durable local queue of signed records: records
// are written to disk (fsync) before the watcher counts them as sent, and a
// delivery loop posts them to the ledger in order, retrying while the ledger is
// unreachable. A full spool refuses new records with ErrFull, logs and counts
// it: it never drops a record silently.
//
// Layout of the directory:
//
//	<16-digit segment number>.seg   frames: 4-byte big-endian length, 4-byte CRC-32C, record
//	ack                             "<segment> <offset>": where delivery resumes
//	rejected/<segment>-<offset>.json  records the ledger refused for good (kept, never lost)
//
// The ack file is rewritten (temp file + rename) every 256 deliveries and
// whenever the spool is drained, and is not fsynced: after a crash delivery may
// resume a little early and re-post some records, which the ledger answers with
// the original receipts, because it deduplicates identical envelopes.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"evident.dev/evident/internal/progress"
)

// ErrFull is returned by Append when the records would not fit in the spool's
// byte budget. Nothing of the batch was written.
var ErrFull = errors.New("spool full")

// ErrRejected wraps a post error the ledger will answer the same way however
// often the record is sent (invalid, untrusted, out of scope). Post functions
// return it (with errors.Join or %w) to have the record set aside in
// rejected/ instead of retried.
var ErrRejected = errors.New("record rejected by the ledger")

const (
	// ackEvery is how many deliveries may go unsaved in the ack file.
	ackEvery    = 256
	frameHeader = 8
	segSuffix   = ".seg"
	// MaxRecord bounds one record; the ledger refuses bigger bodies anyway.
	MaxRecord = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a spool.
type Options struct {
	// MaxBytes is the budget of undelivered records on disk; default 256 MiB.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file starts; default 8 MiB.
	SegmentBytes int64
	Logger       *slog.Logger
	// Registerer receives the spool's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// RetryMax caps the wait between delivery attempts; default 5s.
	RetryMax time.Duration
}

// Spool is a durable FIFO of records. Append and Deliver may run
// concurrently; Append is safe for concurrent use, Deliver runs once.
type Spool struct {
	dir  string
	opts Options
	log  *slog.Logger
	m    metrics

	mu sync.Mutex // guards everything below
	// w is the segment being appended to, number wseg, wsize bytes long.
	w     *os.File
	wseg  uint64
	wsize int64
	// torn is set after a failed write: the segment may end in a partial
	// frame, so the next Append starts a new one (Open cuts the tail).
	torn    bool
	pending int64 // undelivered bytes (frames) on disk
	count   int64 // undelivered records
	// ack is where delivery resumes.
	ackSeg uint64
	ackOff int64
	// appended counts the appends of this process, which a deliverer at
	// the end of the spool waits on.
	appended progress.Mark
}

type metrics struct {
	pendingRecords prometheus.Gauge
	pendingBytes   prometheus.Gauge
	full           prometheus.Counter
	delivered      prometheus.Counter
	rejected       prometheus.Counter
	failures       prometheus.Counter
}

func newMetrics(r prometheus.Registerer) metrics {
	m := metrics{
		pendingRecords: prometheus.NewGauge(prometheus.GaugeOpts{Name: "evident_watch_spool_pending_records", Help: "Signed records on disk not yet acknowledged by the ledger."}),
		pendingBytes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "evident_watch_spool_pending_bytes", Help: "Bytes of records on disk not yet acknowledged by the ledger."}),
		full:           prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_watch_spool_full_total", Help: "Appends refused because the spool was full."}),
		delivered:      prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_watch_delivered_total", Help: "Records the ledger acknowledged (new or duplicate)."}),
		rejected:       prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_watch_rejected_total", Help: "Records the ledger refused for good, kept in the spool's rejected directory."}),
		failures:       prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_watch_delivery_failures_total", Help: "Delivery attempts that failed and will be retried."}),
	}
	if r != nil {
		r.MustRegister(m.pendingRecords, m.pendingBytes, m.full, m.delivered, m.rejected, m.failures)
	}
	return m
}

// Open opens (creating if needed) the spool in dir. A torn frame at the end
// of the last segment (a crash during Append, which therefore never returned)
// is cut off.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 256 << 20
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 8 << 20
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(dir, "rejected"), 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, opts: opts, log: opts.Logger, m: newMetrics(opts.Registerer)}
	segs, err := s.segments()
	if err != nil {
		return nil, err
	}
	if err := s.readAck(segs); err != nil {
		return nil, err
	}
	// Count what is left to deliver, checking every frame; cut a torn tail
	// of the last segment.
	for i, seg := range segs {
		if seg < s.ackSeg {
			continue
		}
		from := int64(0)
		if seg == s.ackSeg {
			from = s.ackOff
		}
		n, bytes, good, err := scanSegment(s.segPath(seg), from)
		if err != nil {
			if i != len(segs)-1 {
				return nil, fmt.Errorf("spool: segment %d is damaged before its end: %w", seg, err)
			}
			s.log.Warn("spool: cutting a torn record off the last segment (a crash interrupted an append)", "segment", seg, "offset", good, "err", err)
			if err := os.Truncate(s.segPath(seg), good); err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
		}
		s.count += n
		s.pending += bytes
	}
	next := uint64(1)
	if len(segs) > 0 {
		next = segs[len(segs)-1]
	}
	if next < s.ackSeg {
		next = s.ackSeg
	}
	if err := s.openWriter(next); err != nil {
		return nil, err
	}
	s.gauges()
	return s, nil
}

func (s *Spool) segPath(seg uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016d%s", seg, segSuffix))
}

func (s *Spool) segments() ([]uint64, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var segs []uint64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), segSuffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("spool: unexpected file %s", de.Name())
		}
		segs = append(segs, n)
	}
	slices.Sort(segs)
	return segs, nil
}

func (s *Spool) readAck(segs []uint64) error {
	b, err := os.ReadFile(filepath.Join(s.dir, "ack"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if len(segs) > 0 {
			s.ackSeg = segs[0]
		} else {
			s.ackSeg = 1
		}
		return nil
	case err != nil:
		return fmt.Errorf("spool: %w", err)
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &s.ackSeg, &s.ackOff); err != nil {
		return fmt.Errorf("spool: ack file %q: %w", b, err)
	}
	if len(segs) > 0 && s.ackSeg < segs[0] {
		s.ackSeg, s.ackOff = segs[0], 0
	}
	return nil
}

// scanSegment reads the frames of a segment from offset from. It returns the
// number of whole frames, their bytes, and the offset after the last good
// frame; err describes the first bad frame.
func scanSegment(path string, from int64) (n, bytes, good int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, from, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0, from, fmt.Errorf("spool: %w", err)
	}
	r := bufio.NewReader(f)
	good = from
	for {
		rec, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			return n, bytes, good, nil
		}
		if err != nil {
			return n, bytes, good, err
		}
		n++
		sz := int64(frameHeader + len(rec))
		bytes += sz
		good += sz
	}
}

// readFrame reads one frame; io.EOF only at a clean frame boundary.
func readFrame(r io.Reader) ([]byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New("torn frame header")
		}
		return nil, err
	}
	size := binary.BigEndian.Uint32(h[:4])
	if size == 0 || size > MaxRecord {
		return nil, fmt.Errorf("bad frame length %d", size)
	}
	rec := make([]byte, size)
	if _, err := io.ReadFull(r, rec); err != nil {
		return nil, errors.New("torn frame body")
	}
	if crc32.Checksum(rec, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return nil, errors.New("frame checksum mismatch")
	}
	return rec, nil
}

func (s *Spool) openWriter(seg uint64) error {
	f, err := os.OpenFile(s.segPath(seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	if s.w != nil {
		s.w.Close()
	}
	s.w, s.wseg, s.wsize, s.torn = f, seg, st.Size(), false
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync directory: %w", err)
	}
	return nil
}

// Append writes records in order and fsyncs them before it returns. When
// they do not fit in the budget it writes none, logs, counts and returns
// ErrFull: the caller keeps them and tries again later.
func (s *Spool) Append(recs ...[]byte) error {
	var size int64
	for _, r := range recs {
		if len(r) == 0 || len(r) > MaxRecord {
			return fmt.Errorf("spool: record of %d bytes (1 to %d allowed)", len(r), MaxRecord)
		}
		size += int64(frameHeader + len(r))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending+size > s.opts.MaxBytes {
		s.m.full.Inc()
		s.log.Error("spool full: records are held back until the ledger takes some",
			"pending_records", s.count, "pending_bytes", s.pending, "max_bytes", s.opts.MaxBytes, "refused", len(recs))
		return fmt.Errorf("%w: %d bytes pending of %d", ErrFull, s.pending, s.opts.MaxBytes)
	}
	if s.wsize >= s.opts.SegmentBytes || s.torn {
		if err := s.openWriter(s.wseg + 1); err != nil {
			return err
		}
	}
	buf := make([]byte, 0, size)
	for _, r := range recs {
		var h [frameHeader]byte
		binary.BigEndian.PutUint32(h[:4], uint32(len(r)))
		binary.BigEndian.PutUint32(h[4:], crc32.Checksum(r, castagnoli))
		buf = append(append(buf, h[:]...), r...)
	}
	if _, err := s.w.Write(buf); err != nil {
		s.torn = true
		return fmt.Errorf("spool: write: %w", err)
	}
	if err := s.w.Sync(); err != nil {
		s.torn = true
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.wsize += size
	s.pending += size
	s.count += int64(len(recs))
	s.gauges()
	s.appended.Advance(s.appended.Load() + 1)
	return nil
}

func (s *Spool) gauges() {
	s.m.pendingRecords.Set(float64(s.count))
	s.m.pendingBytes.Set(float64(s.pending))
}

// Pending returns the number of records not yet acknowledged by the ledger.
func (s *Spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Close closes the segment being written. Deliver must have returned.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w = nil
	return err
}

// Post sends one record to the ledger. A nil error means the ledger holds it
// (a new entry or a duplicate of one). An error wrapping ErrRejected sets the
// record aside for good; any other error is retried.
type Post func(ctx context.Context, record []byte) error

// Deliver posts records in spool order until ctx is done, waiting for new
// ones when the spool is empty and retrying (with backoff up to
// Options.RetryMax) while the ledger is unreachable. It returns ctx's error,
// or a storage error of the spool itself.
func (s *Spool) Deliver(ctx context.Context, post Post) error {
	var r *bufio.Reader
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	s.mu.Lock()
	seg, off := s.ackSeg, s.ackOff
	s.mu.Unlock()
	unsaved := 0
	defer func() {
		if unsaved > 0 {
			s.saveAck(seg, off)
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if f == nil {
			var err error
			f, err = os.Open(s.segPath(seg))
			if err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			r = bufio.NewReader(f)
		}
		s.mu.Lock()
		appends := s.appended.Load()
		atEnd := seg == s.wseg && off >= s.wsize
		nextExists := seg < s.wseg
		s.mu.Unlock()
		if atEnd {
			if unsaved > 0 {
				s.saveAck(seg, off)
				unsaved = 0
			}
			// An append after the read above advances the mark past
			// appends: it cannot be missed.
			if _, err := s.appended.Wait(ctx, appends+1); err != nil {
				return err
			}
			continue
		}
		rec, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			if !nextExists {
				// The writer's size said there was more: it is there after
				// the next read.
				continue
			}
			f.Close()
			f = nil
			old := seg
			seg, off = seg+1, 0
			s.saveAck(seg, off)
			if err := os.Remove(s.segPath(old)); err != nil {
				s.log.Warn("spool: removing a delivered segment", "segment", old, "err", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("spool: segment %d at %d: %w", seg, off, err)
		}
		if err := s.deliverOne(ctx, post, rec, seg, off); err != nil {
			return err
		}
		off += int64(frameHeader + len(rec))
		s.mu.Lock()
		s.count--
		s.pending -= int64(frameHeader + len(rec))
		s.ackSeg, s.ackOff = seg, off
		s.gauges()
		s.mu.Unlock()
		// The position is saved every ackEvery records and whenever the
		// spool is drained: a crash re-posts at most that many, which the
		// ledger deduplicates.
		if unsaved++; unsaved >= ackEvery {
			s.saveAck(seg, off)
			unsaved = 0
		}
	}
}

// deliverOne posts rec until the ledger holds it or refuses it for good.
func (s *Spool) deliverOne(ctx context.Context, post Post, rec []byte, seg uint64, off int64) error {
	wait := 100 * time.Millisecond
	failing := false
	for {
		err := post(ctx, rec)
		switch {
		case err == nil:
			s.m.delivered.Inc()
			if failing {
				s.log.Info("spool: the ledger takes records again", "segment", seg, "offset", off)
			}
			return nil
		case errors.Is(err, ErrRejected):
			s.m.rejected.Inc()
			path := filepath.Join(s.dir, "rejected", fmt.Sprintf("%016d-%012d.json", seg, off))
			if werr := writeFileSync(path, rec); werr != nil {
				return fmt.Errorf("spool: keeping a rejected record: %w (the ledger said: %w)", werr, err)
			}
			s.log.Error("spool: the ledger refused a record for good; kept for review", "file", path, "err", err)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.failures.Inc()
		if !failing {
			s.log.Warn("spool: the ledger is unreachable; records wait on disk and are retried in order", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, s.opts.RetryMax)
	}
}

func (s *Spool) saveAck(seg uint64, off int64) {
	s.mu.Lock()
	s.ackSeg, s.ackOff = seg, off
	s.mu.Unlock()
	tmp := filepath.Join(s.dir, "ack.tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", seg, off)), 0o600); err != nil {
		s.log.Warn("spool: saving the delivery position (records may be re-posted after a restart; the ledger deduplicates them)", "err", err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "ack")); err != nil {
		s.log.Warn("spool: saving the delivery position", "err", err)
	}
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
