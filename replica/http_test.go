package replica_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/replica"
)

// serveTiles serves l's tlog-tiles routes on 127.0.0.1 until the test ends.
func serveTiles(t testing.TB, l replica.TileLog) string {
	mux := http.NewServeMux()
	replica.NewTileServer(l, nil).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// fromHTTP reads tiles over HTTP, checking the caching the spec asks for.
func fromHTTP(t testing.TB, base string) sumdbTiles {
	return sumdbTiles{func(p string) ([]byte, error) {
		body, resp, err := get(base + "/" + p)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %s", p, resp.Status, body)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s: Cache-Control %q, want immutable", p, cc)
		}
		return body, nil
	}}
}

func get(url string) ([]byte, *http.Response, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp, err
}

// A writer and a read replica serve the log over HTTP in the tlog-tiles
// layout, byte for byte what the export stored in the bucket, and a
// standard client (x/mod/sumdb/tlog's tile reader, transparency-dev's
// checkpoint parser) proves every entry included and the tree consistent
// with an older checkpoint, reading nothing but HTTP.
func TestTileServerSpeaksTlogTiles(t *testing.T) {
	m := miniotest.Start(t)
	m.Bucket(t, "evident")
	store := openStore(t, m, "evident")
	w := openWriter(t, t.TempDir())
	exp, _ := startExporter(t, w, store)
	recs := newRecordMaker(t)
	writer := serveTiles(t, w)

	appendN(t, w, recs, 0, 300)
	waitFor(t, "a checkpoint of 300 entries", func() bool { return w.CheckpointSize() == 300 && exp.Exported() == 300 })
	oldRaw, resp, err := get(writer + "/checkpoint")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /checkpoint: %v %v", resp, err)
	}
	if cc := resp.Header.Get("Cache-Control"); strings.Contains(cc, "immutable") || strings.Contains(cc, "max-age") {
		t.Errorf("the checkpoint is served with Cache-Control %q: caches would pin a stale head", cc)
	}
	appendN(t, w, recs, 300, 420)
	waitFor(t, "a checkpoint of 720 entries", func() bool { return w.CheckpointSize() == 720 && exp.Exported() == 720 })

	f := openFollower(t, t.TempDir())
	stopFollower := startFollower(t, f, store)
	waitFor(t, "the replica to follow", func() bool { return f.CheckpointSize() == 720 })
	if err := stopFollower(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	follower := serveTiles(t, f)

	v, err := note.NewVerifier(w.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	old, _, _, err := log.ParseCheckpoint(oldRaw, origin, v)
	if err != nil {
		t.Fatal(err)
	}
	for name, base := range map[string]string{"writer": writer, "replica": follower} {
		raw, _, err := get(base + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
		if err != nil || cp.Size != 720 {
			t.Fatalf("%s: checkpoint %+v: %v", name, cp, err)
		}
		tree := tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Hash)}
		tr := fromHTTP(t, base)
		hr := tlog.TileHashReader(tree, tr)
		for n := int64(0); n*256 < tree.N; n++ { // every entry, bundle by bundle
			bundle := tlog.Tile{H: 8, L: -1, N: n, W: int(min(256, tree.N-n*256))}
			bs, err := tr.ReadTiles([]tlog.Tile{bundle})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			leaves := splitBundle(t, bs[0])
			if len(leaves) != bundle.W {
				t.Fatalf("%s: bundle %d holds %d entries, want %d", name, n, len(leaves), bundle.W)
			}
			for j, leaf := range leaves {
				i := n*256 + int64(j)
				proof, err := tlog.ProveRecord(tree.N, i, hr)
				if err != nil {
					t.Fatalf("%s: prove %d: %v", name, i, err)
				}
				if err := tlog.CheckRecord(proof, tree.N, tree.Hash, i, tlog.RecordHash(leaf)); err != nil {
					t.Fatalf("%s: entry %d: %v", name, i, err)
				}
			}
		}
		proof, err := tlog.ProveTree(tree.N, int64(old.Size), hr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(proof, tree.N, tree.Hash, int64(old.Size), tlog.Hash(old.Hash)); err != nil {
			t.Fatalf("%s: consistency %d..%d: %v", name, old.Size, cp.Size, err)
		}
	}

	// Every object the export stored is what the servers answer.
	keys, err := store.List(context.Background(), "tile/")
	if err != nil || len(keys) == 0 {
		t.Fatalf("bucket: %v %v", keys, err)
	}
	for _, k := range keys {
		want, err := store.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		for _, base := range []string{writer, follower} {
			body, resp, err := get(base + "/" + k)
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
				t.Fatalf("GET %s from %s: %v %v: differs from the bucket's object", k, base, resp.Status, err)
			}
		}
	}

	// What no signed checkpoint covers, or no canonical name names, is not
	// served.
	for path, status := range map[string]int{
		"tile/0/002.p/208":     http.StatusOK, // the right edge at 720
		"tile/0/002.p/209":     http.StatusNotFound,
		"tile/0/003":           http.StatusNotFound,
		"tile/1/000.p/2":       http.StatusOK,
		"tile/1/000.p/3":       http.StatusNotFound,
		"tile/entries/002.p/1": http.StatusOK, // an older tree's partial bundle
		"tile/entries/003":     http.StatusNotFound,
		"tile/0/x000/001":      http.StatusBadRequest, // not canonical
		"tile/00/001":          http.StatusBadRequest,
		"tile/0/1":             http.StatusBadRequest,
		"tile/0/001.p/256":     http.StatusBadRequest,
		"tile/0/001.p/0":       http.StatusBadRequest,
		"tile/8/000":           http.StatusBadRequest,
		"tile/0/x999/x999/x999/x999/x999/x999/999": http.StatusBadRequest,
		"tile/entries/-01":                         http.StatusBadRequest,
	} {
		body, resp, err := get(writer + "/" + path)
		if err != nil || resp.StatusCode != status {
			t.Errorf("GET %s: %v %v (%s), want %d", path, resp.Status, err, bytes.TrimSpace(body), status)
		}
	}
}

// splitBundle decodes an entry bundle as the spec defines it (big-endian
// uint16 length, then the entry), independently of replica.DecodeBundle.
func splitBundle(t testing.TB, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(b[0])<<8|int(b[1]) {
			t.Fatalf("truncated bundle after %d entries", len(out))
		}
		n := int(b[0])<<8 | int(b[1])
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

// FuzzParseTilePath: a path is accepted only in its canonical spelling,
// which the parsed tile spells back.
func FuzzParseTilePath(f *testing.F) {
	for _, p := range []string{"tile/0/000", "tile/entries/x001/234.p/7", "tile/3/x999/x999/x999/x999/x999/x018/446", "tile/0/001.p/0", "tile/x"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tile, err := replica.ParseTilePath(p)
		if err != nil {
			return
		}
		if tile.String() != p {
			t.Fatalf("%q parsed to %+v, which is spelled %q", p, tile, tile.String())
		}
	})
}
