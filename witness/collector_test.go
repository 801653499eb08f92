package witness_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/testenv"
	"evident.dev/evident/ledger"
	"evident.dev/evident/witness"
)

const origin = "evident.test/witnessed"

// testLog is a real ledger signing checkpoints with key under origin.
func testLog(t testing.TB, key ed25519.PrivateKey) *ledger.Log {
	t.Helper()
	signer, err := checkpoint.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := ledger.Open(ledger.Config{Dir: t.TempDir(), Origin: origin, Signer: signer, CheckpointInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return lg
}

// appendN appends n records whose bytes start with tag, so that two logs
// fed different tags hold different histories, and waits for a checkpoint
// covering them.
func appendN(t testing.TB, lg *ledger.Log, tag string, n int) uint64 {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		env := fmt.Appendf(nil, `{"payloadType":"test","payload":"%s-%d-%d","signatures":[]}`, tag, lg.Size(), i)
		if _, err := lg.Append(ctx, ledger.Record{Envelope: env, Digest: sha256.Sum256(env)}); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	size := lg.Size()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := lg.WaitCheckpoint(wctx, size-1); err != nil {
		t.Fatalf("no checkpoint of %d entries: %v", size, err)
	}
	return size
}

// startCollector runs a collector until the returned stop, or the test's
// end.
func startCollector(t *testing.T, cfg witness.Config) (*witness.Collector, func()) {
	t.Helper()
	cfg.Retry = 50 * time.Millisecond
	c, err := witness.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// waitWitnessed waits until the collector serves a witnessed checkpoint of
// at least size entries, and returns it.
func waitWitnessed(t *testing.T, c *witness.Collector, size uint64) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if w := c.Witnessed(); w != nil {
			cp, err := checkpoint.Parse(w, origin)
			if err != nil {
				t.Fatal(err)
			}
			if cp.Size >= size {
				return w
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d entries witnessed in 20s", size)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func witnesses(ws ...*testenv.Witness) []witness.Witness {
	var out []witness.Witness
	for _, w := range ws {
		out = append(out, witness.Witness{Name: w.Name, Key: w.Key, URL: w.URL})
	}
	return out
}

// Two real witnesses cosign the log's checkpoints as it grows, each time
// checking a consistency proof from the one they hold; the cosigned
// checkpoint survives a restart of the log's collector, which finds out
// from the witnesses' 409 answers what they hold.
func TestCollectorGathersCosignatures(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	lg := testLog(t, key)
	w1, w2 := testenv.StartWitness(t, "witness.test/one"), testenv.StartWitness(t, "witness.test/two")
	w1.AddLog(t, origin, lg.VerifierKey())
	w2.AddLog(t, origin, lg.VerifierKey())
	state := filepath.Join(t.TempDir(), "witnessed-checkpoint")
	cfg := witness.Config{Log: lg, Witnesses: witnesses(w1, w2), State: state}
	c, stop := startCollector(t, cfg)
	policy, err := witness.NewPolicy([]string{w1.Key, w2.Key}, 2)
	if err != nil {
		t.Fatal(err)
	}
	logVerifier, err := note.NewVerifier(lg.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	for round, n := range []int{3, 1, 40} {
		size := appendN(t, lg, "a", n)
		got := waitWitnessed(t, c, size)
		names, err := policy.Check(got)
		if err != nil || len(names) != 2 {
			t.Fatalf("round %d: policy: %v %v", round, names, err)
		}
		if _, err := checkpoint.Open(got, origin, logVerifier); err != nil {
			t.Fatalf("round %d: the cosigned checkpoint no longer opens with the log key: %v", round, err)
		}
		kept, err := os.ReadFile(state)
		if err != nil {
			t.Fatal(err)
		}
		if cp, _ := checkpoint.Parse(kept, origin); cp == nil || cp.Size < size {
			t.Fatalf("round %d: the state file keeps %q", round, kept)
		}
	}

	// A new collector (a restarted server) starts from the kept checkpoint
	// and believes the witnesses hold nothing: they answer 409 with their
	// size, and it proves consistency from there.
	stop()
	before := c.Witnessed()
	loaded, err := witness.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Witnessed(); !bytes.Equal(got, before) {
		t.Fatalf("a restarted collector serves %q, want the kept %q", got, before)
	}
	c2, _ := startCollector(t, cfg)
	size := appendN(t, lg, "a", 5)
	if _, err := policy.Check(waitWitnessed(t, c2, size)); err != nil {
		t.Fatal(err)
	}
}

// A fork of the log (same key, same origin, another history) is refused by
// a witness that cosigned the original: at the same size its root differs,
// and no consistency proof leads from the original to it. Its checkpoints
// never gather a cosignature, and pasting the original's cosignatures onto
// the fork's checkpoint is caught by the policy.
func TestSplitViewIsRefused(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	real, fork := testLog(t, key), testLog(t, key)
	w := testenv.StartWitness(t, "witness.test/split")
	w.AddLog(t, origin, real.VerifierKey())
	policy, err := witness.NewPolicy([]string{w.Key}, 1)
	if err != nil {
		t.Fatal(err)
	}

	c, _ := startCollector(t, witness.Config{Log: real, Witnesses: witnesses(w), State: filepath.Join(t.TempDir(), "state")})
	size := appendN(t, real, "real", 8)
	honest := waitWitnessed(t, c, size)

	// The fork at the same size: another root.
	if got := appendN(t, fork, "fork", 8); got != size {
		t.Fatalf("fork size %d, want %d", got, size)
	}
	forked, err := fork.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	realCP, _ := checkpoint.Parse(honest, origin)
	forkCP, _ := checkpoint.Parse(forked, origin)
	if forkCP.Size != realCP.Size || forkCP.Root == realCP.Root {
		t.Fatalf("not a split view: %d/%x and %d/%x", realCP.Size, realCP.Root, forkCP.Size, forkCP.Root)
	}
	ctx := context.Background()
	_, err = witness.AddCheckpoint(ctx, http.DefaultClient, w.URL, size, nil, forked)
	if !errors.Is(err, witness.ErrRefused) {
		t.Fatalf("the witness answered the forked checkpoint of the same size with %v, want a refusal", err)
	}

	// The fork grows on; its own collector never gets a cosignature.
	fc, _ := startCollector(t, witness.Config{Log: fork, Witnesses: witnesses(w), State: filepath.Join(t.TempDir(), "state")})
	appendN(t, fork, "fork", 4)
	time.Sleep(500 * time.Millisecond) // several rounds at the 50ms retry
	if got := fc.Witnessed(); got != nil {
		t.Fatalf("the fork got a witnessed checkpoint: %q", got)
	}

	// The honest cosignature pasted under the fork's checkpoint.
	_, cosig, _ := strings.Cut(string(honest), "\n— "+w.Name+" ")
	transplanted := append(append([]byte(nil), forked...), "— "+w.Name+" "+cosig...)
	if _, err := policy.Check(transplanted); !errors.Is(err, witness.ErrNotWitnessed) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("a transplanted cosignature: %v, want a refusal naming it", err)
	}
	if _, err := policy.Check(forked); !errors.Is(err, witness.ErrNotWitnessed) {
		t.Fatalf("the fork's bare checkpoint: %v, want not witnessed", err)
	}
}

// A damaged state file (or one a changed policy no longer accepts) is not
// served and does not stop the log: the next witnessed checkpoint replaces
// it.
func TestDamagedStateIsNotServed(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	lg := testLog(t, key)
	_, wkey := cosigner(t, "witness.test/state")
	state := filepath.Join(t.TempDir(), "state")
	for _, kept := range []string{"garbage", origin + "\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— someone AAAAAAAAAAAA\n", ""} {
		if err := os.WriteFile(state, []byte(kept), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := witness.New(witness.Config{Log: lg, State: state, Witnesses: []witness.Witness{{Name: "witness.test/state", Key: wkey, URL: "http://127.0.0.1:1"}}})
		if err != nil {
			t.Fatalf("state %q: %v", kept, err)
		}
		if got := c.Witnessed(); got != nil {
			t.Fatalf("state %q is served: %q", kept, got)
		}
	}
}
