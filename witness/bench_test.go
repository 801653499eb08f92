package witness_test

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"testing"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/internal/testenv"
	"evident.dev/evident/witness"
)

// BenchmarkAddCheckpoint is one witness round trip: a new checkpoint of a
// real ledger, with its consistency proof from the previous one, cosigned
// by a real litewitness on loopback (SQLite write and ssh-agent signature
// included). The log's append is outside the timer.
func BenchmarkAddCheckpoint(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	lg := testLog(b, key)
	w := testenv.StartWitness(b, "witness.test/bench")
	w.AddLog(b, origin, lg.VerifierKey())
	ctx := context.Background()
	var held uint64
	for b.Loop() {
		b.StopTimer()
		size := appendN(b, lg, "bench", 1)
		signed, err := lg.Checkpoint()
		if err != nil {
			b.Fatal(err)
		}
		cp, err := checkpoint.Parse(signed, origin)
		if err != nil || cp.Size != size {
			b.Fatalf("checkpoint %v of %d entries, want %d", err, cp.Size, size)
		}
		var proof [][32]byte
		if held > 0 {
			if proof, err = lg.ConsistencyProof(ctx, held, cp.Size); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if _, err := witness.AddCheckpoint(ctx, http.DefaultClient, w.URL, held, proof, signed); err != nil {
			b.Fatal(err)
		}
		held = cp.Size
	}
}
