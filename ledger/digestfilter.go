package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// digestFilter answers "is this record digest surely not in the log?" from
// memory. Nearly every appended record is new, and asking Badger about a key
// it does not hold walks every memtable and a Bloom filter per table: that
// was a third of the sequencer's time at a million entries. A "maybe" still
// asks Badger, so a false positive costs only that lookup.
//
// It is a chain of Bloom filters of filterBlockEntries digests each, so its
// false-positive rate stays near 1% however long the log grows, at 1.25 MiB
// per million entries. Only the sequencer goroutine uses it.
type digestFilter struct {
	blocks []*filterBlock
}

const (
	filterBlockEntries = 1 << 20
	filterBlockBits    = 10 * filterBlockEntries // 10 bits per digest: about 1% false positives
	filterProbes       = 7
)

type filterBlock struct {
	bits []uint64
	n    int
}

// probes derives the filter's bit positions from the digest itself: a
// SHA-256 digest is already uniformly distributed (double hashing).
func probes(d *[sha256.Size]byte) (h1, h2 uint64) {
	return binary.LittleEndian.Uint64(d[0:8]), binary.LittleEndian.Uint64(d[8:16]) | 1
}

func (f *digestFilter) add(d [sha256.Size]byte) {
	if f == nil {
		return
	}
	if len(f.blocks) == 0 || f.blocks[len(f.blocks)-1].n >= filterBlockEntries {
		f.blocks = append(f.blocks, &filterBlock{bits: make([]uint64, filterBlockBits/64)})
	}
	b := f.blocks[len(f.blocks)-1]
	h1, h2 := probes(&d)
	for i := range uint64(filterProbes) {
		bit := (h1 + i*h2) % filterBlockBits
		b.bits[bit/64] |= 1 << (bit % 64)
	}
	b.n++
}

// mayContain is true for every digest added, and for about 1% of others. A
// nil filter holds everything.
func (f *digestFilter) mayContain(d [sha256.Size]byte) bool {
	if f == nil {
		return true
	}
	h1, h2 := probes(&d)
	for _, b := range f.blocks {
		in := true
		for i := range uint64(filterProbes) {
			bit := (h1 + i*h2) % filterBlockBits
			if b.bits[bit/64]&(1<<(bit%64)) == 0 {
				in = false
				break
			}
		}
		if in {
			return true
		}
	}
	return false
}

// loadDigestFilter fills a filter with every record digest the index holds.
func loadDigestFilter(db *badger.DB) (*digestFilter, error) {
	f := &digestFilter{}
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{prefixDigest}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 1+sha256.Size {
				return fmt.Errorf("record digest key of %d bytes", len(k))
			}
			f.add([sha256.Size]byte(k[1:]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: load the record digests: %w", err)
	}
	return f, nil
}
