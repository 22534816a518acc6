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
