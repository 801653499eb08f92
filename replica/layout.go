// Package replica replicates an Evident log. It publishes the log to S3-compatible object storage in
// the C2SP tlog-tiles layout (https://c2sp.org/tlog-tiles) and reads it back:
//
//   - checkpoint: the log's latest signed checkpoint (C2SP tlog-checkpoint);
//   - tile/<L>/<N>[.p/<W>]: hash tiles of height 8, readable by any tlog
//     client (golang.org/x/mod/sumdb/tlog, transparency-dev's clients);
//   - tile/entries/<N>[.p/<W>]: entry bundles, each leaf in Evident's leaf
//     encoding (the exact bytes the tree commits to), length-prefixed.
//
// The Exporter tails a writer's log and keeps the bucket within seconds of
// each checkpoint; with durability object-store, the writer acknowledges a
// record only once its entry bundle is stored (Exporter.WaitUploaded). The
// Follower tails the bucket into a follower ledger (a read replica), checking
// every bundle against hash tiles authenticated by a signed checkpoint, and
// Restore rebuilds a data directory from it for disaster recovery. Objects are
// written once: a full tile or bundle never changes, and a partial one is a
// new object per width.
//
// Lead (lease.go) runs one writer at a time among several replicas of it,
// through a Kubernetes Lease; the bucket, not the lease, is the fence.
package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Height is the tile height the spec fixes: 256 hashes or entries per tile.
const Height = 8

// width is the number of entries or hashes in a full tile.
const width = 1 << Height

// CheckpointPath is the key of the latest checkpoint.
const CheckpointPath = "checkpoint"

// maxBundleLeaf is the largest leaf an entry bundle can hold: the spec
// prefixes each entry with a big-endian uint16 length.
const maxBundleLeaf = 1<<16 - 1

// TilePath is the key of hash tile n at level, w hashes wide (0 or 256: full).
func TilePath(level int, n uint64, w int) string {
	return "tile/" + strconv.Itoa(level) + "/" + indexPath(n) + partial(w)
}

// EntriesPath is the key of entry bundle n, w entries wide (0 or 256: full).
func EntriesPath(n uint64, w int) string {
	return "tile/entries/" + indexPath(n) + partial(w)
}

func partial(w int) string {
	if w <= 0 || w >= width {
		return ""
	}
	return ".p/" + strconv.Itoa(w)
}

// indexPath encodes a tile index as the spec does: groups of three decimal
// digits, all but the last prefixed with x (1234067 is x001/x234/067).
func indexPath(n uint64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/", n%1000) + s
	}
	return s
}

// EncodeBundle encodes leaves as an entry bundle.
func EncodeBundle(leaves [][]byte) ([]byte, error) {
	n := 0
	for _, l := range leaves {
		n += 2 + len(l)
	}
	b := make([]byte, 0, n)
	for _, l := range leaves {
		if len(l) > maxBundleLeaf {
			return nil, fmt.Errorf("%w: a leaf of %d bytes", ErrLeafTooLarge, len(l))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(l)))
		b = append(b, l...)
	}
	return b, nil
}

// ErrLeafTooLarge: an entry bundle holds leaves of at most 65535 bytes.
var ErrLeafTooLarge = errors.New("leaf too large for an entry bundle")

// DecodeBundle splits an entry bundle into its leaves. The leaves alias b.
func DecodeBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("entry bundle: truncated length after %d entries", len(out))
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, fmt.Errorf("entry bundle: entry %d claims %d bytes, %d left", len(out), n, len(b)-2)
		}
		out = append(out, b[2:2+n:2+n])
		b = b[2+n:]
	}
	return out, nil
}

// parseBundlePartial returns the width in a partial bundle key
// "<EntriesPath(n)>.p/<w>", or 0.
func parseBundlePartial(key, prefix string) int {
	w, err := strconv.Atoi(strings.TrimPrefix(key, prefix))
	if err != nil || !strings.HasPrefix(key, prefix) || w <= 0 || w >= width {
		return 0
	}
	return w
}
