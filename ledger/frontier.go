package ledger

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"
)

// frontier holds the roots of the complete subtrees that make up the tree
// (at most one per level): exactly the stored hashes that appending a leaf
// and hashing the tree read. The sequencer keeps it in memory so appends
// never read tree hashes from storage. Not safe for concurrent use.
type frontier map[int64]tlog.Hash

// loadFrontier reads the frontier of a tree of size n from storage: its
// hashes below minStoredLevel from the head when it is the head of a tree of
// that size, as it is for the durable head.
func loadFrontier(txn *badger.Txn, segs *segments, n uint64) (frontier, error) {
	f := frontier{}
	var low map[int64]tlog.Hash
	if item, err := txn.Get([]byte(keyHead)); err == nil {
		if err := item.Value(func(b []byte) error {
			if h, err := decodeHead(b); err == nil && h.size == n {
				low, _ = headFrontier(b, n)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("load tree frontier: %w", err)
		}
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("load tree frontier: %w", err)
	}
	for level := range bits.Len64(n) {
		if n&(1<<level) == 0 {
			continue
		}
		idx := tlog.StoredHashIndex(level, int64(n>>level)-1)
		if h, ok := low[idx]; ok {
			f[idx] = h
			continue
		}
		h, err := hashReader{txn: txn, segs: segs}.ReadHashes([]int64{idx})
		if err != nil {
			return nil, fmt.Errorf("load tree frontier: %w", err)
		}
		f[idx] = h[0]
	}
	return f, nil
}

// ReadHashes implements tlog.HashReader over the frontier.
func (f frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		h, ok := f[idx]
		if !ok {
			level, n := tlog.SplitStoredHashIndex(idx)
			return nil, fmt.Errorf("tree hash (level %d, node %d) is not on the frontier", level, n)
		}
		out[i] = h
	}
	return out, nil
}

// add records the hashes stored for leaf n (tlog.StoredHashes order: the
// leaf, then each parent it completes) and forgets the children merged away.
func (f frontier) add(n int64, stored []tlog.Hash) {
	base := tlog.StoredHashIndex(0, n)
	for k, h := range stored {
		f[base+int64(k)] = h
	}
	for level := range len(stored) - 1 {
		m := n >> level
		delete(f, tlog.StoredHashIndex(level, m))
		delete(f, tlog.StoredHashIndex(level, m-1))
	}
}

// minStoredLevel is the lowest tree level whose hashes Badger holds. A leaf
// hash, or the hash of a pair of leaves, is recomputed when a proof needs it
// (one of each per proof, both from one read of the proved entry's group of
// four leaves: lowLeaves); storing them was three of every four stored
// hashes, and a quarter of the index's keys. The few on the tree's right
// edge are in the head record (head.encode). Logs written before keep
// theirs; only verification reads them.
const minStoredLevel = 2

// cachedLevel is the lowest tree level kept in memory for proofs: a node at
// level 8 or above covers 256 entries, so the cache holds about 2/256 of a
// hash per entry (256 KiB for a million entries) and a proof reads only its
// lowest eight hashes from storage.
const cachedLevel = 8

// upperHashes caches the stored hashes at cachedLevel and above. The
// committer adds a batch's hashes once the batch is durable; proofs read it.
type upperHashes struct {
	mu sync.RWMutex
	m  map[int64]tlog.Hash
}

func loadUpperHashes(txn *badger.Txn, segs *segments, size uint64) (*upperHashes, error) {
	u := &upperHashes{m: map[int64]tlog.Hash{}}
	for level := cachedLevel; size>>level > 0; level++ {
		for n := range int64(size >> level) {
			idx := tlog.StoredHashIndex(level, n)
			h, err := hashReader{txn: txn, segs: segs}.ReadHashes([]int64{idx})
			if err != nil {
				return nil, fmt.Errorf("load cached tree hashes: %w", err)
			}
			u.m[idx] = h[0]
		}
	}
	return u, nil
}

func (u *upperHashes) add(hs map[int64]tlog.Hash) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for idx, h := range hs {
		u.m[idx] = h
	}
}

func (u *upperHashes) get(idx int64) (tlog.Hash, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	h, ok := u.m[idx]
	return h, ok
}
