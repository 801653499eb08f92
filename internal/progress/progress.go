// Package progress has Mark, a count that only grows and that goroutines
// wait on: how many entries the log has made durable, how many a
// projection of it has folded in, how many an exporter has stored. Each
// publisher advances its own mark, and a reader waits for exactly the
// count it needs, without polling and without a wake-up channel of its own.
package progress

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrStopped ends the waits on a mark stopped with a nil error.
var ErrStopped = errors.New("stopped")

// Mark is a count that only grows, which goroutines can wait on until it
// reaches a value. A stopped mark ends the waits it has not satisfied with
// the stop's error. The zero Mark is at 0 and running; a Mark must not be
// copied after first use.
type Mark struct {
	// n is read without mu so that Load and a satisfied Wait take no lock,
	// but written only with mu held: a waiter that checks n and takes wake
	// under mu cannot miss the Advance after it.
	n  atomic.Uint64
	mu sync.Mutex
	// wake is closed when n grows or the mark stops. Only a waiter makes
	// it, so advancing a mark nobody waits on allocates nothing: a log
	// advances its mark at every batch.
	wake chan struct{}
	err  error // why the mark stopped; nil while it runs
}

// Load returns the mark's value.
func (m *Mark) Load() uint64 { return m.n.Load() }

// Advance raises the mark to n and wakes its waiters. An n not above the
// mark's value changes nothing. A stopped mark still advances: waits it
// satisfies succeed.
func (m *Mark) Advance(n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n <= m.n.Load() {
		return
	}
	m.n.Store(n)
	m.wakeLocked()
}

// Stop ends every wait the mark has not satisfied, now and later, with err
// (ErrStopped if nil). Only the first Stop counts.
func (m *Mark) Stop(err error) {
	if err == nil {
		err = ErrStopped
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		m.err = err
		m.wakeLocked()
	}
}

func (m *Mark) wakeLocked() {
	if m.wake != nil {
		close(m.wake)
		m.wake = nil
	}
}

// Wait blocks until the mark reaches n and returns its value. If the mark
// is stopped or ctx ends first, it returns the mark's value with the error
// Stop was given or ctx's error; a mark that has reached n satisfies the
// wait even then.
func (m *Mark) Wait(ctx context.Context, n uint64) (uint64, error) {
	for {
		if v := m.n.Load(); v >= n {
			return v, nil
		}
		m.mu.Lock()
		v := m.n.Load()
		switch {
		case v >= n:
			m.mu.Unlock()
			return v, nil
		case m.err != nil:
			err := m.err
			m.mu.Unlock()
			return v, err
		}
		if m.wake == nil {
			m.wake = make(chan struct{})
		}
		wake := m.wake
		m.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			v := m.n.Load()
			if v < n {
				return v, ctx.Err()
			}
			return v, nil
		}
	}
}
