package hub

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// gateWriter records writes; once armed, the next write blocks until the gate
// opens, as a client that stopped reading for a while would.
type gateWriter struct {
	mu       sync.Mutex
	out      strings.Builder
	largest  int
	armed    bool
	blocked  chan struct{} // closed when a write blocks on the gate
	gate     chan struct{} // closed to let writes through
	gateOnce sync.Once
}

func newGateWriter() *gateWriter {
	return &gateWriter{blocked: make(chan struct{}), gate: make(chan struct{})}
}

func (w *gateWriter) arm() { w.mu.Lock(); w.armed = true; w.mu.Unlock() }

func (w *gateWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.armed {
		w.armed = false
		w.mu.Unlock()
		close(w.blocked)
		<-w.gate
		w.mu.Lock()
	}
	defer w.mu.Unlock()
	w.largest = max(w.largest, len(p))
	return w.out.Write(p)
}
func (w *gateWriter) open()                            { w.gateOnce.Do(func() { close(w.gate) }) }
func (w *gateWriter) Flush() error                     { return nil }
func (w *gateWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *gateWriter) String() string                   { w.mu.Lock(); defer w.mu.Unlock(); return w.out.String() }

func appendN(t *testing.T, eng engine.Engine, topic string, n int, data string) {
	t.Helper()
	for n > 0 {
		batch := make([]engine.Event, min(n, 500))
		for i := range batch {
			batch[i] = engine.Event{Topic: topic, Data: []byte(data)}
		}
		if _, err := eng.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		n -= len(batch)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Shutdown does not wait for a long replay to finish: the stream stops between
// two history batches with its goodbye retry:, and the client resumes elsewhere.
func TestShutdownInterruptsReplay(t *testing.T) {
	eng := openEngine(t)
	const total = 5000
	appendN(t, eng, "a", total, "x")
	h := New(eng, Options{ReplayBatch: 10, Retry: time.Second})
	head, _ := eng.Head(context.Background(), "a")
	head.Offset = 0
	sub, err := h.Subscribe(context.Background(), []string{"a"}, EncodeCursor("a", head, 0))
	if err != nil {
		t.Fatal(err)
	}
	w := newGateWriter()
	w.arm() // the preamble blocks
	served := make(chan error, 1)
	go func() { served <- sub.Serve(context.Background(), w) }()
	<-w.blocked
	shut := make(chan error, 1)
	go func() { shut <- h.Shutdown(context.Background()) }()
	waitUntil(t, "shutdown posted", sub.ending)
	w.open()
	if err := <-served; err != nil {
		t.Fatalf("stream ended with %v, want a clean goodbye", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	out := w.String()
	if n := strings.Count(out, "data: x\n"); n >= total {
		t.Fatalf("all %d events replayed after shutdown began", n)
	}
	if !strings.HasSuffix(out, "\n\n") || !strings.Contains(out[strings.LastIndex(out[:len(out)-1], "\n\n"):], "retry: ") {
		t.Fatalf("stream did not end with a retry: hint: ...%q", out[max(0, len(out)-80):])
	}
}

// Events queued behind a slow write go out in writes of bounded size, not in one
// buffer as large as the whole queue.
func TestQueuedEventsAreWrittenInBoundedChunks(t *testing.T) {
	eng := openEngine(t)
	h := New(eng, Options{QueueSize: 1000})
	sub, err := h.Subscribe(context.Background(), []string{"a"}, "")
	if err != nil {
		t.Fatal(err)
	}
	w := newGateWriter()
	if err := sub.Start(w); err != nil {
		t.Fatal(err)
	}
	sub.Live()
	w.arm()
	big := strings.Repeat("y", 8<<10)
	appendN(t, eng, "a", 1, big) // its write blocks
	<-w.blocked
	appendN(t, eng, "a", 100, big) // 800 KiB queue up meanwhile
	waitUntil(t, "events queued", func() bool { sub.mu.Lock(); defer sub.mu.Unlock(); return len(sub.queue) == 100 })
	w.open()
	waitUntil(t, "events written", func() bool { return strings.Count(w.String(), "data: y") == 101 })
	if limit := 64<<10 + len(big) + 256; w.largest > limit { // 64 KiB and the event that crossed it
		t.Fatalf("largest write %d bytes, want at most %d", w.largest, limit)
	}
	sub.Stop()
	<-sub.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.Shutdown(ctx)
}
