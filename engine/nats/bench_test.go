package nats

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/natstest"
)

func benchEngine(b *testing.B) *Engine {
	raw := natstest.URL(b)
	e, err := Open(Options{URL: raw, Stream: natstest.Name(b, raw, "bench"), SweepInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// One topic, one caller: each append waits for its acknowledgement, and the
// next is compare-and-set on it.
func BenchmarkAppendOneTopic(b *testing.B) { benchAppendOneTopic(b, benchEngine(b)) }

// 10,000 topics, 32 callers on one engine.
func BenchmarkAppendManyTopics(b *testing.B) { benchAppendManyTopics(b, benchEngine(b)) }

// The same two on a private cluster of three servers (on the same machine),
// the stream on three replicas: each append waits for a quorum.
func BenchmarkThreeReplicas(b *testing.B) {
	servers := natstest.StartCluster(b, 3)
	e, err := Open(Options{URL: servers[0].URL(), Replicas: 3, SweepInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.Run("AppendOneTopic", func(b *testing.B) { benchAppendOneTopic(b, e) })
	b.Run("AppendManyTopics", func(b *testing.B) { benchAppendManyTopics(b, e) })
}

func benchAppendOneTopic(b *testing.B, e *Engine) {
	ctx := context.Background()
	ev := []engine.Event{{Topic: "bench/one", Type: "t", Data: []byte(`{"n":1}`)}}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := e.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, start)
}

// One topic, 4 engines (nodes) appending at once: compare-and-set conflicts.
func BenchmarkAppendOneTopicFourNodes(b *testing.B) {
	e := benchEngine(b)
	nodes := []*Engine{e}
	for range 3 {
		n, err := Open(e.opt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(2) // 4 callers on 2 cores
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		n := nodes[int(next.Add(1)-1)%len(nodes)]
		ev := []engine.Event{{Topic: "bench/one", Type: "t", Data: []byte(`{"n":1}`)}}
		for pb.Next() {
			if _, err := n.Append(ctx, ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
	var conflicts uint64
	for _, n := range nodes {
		conflicts += metric(n, "cas_conflicts")
	}
	b.ReportMetric(float64(conflicts)/float64(b.N), "conflicts/event")
}

func benchAppendManyTopics(b *testing.B, e *Engine) {
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(16) // 32 callers on 2 cores
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := []engine.Event{{Topic: fmt.Sprintf("bench/%d", next.Add(1)%10_000), Type: "t", Data: []byte(`{"n":1}`)}}
			if _, err := e.Append(ctx, ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, start)
}

// A page of 100 events: 5 direct gets, then one consumer fetch.
func BenchmarkReadPage100(b *testing.B) { benchReadPage(b) }

// The same page with one direct get per event, for comparison.
func BenchmarkReadPage100DirectGets(b *testing.B) {
	defer func(n int) { directGets = n }(directGets)
	directGets = 1 << 30
	benchReadPage(b)
}

func benchReadPage(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	var batch []engine.Event
	for i := range 100 {
		batch = append(batch, engine.Event{Topic: "bench/read", Type: "t", Data: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if _, err := e.Append(ctx, batch); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		page, err := e.Read(ctx, "bench/read", engine.Position{}, 100)
		if err != nil || len(page) != 100 {
			b.Fatalf("Read: %d events, %v", len(page), err)
		}
	}
	b.ReportMetric(float64(b.N*100)/time.Since(start).Seconds(), "events/s")
}
