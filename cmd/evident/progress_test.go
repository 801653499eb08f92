package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// On a terminal the count, share and rate are rewritten in place; off one
// (a pipe, a file, a CI log) nothing is printed.
func TestProgress(t *testing.T) {
	var out syncBuffer
	p := &progress{w: &out, what: "verify", total: 10, interval: 10 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	p.add(5)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "verify: 5 of 10 entries (50%)") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.HasSuffix(out.String(), "\r\033[K") {
		t.Errorf("the progress line is not cleared at the end: %q", out.String())
	}

	// An export counts its lines as they are written.
	var file bytes.Buffer
	lines := &progress{what: "export", unit: "lines"}
	w := progressWriter{&file, lines}
	w.Write([]byte("header\nentry 1\nentr"))
	w.Write([]byte("y 2\n"))
	if n := lines.done.Load(); n != 3 || file.Len() != 23 {
		t.Errorf("%d lines counted (%d bytes written), want 3", n, file.Len())
	}

	var quiet bytes.Buffer
	if q := newProgress(&quiet, "verify", 10); q.w != nil {
		t.Error("progress would print to a buffer, which is no terminal")
	}
}

// syncBuffer collects what the progress goroutine writes while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
