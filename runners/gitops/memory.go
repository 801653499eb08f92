package gitops

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memory remembers, per object UID and state class, the key of the last state
// the watcher turned into records, so that a restart (which replays every
// object as an add) emits only what changed while it was away. It is an
// append-only file of lines "<uid> <class> <quoted key>", compacted on open;
// a line with an empty class forgets the object. It is written after the
// records are in the spool: a crash in between re-derives the same records,
// which the ledger deduplicates.
//
// Not safe for concurrent use: the watcher's event loop owns it.
type memory struct {
	path  string
	f     *os.File
	state map[string]map[string]string
	buf   []byte // lines not yet written
}

func openMemory(dir string) (*memory, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("watcher state: %w", err)
	}
	m := &memory{path: filepath.Join(dir, "state.log"), state: map[string]map[string]string{}}
	if err := m.load(); err != nil {
		return nil, err
	}
	// Compact: rewrite the live state, then append to it.
	tmp := m.path + ".tmp"
	var b []byte
	for uid, classes := range m.state {
		for class, key := range classes {
			b = appendLine(b, uid, class, key)
		}
	}
	if err := writeSync(tmp, b); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return nil, fmt.Errorf("watcher state: %w", err)
	}
	f, err := os.OpenFile(m.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("watcher state: %w", err)
	}
	m.f = f
	return m, nil
}

func (m *memory) load() error {
	f, err := os.Open(m.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("watcher state: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		uid, rest, ok1 := strings.Cut(sc.Text(), " ")
		class, quoted, ok2 := strings.Cut(rest, " ")
		key, err := strconv.Unquote(quoted)
		if !ok1 || !ok2 || err != nil {
			// A torn last line from a crash: the records it stood for are in
			// the spool and re-derive identically.
			continue
		}
		if class == "" {
			delete(m.state, uid)
			continue
		}
		m.setState(uid, class, key)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("watcher state: %w", err)
	}
	return nil
}

func appendLine(b []byte, uid, class, key string) []byte {
	b = append(b, uid...)
	b = append(b, ' ')
	b = append(b, class...)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, key)
	return append(b, '\n')
}

func (m *memory) get(uid, class string) string { return m.state[uid][class] }

func (m *memory) setState(uid, class, key string) {
	c := m.state[uid]
	if c == nil {
		c = map[string]string{}
		m.state[uid] = c
	}
	c[class] = key
}

// set records a new key; it is durable after the next flush.
func (m *memory) set(uid, class, key string) {
	m.setState(uid, class, key)
	m.buf = appendLine(m.buf, uid, class, key)
}

// forget drops a deleted object.
func (m *memory) forget(uid string) {
	if _, ok := m.state[uid]; !ok {
		return
	}
	delete(m.state, uid)
	m.buf = appendLine(m.buf, uid, "", "")
}

// flush writes and fsyncs the pending lines.
func (m *memory) flush() error {
	if len(m.buf) == 0 {
		return nil
	}
	if _, err := m.f.Write(m.buf); err != nil {
		return fmt.Errorf("watcher state: %w", err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("watcher state: %w", err)
	}
	m.buf = m.buf[:0]
	return nil
}

func (m *memory) close() error { return m.f.Close() }

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("watcher state: %w", err)
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	for _, err := range []error{werr, serr, cerr} {
		if err != nil {
			return fmt.Errorf("watcher state: %w", err)
		}
	}
	return nil
}
