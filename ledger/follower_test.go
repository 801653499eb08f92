package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"evident.dev/evident/ledger"
)

// openFollower opens a follower of the test log in dir.
func openFollower(t testing.TB, dir string) *ledger.Log {
	t.Helper()
	return openLog(t, dir, func(c *ledger.Config) {
		c.Signer = nil
		c.VerifierKey = testSigner(t).VerifierKey()
	})
}

// A follower given the writer's leaves and checkpoint holds the same log:
// same leaves, checkpoint, roots, proofs, hashes and index lookups. It
// refuses records of its own, and a call with a leaf or checkpoint that does
// not extend it stores nothing of the call.
func TestFollowerMirrorsLeaves(t *testing.T) {
	ctx := context.Background()
	w := openLog(t, t.TempDir(), nil)
	appendConcurrently(t, w, makeRecords(t, 0, 300), 8)
	waitFor(t, "a checkpoint of every entry", func() bool { return w.CheckpointSize() == w.Size() })
	wl := leaves(t, w)
	cp, err := w.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}

	f := openFollower(t, t.TempDir())
	if _, err := f.Append(ctx, makeRecords(t, 1000, 1)[0]); !errors.Is(err, ledger.ErrFollower) {
		t.Fatalf("Append on a follower: %v, want ErrFollower", err)
	}
	if _, err := w.AppendLeaves(ctx, wl[:1], nil); !errors.Is(err, ledger.ErrNotFollower) {
		t.Fatalf("AppendLeaves on a writer: %v, want ErrNotFollower", err)
	}
	if _, err := f.AppendLeaves(ctx, wl[:100], nil); err != nil {
		t.Fatal(err)
	}

	// A gap, a foreign leaf, a damaged leaf, and a checkpoint for another
	// tree are refused whole.
	damaged := bytes.Clone(wl[100])
	damaged[len(damaged)-3] ^= 1
	for name, call := range map[string]struct {
		leaves [][]byte
		cp     []byte
	}{
		"gap":              {wl[101:120], nil},
		"replay":           {wl[50:60], nil},
		"damaged":          {append([][]byte{damaged}, wl[101:110]...), nil},
		"early checkpoint": {wl[100:200], cp},
	} {
		if _, err := f.AppendLeaves(ctx, call.leaves, call.cp); !errors.Is(err, ledger.ErrMirror) {
			t.Errorf("%s: %v, want ErrMirror", name, err)
		}
		if f.Size() != 100 {
			t.Fatalf("%s: follower size %d after a refused call, want 100", name, f.Size())
		}
	}
	forged := bytes.Replace(cp, []byte("\n300\n"), []byte("\n200\n"), 1)
	if _, err := f.AppendLeaves(ctx, wl[100:200], forged); !errors.Is(err, ledger.ErrMirror) || f.Size() != 100 {
		t.Fatalf("forged checkpoint: %v (size %d), want ErrMirror and nothing stored", err, f.Size())
	}

	if _, err := f.AppendLeaves(ctx, wl[100:300], cp); err != nil {
		t.Fatal(err)
	}
	got, err := f.Checkpoint()
	if err != nil || !bytes.Equal(got, cp) || f.CheckpointSize() != 300 {
		t.Fatalf("follower checkpoint %q (size %d, err %v), want the writer's", got, f.CheckpointSize(), err)
	}
	if fl := leaves(t, f); len(fl) != len(wl) {
		t.Fatalf("follower holds %d leaves, want %d", len(fl), len(wl))
	} else {
		for i := range fl {
			if !bytes.Equal(fl[i], wl[i]) {
				t.Fatalf("leaf %d differs", i)
			}
		}
	}
	for _, size := range []uint64{1, 7, 256, 300} {
		a, _ := w.RootHash(ctx, size)
		b, err := f.RootHash(ctx, size)
		if err != nil || a != b {
			t.Fatalf("root of %d: follower %x (%v), writer %x", size, b, err, a)
		}
		pa, _ := w.InclusionProof(ctx, size-1, 300)
		pb, err := f.InclusionProof(ctx, size-1, 300)
		if err != nil || len(pa) != len(pb) {
			t.Fatalf("inclusion of %d: %v", size-1, err)
		}
		for i := range pa {
			if pa[i] != pb[i] {
				t.Fatalf("inclusion proof of %d differs at %d", size-1, i)
			}
		}
	}
	idx := []int64{tlog.StoredHashIndex(0, 0), tlog.StoredHashIndex(8, 0), tlog.StoredHashIndex(2, 74)}
	ha, err := w.ReadHashes(idx)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := f.ReadHashes(idx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ha {
		if ha[i] != hb[i] {
			t.Fatalf("stored hash %d differs", idx[i])
		}
	}
	if _, err := f.ReadHashes([]int64{tlog.StoredHashIndex(2, 75)}); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("hash of an incomplete subtree: %v, want ErrNotFound", err)
	}
	q := ledger.Query{Name: ledger.TermKind, Value: "plan.created", Limit: 1000}
	la, _ := w.Lookup(ctx, q)
	lb, err := f.Lookup(ctx, q)
	if err != nil || len(la) != len(lb) || len(la) == 0 {
		t.Fatalf("lookup: writer %d entries, follower %d (%v)", len(la), len(lb), err)
	}

	// Reopened, the follower still holds the log and its checkpoint.
	dir := t.TempDir()
	f2 := openFollower(t, dir)
	if _, err := f2.AppendLeaves(ctx, wl[:300], cp); err != nil {
		t.Fatal(err)
	}
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	f3 := openFollower(t, dir)
	if f3.Size() != 300 || f3.CheckpointSize() != 300 {
		t.Fatalf("reopened follower: size %d checkpoint %d", f3.Size(), f3.CheckpointSize())
	}
	if err := f3.Close(); err != nil {
		t.Fatal(err)
	}
	// and a writer opened on it with the log's key continues the same log.
	w2 := openLog(t, dir, nil)
	appendAll(t, w2, makeRecords(t, 500, 3))
	checkChain(t, leaves(t, w2))
}
