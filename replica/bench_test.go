package replica_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"evident.dev/evident/internal/miniotest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/replica"
)

// BenchmarkObjectStoreDurability appends records from 64 goroutines to a
// writer in durability object-store mode against a real MinIO: each is
// acknowledged once its entry bundle is stored (and, fenced, once the
// writer's claim on the bucket is confirmed). It reports records/s.
//
//	go test ./tiles -run '^$' -bench ObjectStoreDurability -benchtime 20000x
func BenchmarkObjectStoreDurability(b *testing.B) {
	m := miniotest.Start(b)
	m.Bucket(b, "evident")
	store := openStore(b, m, "evident")
	l := openWriter(b, b.TempDir())
	exp, _ := startExporter(b, l, store)
	durable := replica.DurableAppender{Log: l, Exporter: exp}
	recs := newRecordMaker(b)
	all := make(chan ledger.Record, b.N) // signed before the clock starts
	for i := range b.N {
		all <- recs.record(b, i)
	}
	close(all)
	var failed atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for rec := range all {
				if _, err := durable.Append(context.Background(), rec); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d appends failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
