package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"evident.dev/evident/audit"
)

// progress prints a long command's count to a terminal every interval
// ("verify: 1,200,000 of 3,000,000 entries (40%), 310,000/s"), and nothing
// when the output is not a terminal (a log, a CI job), where a final line
// says enough.
type progress struct {
	w        io.Writer
	what     string
	unit     string // what is counted; default "entries"
	total    uint64 // 0: unknown
	done     atomic.Uint64
	interval time.Duration
}

// newProgress reports on w if w is a terminal; otherwise it stays quiet.
func newProgress(w io.Writer, what string, total uint64) *progress {
	if !isTerminal(w) {
		w = nil
	}
	return &progress{w: w, what: what, total: total, interval: 2 * time.Second}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// add counts n more done.
func (p *progress) add(n uint64) { p.done.Add(n) }

// run prints until ctx ends; the caller cancels it when the work is done.
func (p *progress) run(ctx context.Context) {
	if p.w == nil {
		return
	}
	start, last, lastAt := time.Now(), uint64(0), time.Now()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(p.w, "\r\033[K") // clear the line for the result
			return
		case now := <-t.C:
			done := p.done.Load()
			rate := float64(done-last) / now.Sub(lastAt).Seconds()
			last, lastAt = done, now
			unit := cmp.Or(p.unit, "entries")
			line := fmt.Sprintf("%s: %d %s", p.what, done, unit)
			if p.total > 0 {
				line = fmt.Sprintf("%s: %d of %d %s (%d%%)", p.what, done, p.total, unit, done*100/p.total)
			}
			fmt.Fprintf(p.w, "\r\033[K%s, %.0f/s, %s", line, rate, now.Sub(start).Round(time.Second))
		}
	}
}

// progressWriter counts toward p the lines written through it (an
// export's entries and checkpoints).
type progressWriter struct {
	w io.Writer
	p *progress
}

func (c progressWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.p.add(uint64(bytes.Count(b[:n], []byte{'\n'})))
	return n, err
}

// countingSource counts the leaves a log check reads.
type countingSource struct {
	audit.LogSource
	p *progress
}

func (c countingSource) Leaves(ctx context.Context, fn func(index uint64, leaf []byte) error) error {
	return c.LogSource.Leaves(ctx, func(index uint64, leaf []byte) error {
		c.p.add(1)
		return fn(index, leaf)
	})
}
