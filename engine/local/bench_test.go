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
//	TMPDIR=/work/tmp go test -run '^$' -bench BenchmarkAppend -benchmem ./engine/local/
func BenchmarkAppend(b *testing.B) {
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
					for next.Add(1) <= int64(b.N) {
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
