package local

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// TestMillionTopics writes one event to each of 1,000,000 per-user topics and
// reports the memory the engine keeps for them and the cost of an age sweep.
// It takes a minute or two and a few hundred MB of disk, so it runs only with
//
//	HERALD_TEST_MILLION=1 TMPDIR=/var/tmp go test -run TestMillionTopics -v ./engine/local/
func TestMillionTopics(t *testing.T) {
	if os.Getenv("HERALD_TEST_MILLION") == "" {
		t.Skip("set HERALD_TEST_MILLION=1 to write a million topics")
	}
	const perCall = 1000
	topics := 1_000_000
	if n, err := strconv.Atoi(os.Getenv("HERALD_TEST_MILLION")); err == nil && n > 1 {
		topics = n / perCall * perCall // fewer, to profile
	}
	ctx := context.Background()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	opt := Options{MaxAge: time.Hour, SweepInterval: time.Hour, NoSync: true, Logger: quiet}
	e := openClockT(t, t.TempDir(), opt, now)

	heap0, rss0 := memory()
	start := time.Now()
	data := make([]byte, 64)
	evs := make([]engine.Event, perCall)
	for i := 0; i < topics; i += perCall {
		for j := range evs {
			evs[j] = engine.Event{Topic: fmt.Sprintf("users/%d", i+j), Type: "note", Data: data}
		}
		if _, err := e.Append(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d topics in %v", topics, time.Since(start).Round(time.Millisecond))
	heap1, rss1 := memory()
	t.Logf("after the writes: %d topic states; heap in use %+.1f MiB, RSS %+.1f MiB", cachedLen(e), mib(heap1-heap0), mib(rss1-rss0))

	clock.Add(int64(10 * time.Minute)) // every topic idle, nothing expired
	dropIdle(t, e)
	heap2, rss2 := memory()
	t.Logf("after eviction: %d topic states; heap in use %+.1f MiB, RSS %+.1f MiB", cachedLen(e), mib(heap2-heap0), mib(rss2-rss0))

	start = time.Now()
	s, err := e.sweepOnce()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep with nothing expired: %v, %+v", time.Since(start).Round(time.Microsecond), s)

	clock.Add(int64(time.Hour)) // every event expired
	start = time.Now()
	if s, err = e.sweepOnce(); err != nil || s.trimmed != topics {
		t.Fatalf("sweep: %+v, %v; want %d topics trimmed", s, err, topics)
	}
	t.Logf("sweep with every topic expired: %v, %+v", time.Since(start).Round(time.Millisecond), s)
	heap3, rss3 := memory()
	t.Logf("after the sweep: %d topic states; heap in use %+.1f MiB, RSS %+.1f MiB", cachedLen(e), mib(heap3-heap0), mib(rss3-rss0))
	dropIdle(t, e)
	heap4, rss4 := memory()
	t.Logf("after eviction: %d topic states; heap in use %+.1f MiB, RSS %+.1f MiB", cachedLen(e), mib(heap4-heap0), mib(rss4-rss0))

	start = time.Now()
	if s, err = e.sweepOnce(); err != nil || s.trimmed != 0 {
		t.Fatalf("second sweep: %+v, %v; want nothing trimmed", s, err)
	}
	t.Logf("next sweep: %v, %+v", time.Since(start).Round(time.Microsecond), s)
}

// dropIdle runs eviction passes until every idle state is dropped, one step
// (one shard) per trip through the committer, as the sweeper asks for them.
func dropIdle(t *testing.T, e *Engine) {
	t.Helper()
	for range 3 {
		n, start := cachedLen(e), time.Now()
		var longest time.Duration
		for range stateShards {
			step := time.Now()
			if err := e.sendWait(&request{evict: 1, done: make(chan struct{})}); err != nil {
				t.Fatal(err)
			}
			longest = max(longest, time.Since(step))
		}
		t.Logf("eviction pass over %d topic states: %v, longest step %v", n, time.Since(start).Round(time.Microsecond), longest.Round(time.Microsecond))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// memory returns the heap in use and the resident set size, after a GC.
func memory() (heap, rss int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				rss = kb << 10
			}
		}
	}
	return int64(ms.HeapInuse), rss
}
