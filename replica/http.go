package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// TileLog is the log a TileServer serves (*ledger.Log, a writer's or a
// follower's).
type TileLog interface {
	Checkpoint() ([]byte, error)
	CheckpointSize() uint64
	Leaf(ctx context.Context, index uint64) ([]byte, error)
	ReadHashes(indexes []int64) ([]tlog.Hash, error)
}

// TileServer serves a log over HTTP in the C2SP tlog-tiles layout, so that
// any tlog-tiles client reads it as it reads the Go checksum database or a
// Tessera log: GET /checkpoint, /tile/<L>/<N>[.p/<W>] and
// /tile/entries/<N>[.p/<W>]. Tiles and bundles are built as the export
// builds the objects it stores (tlog.ReadTileData, EncodeBundle), so the
// bucket and the server answer the same bytes. Only what the latest signed
// checkpoint covers is served: a client never reads a tile of entries no
// checkpoint commits to.
type TileServer struct {
	log    TileLog
	logger *slog.Logger
}

// NewTileServer serves log.
func NewTileServer(log TileLog, logger *slog.Logger) *TileServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &TileServer{log: log, logger: logger}
}

// Register adds the tlog-tiles routes to mux.
func (s *TileServer) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /checkpoint", s.serveCheckpoint)
	mux.HandleFunc("GET /tile/{path...}", s.serveTile)
}

// A tile's or bundle's bytes never change once served: its name says
// which hashes or entries it holds, and the log is append-only. The
// checkpoint changes with every batch.
const (
	immutable = "public, max-age=31536000, immutable"
	fresh     = "no-cache"
)

func (s *TileServer) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.log.Checkpoint()
	if err != nil {
		http.Error(w, "no signed checkpoint yet", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", fresh)
	_, _ = w.Write(cp)
}

func (s *TileServer) serveTile(w http.ResponseWriter, r *http.Request) {
	t, err := ParseTilePath("tile/" + r.PathValue("path"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	size := s.log.CheckpointSize()
	if !t.within(size) {
		http.Error(w, fmt.Sprintf("%s is beyond the latest signed checkpoint (%d entries)", t, size), http.StatusNotFound)
		return
	}
	var data []byte
	if t.Entries {
		data, err = s.bundle(r.Context(), t)
	} else {
		data, err = tlog.ReadTileData(tlog.Tile{H: Height, L: t.Level, N: int64(t.N), W: t.width()}, s.log)
	}
	if err != nil {
		s.logger.Error("tile", "path", t.String(), "err", err)
		http.Error(w, "internal error reading the log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", immutable)
	_, _ = w.Write(data)
}

func (s *TileServer) bundle(ctx context.Context, t Tile) ([]byte, error) {
	first := t.N * width
	leaves := make([][]byte, 0, t.width())
	for i := first; i < first+uint64(t.width()); i++ {
		leaf, err := s.log.Leaf(ctx, i)
		if err != nil {
			return nil, err
		}
		leaves = append(leaves, leaf)
	}
	return EncodeBundle(leaves)
}

// Tile names a hash tile or an entry bundle of the tlog-tiles layout.
type Tile struct {
	Entries bool // an entry bundle, not a hash tile
	Level   int  // of a hash tile: 0 holds leaf hashes
	N       uint64
	W       int // 1-255 for a partial tile, 0 for a full one
}

func (t Tile) width() int {
	if t.W == 0 {
		return width
	}
	return t.W
}

// within reports whether a tree of size entries holds all of t.
func (t Tile) within(size uint64) bool {
	shift := uint(Height * t.Level)
	if shift >= 64 || t.N > (^uint64(0)-uint64(width))/width {
		return false
	}
	end := t.N*width + uint64(t.width()) // hashes or entries at the tile's level
	return end <= size>>shift
}

// String is the tile's path.
func (t Tile) String() string {
	if t.Entries {
		return EntriesPath(t.N, t.W)
	}
	return TilePath(t.Level, t.N, t.W)
}

// ErrTilePath: a path that is not a canonical tlog-tiles path.
var ErrTilePath = errors.New("not a tlog-tiles path")

// ParseTilePath parses "tile/<L>/<N>[.p/<W>]" or "tile/entries/<N>[.p/<W>]".
// Only the canonical spelling is accepted (three-digit groups, no leading
// zeros in L or W, W below 256), so one tile has one name.
func ParseTilePath(p string) (Tile, error) {
	bad := func() (Tile, error) { return Tile{}, fmt.Errorf("%w: %q", ErrTilePath, p) }
	rest, ok := strings.CutPrefix(p, "tile/")
	if !ok {
		return bad()
	}
	var t Tile
	head, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad()
	}
	if head == "entries" {
		t.Entries = true
	} else {
		l, err := strconv.Atoi(head)
		if err != nil || l < 0 || l > 7 {
			return bad()
		}
		t.Level = l
	}
	if i := strings.Index(rest, ".p/"); i >= 0 {
		w, err := strconv.Atoi(rest[i+3:])
		if err != nil || w < 1 || w >= width {
			return bad()
		}
		t.W, rest = w, rest[:i]
	}
	groups := strings.Split(rest, "/")
	if len(groups) > 7 { // 20 decimal digits at most
		return bad()
	}
	for i, g := range groups {
		if i < len(groups)-1 {
			if g, ok = strings.CutPrefix(g, "x"); !ok {
				return bad()
			}
		}
		if len(g) != 3 || strings.Trim(g, "0123456789") != "" {
			return bad()
		}
		d, _ := strconv.ParseUint(g, 10, 64)
		if t.N > (^uint64(0)-d)/1000 {
			return bad()
		}
		t.N = t.N*1000 + d
	}
	if t.String() != p {
		return bad()
	}
	return t, nil
}
