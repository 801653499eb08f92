package ledger_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"evident.dev/evident/ledger"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proofLog.cleanup()
	os.Exit(code)
}

// benchPool is a pool of distinct signed records whose leaves are about
// 1.5 KB; benchmarks give each append its own digest.
func benchPool(b *testing.B) []ledger.Record {
	b.Helper()
	pool := make([]ledger.Record, 256)
	for i := range pool {
		pool[i] = makeRecord(b, spec{n: i})
	}
	return pool
}

func digestOf(i uint64) [32]byte {
	return sha256.Sum256(binary.BigEndian.AppendUint64([]byte("bench"), i))
}

// BenchmarkAppend appends from many goroutines at once, as ingest does: one
// fdatasync per batch (group commit).
func BenchmarkAppend(b *testing.B) {
	l := openLog(b, b.TempDir(), nil)
	pool := benchPool(b)
	var seq atomic.Uint64
	b.SetParallelism(64) // appenders mostly wait for their batch's sync
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			r := pool[i%uint64(len(pool))]
			r.Digest = digestOf(i)
			if _, err := l.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(must(l.Leaf(context.Background(), 0)))), "leaf-bytes")
}

// sharedLog is a log built once per process, removed by TestMain.
type sharedLog struct {
	once sync.Once
	dir  string
	log  *ledger.Log
	err  error
}

// proofLog is a log of proofLogSize entries.
var proofLog sharedLog

const proofLogSize = 100_000

func (p *sharedLog) cleanup() {
	if p.log != nil {
		p.log.Close()
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

func buildProofLog(b *testing.B) *ledger.Log {
	proofLog.once.Do(func() {
		proofLog.dir, proofLog.err = os.MkdirTemp("", "ledger-bench-")
		if proofLog.err != nil {
			return
		}
		signer := testSigner(b)
		l, err := ledger.Open(ledger.Config{Dir: proofLog.dir, Origin: testOrigin, Signer: signer})
		if err != nil {
			proofLog.err = err
			return
		}
		proofLog.log = l
		pool := benchPool(b)
		var seq atomic.Uint64
		var wg sync.WaitGroup
		errs := make(chan error, 128)
		for range 128 { // enough concurrent appenders to fill large batches
			wg.Go(func() {
				for {
					i := seq.Add(1) - 1
					if i >= proofLogSize {
						return
					}
					r := pool[i%uint64(len(pool))]
					r.Digest = digestOf(i)
					if _, err := l.Append(context.Background(), r); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		proofLog.err = errors.Join(<-errs)
	})
	if proofLog.err != nil {
		b.Fatal(proofLog.err)
	}
	return proofLog.log
}

// BenchmarkInclusionProof proves random entries of a 100,000-entry log.
func BenchmarkInclusionProof(b *testing.B) {
	if testing.Short() {
		b.Skip("builds a log of 100,000 entries")
	}
	l := buildProofLog(b)
	ctx := context.Background()
	root := must(l.RootHash(ctx, proofLogSize))
	leaf := must(l.Leaf(ctx, 12345))
	pr := must(l.InclusionProof(ctx, 12345, proofLogSize))
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 12345, proofLogSize, rfc6962.DefaultHasher.HashLeaf(leaf), toSlices(pr), root[:]); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		if _, err := l.InclusionProof(ctx, rng.Uint64N(proofLogSize), proofLogSize); err != nil {
			b.Fatal(err)
		}
	}
}
