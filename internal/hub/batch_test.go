package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/sse"
)

// socketWriter is a TryWriter over an imaginary socket buffer of room bytes.
// Once full, it takes nothing more without waiting until the client reads
// again (drain); then it takes everything.
type socketWriter struct {
	mu      sync.Mutex
	out     bytes.Buffer // what the client has received
	room    int          // bytes the socket still takes; < 0 once drained
	rest    []byte       // kept by TryWrite for the next Flush or Write
	tries   int          // TryWrite calls
	drained chan struct{}
	once    sync.Once
}

func newSocketWriter(room int) *socketWriter {
	return &socketWriter{room: room, drained: make(chan struct{})}
}

func (w *socketWriter) drain() { w.once.Do(func() { close(w.drained) }) }

// take moves what the socket accepts of p to out and returns the rest.
func (w *socketWriter) take(p []byte) []byte {
	n := len(p)
	if w.room >= 0 {
		n = min(n, w.room)
		w.room -= n
	}
	w.out.Write(p[:n])
	return p[n:]
}

func (w *socketWriter) TryWrite(p []byte) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tries++
	if len(w.rest) == 0 {
		p = w.take(p)
	}
	w.rest = append(w.rest, p...)
	return len(w.rest) > 0, nil
}

// Flush and Write block until drained when the socket cannot take it all.
func (w *socketWriter) Flush() error { _, err := w.Write(nil); return err }

func (w *socketWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	all := append(w.rest, p...)
	w.rest = nil
	if left := w.take(all); len(left) > 0 {
		w.mu.Unlock()
		<-w.drained
		w.mu.Lock()
		w.room = -1
		w.take(left)
	}
	return len(p), nil
}

func (w *socketWriter) SetWriteDeadline(time.Time) error { return nil }

func (w *socketWriter) events(t *testing.T) []sse.Event {
	t.Helper()
	w.mu.Lock()
	raw := bytes.Clone(w.out.Bytes())
	w.mu.Unlock()
	dec := sse.NewDecoder(bytes.NewReader(raw))
	var evs []sse.Event
	for {
		ev, err := dec.Next()
		if err != nil {
			return evs
		}
		if ev.Type == ConnectedType {
			continue // the preamble's cursor, not an event
		}
		evs = append(evs, ev)
	}
}

// A fan-out writes many streams from one goroutine without waiting on any of
// them. A stream whose socket is full must not hold up the others, and must
// get every event once and whole when its client reads again, even when the
// socket took only part of an event.
func TestFanOutIsNotHeldUpByAFullSocket(t *testing.T) {
	eng := openEngine(t)
	h := New(eng, Options{})
	const streams, events = 40, 20
	ws := make([]*socketWriter, streams)
	for i := range ws {
		ws[i] = newSocketWriter(-1)
		if i == streams/2 {
			// The preamble and a part of the first event fit, then it is full.
			ws[i] = newSocketWriter(120)
		}
		startStream(t, h, "t", ws[i]).Live()
	}
	full := ws[streams/2]
	defer full.drain()
	for i := range events {
		appendN(t, eng, "t", 1, fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 50)))
	}
	waitUntil(t, "every other stream received every event", func() bool {
		for i, w := range ws {
			if i != streams/2 && len(w.events(t)) < events {
				return false
			}
		}
		return true
	})
	if got := len(full.events(t)); got != 0 {
		t.Fatalf("the full stream dispatched %d events before its client read", got)
	}
	full.drain()
	waitUntil(t, "the full stream received every event", func() bool { return len(full.events(t)) >= events })
	time.Sleep(20 * time.Millisecond) // duplicates would arrive now
	for i, w := range ws {
		evs := w.events(t)
		if len(evs) != events {
			t.Fatalf("stream %d: %d events, want %d", i, len(evs), events)
		}
		for n, ev := range evs {
			if want := fmt.Sprintf(`{"n":%d,`, n); !strings.HasPrefix(ev.Data, want) {
				t.Fatalf("stream %d: event %d is %q, want it to start %s", i, n, ev.Data, want)
			}
		}
		w.mu.Lock()
		tries := w.tries
		w.mu.Unlock()
		if tries == 0 {
			t.Fatalf("stream %d was never written without waiting: the fan-out did not use TryWrite", i)
		}
	}
	shutdown(t, h)
}

// A hole before a live event (fan-out lost an event) is filled from history,
// but not on a fan-out's shared goroutine, where the engine read would hold up
// the streams after it: the stream moves to its own writer, which fills it.
func TestHoleInAFanOutIsFilledByTheStreamsOwnWriter(t *testing.T) {
	eng, h := faultHub(t)
	w := newSocketWriter(-1)
	startStream(t, h, "t", w).Live()
	appendN(t, eng, "t", 1, `{"n":0}`)
	waitUntil(t, "the first event", func() bool { return len(w.events(t)) == 1 })

	// The fan-out loses the next event, silently.
	eng.Faults().DropFanOut(1, false)
	appendN(t, eng, "t", 1, `{"n":1}`)
	appendN(t, eng, "t", 1, `{"n":2}`)

	waitUntil(t, "all three events", func() bool { return len(w.events(t)) >= 3 })
	time.Sleep(20 * time.Millisecond) // duplicates would arrive now
	evs := w.events(t)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for n, ev := range evs {
		if want := fmt.Sprintf(`{"n":%d}`, n); ev.Data != want {
			t.Fatalf("event %d is %q, want %s", n, ev.Data, want)
		}
	}
}

// For a fan-out's batch, deliver stops at a hole without reading history and
// reports the events before it as handled, so only the rest is put back.
func TestDeliverForABatchStopsAtAHole(t *testing.T) {
	eng := openEngine(t)
	h := New(eng, Options{})
	appendN(t, eng, "t", 3, "x")
	sub, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	head := sub.pos[0]
	sub.w = newSocketWriter(-1)
	sub.tw = sub.w.(TryWriter)
	at := func(off uint64) queued {
		p := head
		p.Offset = off
		return queued{0, newMessage(engine.Event{Topic: "t", Pos: p, Prev: off - 1, Data: []byte("y")})}
	}
	q := []queued{at(head.Offset), at(head.Offset + 1), at(head.Offset + 3)}
	sub.try = true
	n, err := sub.deliver(q)
	if !errors.Is(err, errHandOff) || n != 2 {
		t.Fatalf("deliver = %d, %v; want 2, errHandOff", n, err)
	}
	if sub.pos[0].Offset != head.Offset+1 {
		t.Fatalf("cursor at %d, want %d", sub.pos[0].Offset, head.Offset+1)
	}
}

// An event for one stream that can be written without waiting is written on
// the engine's delivery goroutine: no writer goroutine is started for it.
func TestAFewStreamsAreWrittenWithoutAWriter(t *testing.T) {
	eng := openEngine(t)
	h := New(eng, Options{})
	w := newSocketWriter(-1)
	startStream(t, h, "u", w).Live()
	waitUntil(t, "every writer retired", func() bool { return h.writers.running.Load() == 0 })
	for i := range 5 {
		appendN(t, eng, "u", 1, fmt.Sprintf(`{"n":%d}`, i))
		waitUntil(t, "the event", func() bool { return len(w.events(t)) == i+1 })
		if n := h.writers.running.Load(); n != 0 {
			t.Fatalf("event %d started %d writer goroutines, want none", i, n)
		}
	}
	shutdown(t, h)
}
