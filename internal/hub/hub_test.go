package hub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/local"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bufWriter is a stream transport in memory.
type bufWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *bufWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}
func (w *bufWriter) Flush() error                     { return nil }
func (w *bufWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *bufWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func openEngine(tb testing.TB) engine.Engine {
	tb.Helper()
	eng, err := local.Open(tb.TempDir(), local.Options{NoSync: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close() })
	return eng
}

// startStream subscribes to topic and starts a stream on w: its preamble is
// written, and Live hands it over.
func startStream(tb testing.TB, h *Hub, topic string, w Writer) *Subscriber {
	tb.Helper()
	sub, err := h.Subscribe(context.Background(), []string{topic}, "")
	if err != nil {
		tb.Fatal(err)
	}
	if err := sub.Start(w); err != nil {
		tb.Fatal(err)
	}
	return sub
}

// shutdown shuts h down, failing if its streams do not end within 5 s.
func shutdown(tb testing.TB, h *Hub) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		tb.Fatal(err)
	}
}

func TestShutdownRefusesNewStreamsAndClosesOpenOnesWithRetry(t *testing.T) {
	h := New(openEngine(t), Options{Retry: time.Second})
	sub, err := h.Subscribe(context.Background(), []string{"a"}, "")
	if err != nil {
		t.Fatal(err)
	}
	w := &bufWriter{}
	served := make(chan error, 1)
	go func() { served <- sub.Serve(context.Background(), w) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-served
	out := w.String()
	// The preamble's retry: plus the jittered one of the goodbye.
	if strings.Count(out, "retry: ") != 2 {
		t.Fatalf("stream output %q: want a goodbye retry:", out)
	}
	if _, err := h.Subscribe(context.Background(), []string{"a"}, ""); err != ErrClosing {
		t.Fatalf("subscribe after shutdown: %v, want ErrClosing", err)
	}
	if c := h.stats.connections.Load(); c != 0 {
		t.Fatalf("%d connections after shutdown", c)
	}
}

func TestLastSubscriberLeavingCancelsEngineInterest(t *testing.T) {
	h := New(openEngine(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		sub, err := h.Subscribe(ctx, []string{"a", "b"}, "")
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { sub.Serve(ctx, &bufWriter{}) })
	}
	h.mu.Lock()
	n := len(h.topics)
	h.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d topics of interest, want 2", n)
	}
	cancel()
	wg.Wait()
	h.mu.Lock()
	n = len(h.topics)
	h.mu.Unlock()
	if n != 0 || h.stats.subscriptions.Load() != 0 {
		t.Fatalf("%d topics and %d subscriptions left after every stream ended", n, h.stats.subscriptions.Load())
	}
}

// BenchmarkDispatch measures handing one published event to N local subscribers'
// queues (the engine callback), including the encoding done once per event.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := New(openEngine(b), Options{QueueSize: 1 << 30})
			subs := make([]*Subscriber, n)
			for i := range subs {
				s, err := h.Subscribe(context.Background(), []string{"t"}, "")
				if err != nil {
					b.Fatal(err)
				}
				subs[i] = s
			}
			defer func() {
				for _, s := range subs {
					s.Close()
				}
			}()
			h.mu.Lock()
			ts := h.topics["t"]
			h.mu.Unlock()
			ev := engine.Event{Topic: "t", Type: "update", Data: []byte(`{"phase":"night","round":3}`)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev.Pos.Offset = uint64(i + 1)
				ts.dispatch(ev)
				if i%64 == 63 { // drain like writers would, so queues stay small
					for _, s := range subs {
						s.mu.Lock()
						clear(s.queue)
						s.queue = s.queue[:0]
						s.mu.Unlock()
					}
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkDeliver measures a stream's write path for one live event: cursor id,
// encoded event, one write (to io.Discard).
func BenchmarkDeliver(b *testing.B) {
	for _, topics := range [][]string{{"rooms/7"}, {"rooms/7", "users/42"}} {
		b.Run(fmt.Sprintf("topics=%d", len(topics)), func(b *testing.B) {
			h := New(openEngine(b), Options{})
			s, err := h.Subscribe(context.Background(), topics, "")
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			s.w = discardWriter{}
			before := s.pos[0]
			ev := engine.Event{Topic: "rooms/7", Type: "update", Data: []byte(`{"phase":"night","round":3}`), Pos: before}
			ev.Pos.Offset++
			q := []queued{{0, newMessage(ev)}} // encoded once per event, outside the loop
			b.ReportAllocs()
			for b.Loop() {
				s.pos[0] = before // the same event is new to the stream again
				if _, err := s.deliver(q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error)      { return io.Discard.Write(p) }
func (discardWriter) Flush() error                     { return nil }
func (discardWriter) SetWriteDeadline(time.Time) error { return nil }

// discardTryWriter is a connection that always has room.
type discardTryWriter struct{ discardWriter }

func (discardTryWriter) TryWrite([]byte) (bool, error) { return false, nil }

// BenchmarkFanOut measures a broadcast end to end in the hub: one event
// dispatched to N live streams, queued, run in shares by writer goroutines
// and written (to connections that always have room), per event.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := New(openEngine(b), Options{})
			for range n {
				startStream(b, h, "t", discardTryWriter{}).Live()
			}
			defer shutdown(b, h)
			h.mu.Lock()
			ts := h.topics["t"]
			h.mu.Unlock()
			ev := engine.Event{Topic: "t", Type: "update", Data: []byte(`{"phase":"night","round":3}`)}
			head, err := h.eng.Head(context.Background(), "t")
			if err != nil {
				b.Fatal(err)
			}
			ev.Pos = head
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev.Pos.Offset++
				ts.dispatch(ev)
				want := uint64(i+1) * uint64(n)
				for h.stats.delivered.Load() < want {
					runtime.Gosched()
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// Topics counts the topics of interest and ranks them by streams, ties by name.
func TestTopicsRanksByStreams(t *testing.T) {
	h := New(openEngine(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, topics := range [][]string{{"a", "b", "c"}, {"b", "c"}, {"c"}, {"d"}} {
		sub, err := h.Subscribe(ctx, topics, "")
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { sub.Serve(ctx, &bufWriter{}) })
	}
	n, top := h.Topics(3)
	want := []TopicStreams{{"c", 3}, {"b", 2}, {"a", 1}}
	if n != 4 || !slices.Equal(top, want) {
		t.Fatalf("Topics(3) = %d %v, want 4 %v", n, top, want)
	}
	if n, top := h.Topics(10); n != 4 || len(top) != 4 || top[3] != (TopicStreams{"d", 1}) {
		t.Fatalf("Topics(10) = %d %v", n, top)
	}
	if _, top := h.Topics(0); len(top) != 0 {
		t.Fatalf("Topics(0) = %v", top)
	}
	cancel()
	wg.Wait()
	if n, top := h.Topics(10); n != 0 || len(top) != 0 {
		t.Fatalf("after the streams: %d %v", n, top)
	}
}

// Past topicsWalk topics Topics looks at a sample, but a topic with
// busyStreams streams or more is always ranked.
func TestTopicsRanksABusyTopicAmongMany(t *testing.T) {
	h := New(openEngine(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range busyStreams {
		sub, err := h.Subscribe(ctx, []string{"rooms/busy"}, "")
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { sub.Serve(ctx, &bufWriter{}) })
	}
	// Quiet topics, many more than a walk looks at, each with a few streams.
	quiet := 3 * topicsWalk
	h.mu.Lock()
	for i := range quiet {
		name := fmt.Sprintf("users/%d", i)
		h.topics[name] = &topicState{hub: h, topic: name, refs: busyStreams - 1}
	}
	h.mu.Unlock()
	for range 5 {
		n, top := h.Topics(1)
		if n != quiet+1 || len(top) != 1 || top[0] != (TopicStreams{"rooms/busy", busyStreams}) {
			t.Fatalf("Topics(1) = %d %v, want %d [{rooms/busy %d}]", n, top, quiet+1, busyStreams)
		}
	}
	h.mu.Lock()
	for i := range quiet {
		delete(h.topics, fmt.Sprintf("users/%d", i))
	}
	h.mu.Unlock()
	cancel()
	wg.Wait()
	// Left as its streams leave, without waiting for a call of Topics
	// (there is none with the statistics off).
	h.mu.Lock()
	busy := len(h.busy)
	h.mu.Unlock()
	if busy != 0 {
		t.Fatalf("after the streams: %d busy topics kept", busy)
	}
	if n, top := h.Topics(10); n != 0 || len(top) != 0 {
		t.Fatalf("after the streams: %d %v", n, top)
	}
}
