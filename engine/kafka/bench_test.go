package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// BenchmarkAppend: one event per Append, from 32 goroutines, on kfake (in
// memory, one broker, no replication: real Kafka with acks=all adds its
// replication latency), with the producer's linger at 0, the default 1 ms,
// and 5 ms. Each Append returns once the node's replica applied the record.
func BenchmarkAppend(b *testing.B) {
	for _, linger := range []time.Duration{-1, DefaultLinger, 5 * time.Millisecond} {
		name := "linger=" + max(linger, 0).String()
		b.Run(name, func(b *testing.B) {
			c := newBenchCluster(b)
			opt := benchOptions(b, c)
			opt.Linger = linger
			e, err := Open(opt)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.SetParallelism(16)
			var n atomic.Int64
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := n.Add(1)
					topic := fmt.Sprintf("bench/%d", i%64)
					if _, err := e.Append(ctx, []engine.Event{{Topic: topic, Type: "t", Data: []byte(`{"n":1}`)}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkEndToEnd: events appended through one node, delivered to a
// subscriber on another node (its own reader and replica).
func BenchmarkEndToEnd(b *testing.B) {
	c := newBenchCluster(b)
	opt := benchOptions(b, c)
	e1, err := Open(opt)
	if err != nil {
		b.Fatal(err)
	}
	defer e1.Close()
	opt.Dir = b.TempDir()
	e2, err := Open(opt)
	if err != nil {
		b.Fatal(err)
	}
	defer e2.Close()
	const topics = 64
	var got atomic.Int64
	all := make(chan struct{})
	target := int64(b.N)
	for i := range topics {
		cancel, err := e2.Subscribe(fmt.Sprintf("e2e/%d", i), func(engine.Event) {
			if got.Add(1) == target {
				close(all)
			}
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cancel()
	}
	b.SetParallelism(16)
	var n atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := n.Add(1)
			if _, err := e1.Append(ctx, []engine.Event{{Topic: fmt.Sprintf("e2e/%d", i%topics), Type: "t", Data: []byte(`{"n":1}`)}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("the peer received %d of %d events", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "delivered/s")
}
