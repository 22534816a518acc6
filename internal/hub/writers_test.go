package hub

import (
	"testing"
	"time"
)

// After a burst that needed many writer goroutines, the pool shrinks back to
// what the steady work needs, even while that work never stops; and a hub
// with nothing to write keeps no writer at all.
func TestWriterPoolShrinksToWhatTheWorkNeeds(t *testing.T) {
	eng := openEngine(t)
	h := New(eng, Options{})
	// 50 streams whose clients stop reading: each write of the burst holds
	// a writer goroutine until the client reads again.
	const stuck = 50
	var gates []*gateWriter
	for range stuck {
		w := newGateWriter()
		sub := startStream(t, h, "burst", w)
		w.arm()
		sub.Live()
		gates = append(gates, w)
	}
	appendN(t, eng, "burst", 1, "x")
	for _, w := range gates {
		<-w.blocked
	}
	if n := h.writers.running.Load(); n < stuck {
		t.Fatalf("%d writers while %d streams are blocked, want one each", n, stuck)
	}
	for _, w := range gates {
		w.open()
	}

	// Steady work: one stream, an event every 10 ms, for 5 sizing intervals.
	startStream(t, h, "steady", &bufWriter{}).Live()
	for end := time.Now().Add(5 * writerIdle); time.Now().Before(end); {
		appendN(t, eng, "steady", 1, "x")
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.writers.running.Load(); n > 3 {
		t.Fatalf("%d writers kept for work that needs one", n)
	}

	shutdown(t, h)
	waitUntil(t, "every writer retired", func() bool { return h.writers.running.Load() == 0 })
}
