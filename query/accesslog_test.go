package query_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"evident.dev/evident/query"
)

func TestAccessLogChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.jsonl")
	for round := range 2 { // reopening continues the chain
		a, err := query.OpenAccessLog(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := a.Record(query.AccessRecord{Time: time.Unix(int64(round*10+i), 0), Subject: "token:audit", Role: query.RoleAuditor, Query: "{ whoami { role } }", Status: "ok"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := query.CheckAccessLog(bytes.NewReader(b)); err != nil || n != 6 {
		t.Fatalf("%d lines, %v", n, err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	for name, damaged := range map[string][]byte{
		"edited":  bytes.Replace(b, []byte(`"time":"1970-01-01T00:00:01Z"`), []byte(`"time":"1970-01-01T00:00:09Z"`), 1),
		"removed": bytes.Join(append(append([][]byte{}, lines[:2]...), lines[3:]...), nil),
		"swapped": bytes.Join([][]byte{lines[1], lines[0], bytes.Join(lines[2:], nil)}, nil),
		"torn":    b[:len(b)-3],
	} {
		if _, err := query.CheckAccessLog(bytes.NewReader(damaged)); err == nil {
			t.Errorf("%s access log passes the check", name)
		}
	}
	// A torn last line (a crash mid-write) is refused at open, not silently chained over.
	if err := os.WriteFile(path, b[:len(b)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := query.OpenAccessLog(path); err == nil {
		t.Error("an access log with a torn last line opens")
	}
}
