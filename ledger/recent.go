package ledger

import (
	"sync"

	"evident.dev/evident/evidence"
)

// recent keeps the last entries made durable, decoded, with the statements
// the verifier decoded as they were posted. Everything that follows the log
// (the metrics projection, the completeness tracker) and the judges reading
// a change's history mostly ask for entries appended moments ago: serving
// those from memory spares reading and decoding each entry again once per
// reader, which at ingest rates costs about as much as ingest itself.
type recent struct {
	mu    sync.RWMutex
	slots []*evidence.Entry // entry i is in slots[i % len(slots)] while it is recent
}

func newRecent(n int) *recent { return &recent{slots: make([]*evidence.Entry, n)} }

func (r *recent) put(es []*evidence.Entry) {
	if len(r.slots) == 0 || len(es) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range es {
		r.slots[e.Index%uint64(len(r.slots))] = e
	}
}

func (r *recent) get(i uint64) (*evidence.Entry, bool) {
	if len(r.slots) == 0 {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	e := r.slots[i%uint64(len(r.slots))]
	if e == nil || e.Index != i {
		return nil, false
	}
	return e, true
}
