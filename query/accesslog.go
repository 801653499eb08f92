package query

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// AccessLog records every GraphQL query with its caller: access to evidence
// is itself evidence. It is an append-only file of JSON lines, each naming
// the SHA-256 of the line before it, so a removed or edited line breaks the
// chain (CheckAccessLog). Lines are written before the answer is sent and
// synced to disk at least every second and on Close; a query whose line
// cannot be written is refused.
//
// It is a file and not ledger entries on purpose: queries outnumber changes
// by orders of magnitude and would crowd the evidence log, and the log's
// entries are signed records about changes, not reads.
type AccessLog struct {
	mu    sync.Mutex // guards f, prev, dirty
	f     *os.File
	prev  [sha256.Size]byte
	dirty bool
	stop  chan struct{}
	done  chan struct{}
}

// AccessRecord is one line.
type AccessRecord struct {
	Time      time.Time      `json:"time"`
	Subject   string         `json:"subject"`
	Role      Role           `json:"role,omitempty"`
	Operation string         `json:"operation,omitempty"`
	Query     string         `json:"query,omitempty"`
	Variables map[string]any `json:"variables,omitempty"`
	Status    string         `json:"status"`
	Duration  time.Duration  `json:"durationNs"`
	Prev      string         `json:"prev"` // hex SHA-256 of the previous line (with its newline); zeros for the first
}

// OpenAccessLog opens or creates the file (mode 0600) and continues its chain.
func OpenAccessLog(path string) (*AccessLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	a := &AccessLog{f: f, stop: make(chan struct{}), done: make(chan struct{})}
	last, err := lastLine(f)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("access log %s: %w", path, err), f.Close())
	}
	if last != nil {
		a.prev = sha256.Sum256(last)
	}
	go a.syncLoop()
	return a, nil
}

// lastLine returns the file's last newline-terminated line, with its newline.
func lastLine(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return nil, err
	}
	const tail = 1 << 20
	off := max(st.Size()-tail, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if buf[len(buf)-1] != '\n' {
		return nil, errors.New("the last line is torn (no newline); move the file aside to start a new chain")
	}
	i := bytes.LastIndexByte(buf[:len(buf)-1], '\n')
	if i < 0 && off > 0 {
		return nil, errors.New("the last line is longer than 1 MiB")
	}
	return buf[i+1:], nil
}

// Record appends one line.
func (a *AccessLog) Record(r AccessRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	r.Prev = hex.EncodeToString(a.prev[:])
	if len(r.Query) > 16<<10 {
		r.Query = r.Query[:16<<10] + "…(truncated)"
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("access log: encode: %w", err)
	}
	line = append(line, '\n')
	if _, err := a.f.Write(line); err != nil {
		return fmt.Errorf("access log: %w", err)
	}
	a.prev = sha256.Sum256(line)
	a.dirty = true
	return nil
}

func (a *AccessLog) syncLoop() {
	defer close(a.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.mu.Lock()
			if a.dirty {
				_ = a.f.Sync() // retried next tick and at Close, which reports it
				a.dirty = false
			}
			a.mu.Unlock()
		}
	}
}

// Close syncs and closes the file.
func (a *AccessLog) Close() error {
	close(a.stop)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.f.Sync(), a.f.Close())
}

// CheckAccessLog reads an access log and checks its chain; it returns the
// number of lines.
func CheckAccessLog(r io.Reader) (int, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	var prev [sha256.Size]byte
	n := 0
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return n, fmt.Errorf("line %d is torn", n+1)
		}
		line := data[:i+1]
		var rec AccessRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			return n, fmt.Errorf("line %d: %w", n+1, err)
		}
		if rec.Prev != hex.EncodeToString(prev[:]) {
			return n, fmt.Errorf("line %d does not follow line %d: a line was removed, inserted or edited", n+1, n)
		}
		prev = sha256.Sum256(line)
		data = data[i+1:]
		n++
	}
	return n, nil
}
