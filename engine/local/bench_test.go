package local

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// BenchmarkAppend measures durable appends (fsync before Append returns, group
// commit shared by concurrent publishers), one 200-byte event per call, each
// publisher on its own topic. Run it on the disk that will hold the data dir:
//
//	TMPDIR=/var/tmp go test -run '^$' -bench BenchmarkAppend -benchmem ./engine/local/
func BenchmarkAppend(b *testing.B) { benchmarkAppend(b, false) }

// BenchmarkAppendWithID is BenchmarkAppend with an idempotency key on every
// event: a lookup and two more keys per event.
func BenchmarkAppendWithID(b *testing.B) { benchmarkAppend(b, true) }

func benchmarkAppend(b *testing.B, ids bool) {
	for _, publishers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("publishers=%d", publishers), func(b *testing.B) {
			e := openT(b, b.TempDir(), Options{})
			data := make([]byte, 200)
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for p := range publishers {
				wg.Go(func() {
					ev := []engine.Event{{Topic: fmt.Sprintf("users/%d", p), Type: "bench", Data: data}}
					for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
						if ids {
							ev[0].ID = fmt.Sprintf("bench-%d", n)
						}
						if _, err := e.Append(ctx, ev); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// BenchmarkAppendUncachedTopic measures an append to a topic whose state is
// not in memory, on a store whose events are in tables on disk: the first
// publish to a user's topic, or the first since its state was dropped. The
// committer reads the topic's metadata before writing; for a new topic that
// read finds nothing. cached-id is an append to a topic in memory with a new
// idempotency key, whose lookup finds nothing either. No fsync, one publisher: the figure is the CPU of the
// append path, the read included.
//
//	go test -run '^$' -bench BenchmarkAppendUncachedTopic -benchmem ./engine/local/
func BenchmarkAppendUncachedTopic(b *testing.B) {
	dir := b.TempDir()
	const topics = 200_000
	e := openT(b, dir, Options{NoSync: true})
	data := make([]byte, 200)
	batch := make([]engine.Event, 0, 1000)
	for i := range topics {
		batch = append(batch, engine.Event{Topic: fmt.Sprintf("stored/%d", i), Type: "bench", Data: data})
		if len(batch) == cap(batch) {
			if _, err := e.Append(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := e.db.Flush(); err != nil {
		b.Fatal(err)
	}
	e.Close()
	for _, kind := range []string{"cached", "cached-id", "new", "stored"} {
		b.Run("topic="+kind, func(b *testing.B) {
			e := openT(b, dir, Options{NoSync: true})
			ctx := context.Background()
			ev := []engine.Event{{Type: "bench", Data: data}}
			b.ResetTimer()
			for i := range b.N {
				ev[0].Topic = fmt.Sprintf("%s/%d", kind, i%topics)
				switch kind {
				case "cached":
					ev[0].Topic = "stored/0"
				case "cached-id":
					ev[0].Topic, ev[0].ID = "stored/0", fmt.Sprintf("%d-%d", b.N, i)
				case "new":
					ev[0].Topic = fmt.Sprintf("new/%d/%d", b.N, i)
				}
				if _, err := e.Append(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
