package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/redistest"
)

// BenchmarkAppendScript measures what one Redis spends on single-event
// appends, which bounds a cluster's publishes per second: 16 publishers, one
// event per call, round-robin over 10,000 topics, on a private redis-server.
// It reports Redis's own CPU per append (used_cpu_user + used_cpu_sys) and
// the script's time per call by INFO commandstats (usec_per_call of evalsha,
// its commands included).
//
//	go test -run '^$' -bench BenchmarkAppendScript ./engine/redis/
func BenchmarkAppendScript(b *testing.B) {
	r := redistest.Start(b)
	co, err := rueidis.ParseURL(r.URL())
	if err != nil {
		b.Fatal(err)
	}
	e, err := Open(Options{Client: co, Prefix: "bench:", MaxAge: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	data := []byte(`{"seq":1,"ts":1764288000000000000}`)
	const topics = 10_000
	warm := make([]engine.Event, 0, topics)
	for i := range topics { // every topic exists, as in service
		warm = append(warm, engine.Event{Topic: fmt.Sprintf("users/%d", i), Data: data})
	}
	if _, err := e.Append(ctx, warm); err != nil {
		b.Fatal(err)
	}
	info := func() (cpu, usec float64, calls int64) {
		for _, section := range []string{"cpu", "commandstats"} {
			s, err := e.client.Do(ctx, e.client.B().Info().Section(section).Build()).ToString()
			if err != nil {
				b.Fatal(err)
			}
			for line := range strings.Lines(s) {
				line = strings.TrimSpace(line)
				if v, ok := strings.CutPrefix(line, "used_cpu_user:"); ok {
					f, _ := strconv.ParseFloat(v, 64)
					cpu += f
				} else if v, ok := strings.CutPrefix(line, "used_cpu_sys:"); ok {
					f, _ := strconv.ParseFloat(v, 64)
					cpu += f
				} else if v, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
					for kv := range strings.SplitSeq(v, ",") {
						k, val, _ := strings.Cut(kv, "=")
						switch k {
						case "calls":
							calls, _ = strconv.ParseInt(val, 10, 64)
						case "usec":
							usec, _ = strconv.ParseFloat(val, 64)
						}
					}
				}
			}
		}
		return cpu, usec, calls
	}
	cpu0, usec0, calls0 := info()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 16 {
		wg.Go(func() {
			ev := []engine.Event{{Data: data}}
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				ev[0].Topic = "users/" + strconv.Itoa(int(n%topics))
				if _, err := e.Append(ctx, ev); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	cpu1, usec1, calls1 := info()
	b.ReportMetric((cpu1-cpu0)*1e6/float64(b.N), "redis-cpu-µs/append")
	if calls := calls1 - calls0; calls > 0 {
		b.ReportMetric((usec1-usec0)/float64(calls), "script-µs/call")
	}
}
