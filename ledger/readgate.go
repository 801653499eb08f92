package ledger

import "sync"

// readGate lets Close wait for the reads in flight (proofs, lookups,
// snapshots, the projections tailing the log) before it closes the index
// and the segment files under them: Badger unmaps its memtables and tables
// on close, and a read still walking one faults. A read that starts once
// Close has begun gets ErrClosed.
type readGate struct {
	mu      sync.Mutex
	reads   int
	closing bool
	idle    chan struct{} // closed when closing and no read is left
}

// enter admits a read, or refuses it with ErrClosed; leave must follow.
func (g *readGate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return ErrClosed
	}
	g.reads++
	return nil
}

func (g *readGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reads--
	if g.closing && g.reads == 0 {
		close(g.idle)
	}
}

// close refuses new reads and waits for those in flight.
func (g *readGate) close() {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		<-g.idle
		return
	}
	g.closing = true
	g.idle = make(chan struct{})
	if g.reads == 0 {
		close(g.idle)
	}
	g.mu.Unlock()
	<-g.idle
}
