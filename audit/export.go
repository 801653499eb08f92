package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// ExportFormat is the first field of an export file. An export is JSON Lines:
//
//	{"format":"evident-export/v1","origin":…,"logKey":…,"size":N,"checkpoints":C}
//	{"checkpoint":"<signed note>"}                      (C lines, by increasing size)
//	{"index":0,"leaf":"<base64 leaf>"}                  (N lines, in index order)
//
// The header's origin and log key are a convenience; an auditor pins the key.
const ExportFormat = "evident-export/v1"

// maxExportLine bounds one line of an export: a leaf of a maximal record,
// base64-encoded.
const maxExportLine = 64 << 20

// ExportHeader is the first line of an export.
type ExportHeader struct {
	Format      string `json:"format"`
	Origin      string `json:"origin"`
	LogKey      string `json:"logKey"`
	Size        uint64 `json:"size"`
	Checkpoints int    `json:"checkpoints"`
}

type exportCheckpoint struct {
	Checkpoint string `json:"checkpoint"`
}

type exportLeaf struct {
	Index uint64 `json:"index"`
	Leaf  []byte `json:"leaf"`
}

// SizedSource is a LogSource that knows its size, such as a snapshot.
type SizedSource interface {
	LogSource
	Size() uint64
}

// WriteExport writes a whole log to w in the export format.
func WriteExport(ctx context.Context, w io.Writer, src SizedSource, origin, logKey string) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	cps, err := src.Checkpoints(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	enc := json.NewEncoder(bw)
	if err := enc.Encode(ExportHeader{Format: ExportFormat, Origin: origin, LogKey: logKey, Size: src.Size(), Checkpoints: len(cps)}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for _, cp := range cps {
		if err := enc.Encode(exportCheckpoint{Checkpoint: string(cp)}); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	line := make([]byte, 0, 8192)
	err = src.Leaves(ctx, func(index uint64, leaf []byte) error {
		// Hand-rolled to avoid a reflection pass per entry: same bytes as enc.Encode(exportLeaf{...}).
		line = append(line[:0], `{"index":`...)
		line = strconv.AppendUint(line, index, 10)
		line = append(line, `,"leaf":"`...)
		line = base64.StdEncoding.AppendEncode(line, leaf)
		line = append(line, "\"}\n"...)
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// ExportFile reads an export. It is a LogSource for CheckLog; Leaves may be
// called once.
type ExportFile struct {
	Header      ExportHeader
	checkpoints [][]byte
	sc          *bufio.Scanner
	line        int
}

// OpenExport reads an export's header and checkpoints.
func OpenExport(r io.Reader) (*ExportFile, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), maxExportLine)
	f := &ExportFile{sc: sc}
	if err := f.next(&f.Header); err != nil {
		return nil, fmt.Errorf("export header: %w", err)
	}
	if f.Header.Format != ExportFormat {
		return nil, fmt.Errorf("export header: format %q, want %q", f.Header.Format, ExportFormat)
	}
	for i := range f.Header.Checkpoints {
		var cp exportCheckpoint
		if err := f.next(&cp); err != nil {
			return nil, fmt.Errorf("export checkpoint %d of the %d the header field checkpoints announces: %w", i+1, f.Header.Checkpoints, err)
		}
		f.checkpoints = append(f.checkpoints, []byte(cp.Checkpoint))
	}
	return f, nil
}

func (f *ExportFile) next(v any) error {
	f.line++
	if !f.sc.Scan() {
		if err := f.sc.Err(); err != nil {
			return fmt.Errorf("line %d: %w", f.line, err)
		}
		return fmt.Errorf("line %d: %w (the file is truncated)", f.line, io.ErrUnexpectedEOF)
	}
	dec := json.NewDecoder(bytes.NewReader(f.sc.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("line %d: %w", f.line, err)
	}
	return nil
}

// Checkpoints implements LogSource.
func (f *ExportFile) Checkpoints(context.Context) ([][]byte, error) { return f.checkpoints, nil }

// Size is the number of entries the header announces.
func (f *ExportFile) Size() uint64 { return f.Header.Size }

// Leaves implements LogSource.
func (f *ExportFile) Leaves(ctx context.Context, fn func(uint64, []byte) error) error {
	for i := range f.Header.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		var l exportLeaf
		if err := f.next(&l); err != nil {
			var cp exportCheckpoint
			if i == 0 && json.Unmarshal(f.sc.Bytes(), &cp) == nil && cp.Checkpoint != "" {
				return fmt.Errorf("export header field checkpoints announces %d checkpoints, but line %d holds another", f.Header.Checkpoints, f.line)
			}
			return &BadEntryError{Index: i, Err: fmt.Errorf("export: %w", err)}
		}
		if l.Index != i {
			return &BadEntryError{Index: i, Err: fmt.Errorf("export line %d holds index %d", f.line, l.Index)}
		}
		if err := fn(i, l.Leaf); err != nil {
			return err
		}
	}
	if f.sc.Scan() {
		return fmt.Errorf("export header field size: it announces %d entries, but the file holds more", f.Header.Size)
	}
	return f.sc.Err()
}

// CheckHeader checks the header's fields that the checkpoints and leaves do
// not already bind: the origin must be the log key's (a C2SP note's key
// name is its log's origin, and every leaf names it too), and the log key
// the one pinned. A field that disagrees is named.
func (f *ExportFile) CheckHeader(origin, logKey string) error {
	if f.Header.Origin != origin {
		return fmt.Errorf("export header field origin is %q, but the log key and the checkpoints are of %q", f.Header.Origin, origin)
	}
	if f.Header.LogKey != logKey {
		return fmt.Errorf("export header field logKey is %q, not the pinned log key %q", f.Header.LogKey, logKey)
	}
	return nil
}
