package hub

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/memory"
	"github.com/herald-hub/herald/sse"
)

// The engine's fan-out is best effort: these tests make the memory engine lose,
// repeat, reorder and delay it, lose its history and fail its reads, and check
// what the hub promises a client in each case: its stream is complete and in
// order, or says herald.gap where history was lost, or ends so the client
// resumes; never silently short.

// faultHub returns a memory engine and a hub on it, shut down before the
// engine is closed.
func faultHub(t *testing.T) (*memory.Engine, *Hub) {
	t.Helper()
	return faultHubWith(t, memory.Options{})
}

func faultHubWith(t *testing.T, opt memory.Options) (*memory.Engine, *Hub) {
	t.Helper()
	eng := memory.New(opt)
	t.Cleanup(func() { eng.Close() })
	h := New(eng, Options{})
	t.Cleanup(func() { shutdown(t, h) })
	return eng, h
}

// liveStream starts a live stream of topic "t" on a connection that always has
// room, so that fan-outs write it from the shared writers.
func liveStream(t *testing.T, h *Hub) *socketWriter {
	t.Helper()
	w := newSocketWriter(-1)
	startStream(t, h, "t", w).Live()
	return w
}

// publish appends the events n=from..to-1 to "t" in one call.
func publish(t *testing.T, eng engine.Engine, from, to int) {
	t.Helper()
	var batch []engine.Event
	for n := from; n < to; n++ {
		batch = append(batch, engine.Event{Topic: "t", Type: "e", Data: fmt.Appendf(nil, `{"n":%d}`, n)})
	}
	if _, err := eng.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

// summary is a stream's events as "n" data, or "gap".
func summary(evs []sse.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == GapType {
			out = append(out, "gap")
		} else {
			out = append(out, ev.Data)
		}
	}
	return out
}

func ns(from, to int) []string {
	var out []string
	for n := from; n < to; n++ {
		out = append(out, fmt.Sprintf(`{"n":%d}`, n))
	}
	return out
}

// wantStream waits until w's stream is exactly want, and stays so a moment
// (a duplicate would arrive then).
func wantStream(t *testing.T, w *socketWriter, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(summary(w.events(t)), want) {
		if time.Now().After(deadline) {
			t.Fatalf("stream %v, want %v", summary(w.events(t)), want)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if got := summary(w.events(t)); !slices.Equal(got, want) {
		t.Fatalf("stream %v, want %v", got, want)
	}
}

// A lost event followed by a later one: the later one's Prev reveals the hole,
// which the stream fills from history.
func TestFaultDroppedFanOutIsFilled(t *testing.T) {
	eng, h := faultHub(t)
	w := liveStream(t, h)
	publish(t, eng, 0, 1)
	wantStream(t, w, ns(0, 1)...)
	eng.Faults().DropFanOut(2, false)
	publish(t, eng, 1, 2)
	publish(t, eng, 2, 3)
	publish(t, eng, 3, 4)
	wantStream(t, w, ns(0, 4)...)
	if st := h.Stats(); st.Holes != 1 || st.Recovered < 2 || st.Rereads != 0 {
		t.Fatalf("holes %d, recovered %d, rereads %d; want 1 hole, at least the 2 lost events recovered, no reread", st.Holes, st.Recovered, st.Rereads)
	}
}

// With holes in the offsets (a log shared by many topics), a hole is not a
// lost event: Prev tells them apart, and a lost event is still filled.
func TestFaultDroppedFanOutIsFilledWithSparseOffsets(t *testing.T) {
	eng, h := faultHubWith(t, memory.Options{Sparse: 7})
	w := liveStream(t, h)
	for n := range 20 {
		if n%5 == 3 {
			eng.Faults().DropFanOut(1, false)
		}
		publish(t, eng, n, n+1)
	}
	wantStream(t, w, ns(0, 20)...)
}

// The last event of a quiet topic is lost, and no later event reveals it: the
// engine's lost signal makes the stream re-read history, and it arrives.
func TestFaultDroppedLastEventOfAQuietTopicArrivesAfterLost(t *testing.T) {
	eng, h := faultHub(t)
	w := liveStream(t, h)
	publish(t, eng, 0, 1)
	wantStream(t, w, ns(0, 1)...)
	eng.Faults().DropFanOut(1, true)
	publish(t, eng, 1, 2)
	wantStream(t, w, ns(0, 2)...)
	if st := h.Stats(); st.Rereads < 1 || st.Recovered != 1 || st.Holes != 0 {
		t.Fatalf("rereads %d, recovered %d, holes %d; want a reread that recovered the lost event, no hole", st.Rereads, st.Recovered, st.Holes)
	}
}

func TestFaultDuplicatedFanOutIsSentOnce(t *testing.T) {
	eng, h := faultHub(t)
	w := liveStream(t, h)
	eng.Faults().DuplicateFanOut(3)
	publish(t, eng, 0, 2)
	publish(t, eng, 2, 3)
	wantStream(t, w, ns(0, 3)...)
}

func TestFaultReorderedFanOutIsSentInOrder(t *testing.T) {
	eng, h := faultHub(t)
	w := liveStream(t, h)
	eng.Faults().ReorderFanOut(2)
	publish(t, eng, 0, 5) // one batch: the engine has the next event to swap with
	wantStream(t, w, ns(0, 5)...)
}

// Fan-out arrives after a new stream has replayed the same events from
// history: they are not sent twice, and the live ones after them still come.
func TestFaultDelayedFanOutIsNotSentTwice(t *testing.T) {
	eng, h := faultHub(t)
	early := liveStream(t, h)
	eng.Faults().DelayFanOut(20 * time.Millisecond)
	publish(t, eng, 0, 3)
	// A client resuming from before the events while their fan-out is late.
	sub, err := h.Subscribe(context.Background(), []string{"t"}, EncodeCursor("t", engine.Position{Epoch: eng.Log().Epoch()}, 0))
	if err != nil {
		t.Fatal(err)
	}
	late := newSocketWriter(-1)
	if err := sub.Start(late); err != nil {
		t.Fatal(err)
	}
	sub.Live()
	publish(t, eng, 3, 5)
	wantStream(t, early, ns(0, 5)...)
	wantStream(t, late, ns(0, 5)...)
	eng.Faults().DelayFanOut(0)
}

// The engine loses its history (a new epoch): a stream says herald.gap, even
// when no event follows, and then carries the new epoch's events.
func TestFaultEpochChangeIsAGap(t *testing.T) {
	eng, h := faultHub(t)
	w := liveStream(t, h)
	publish(t, eng, 0, 2)
	wantStream(t, w, ns(0, 2)...)
	eng.Log().LoseHistory()
	wantStream(t, w, append(ns(0, 2), "gap")...)
	publish(t, eng, 2, 3)
	wantStream(t, w, append(ns(0, 2), "gap", ns(2, 3)[0])...)
}

// A Read that fails ends the stream, with a retry: hint, rather than leave it
// silently short; the client comes back with its last id and gets the rest.
func TestFaultReadErrorEndsTheStreamForAResume(t *testing.T) {
	eng, h := faultHub(t)
	w := liveStream(t, h)
	publish(t, eng, 0, 1)
	wantStream(t, w, ns(0, 1)...)
	// The fan-out of 1 is lost, and the read that would fill it fails.
	eng.Faults().DropFanOut(1, false)
	eng.Faults().FailReads(1)
	publish(t, eng, 1, 2)
	publish(t, eng, 2, 3)
	waitUntil(t, "the stream ends", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.all) == 0
	})
	evs := w.events(t)
	if got := summary(evs); !slices.Equal(got, ns(0, len(got))) {
		t.Fatalf("stream before its end %v, want a prefix of the events in order", got)
	}
	w.mu.Lock()
	out := w.out.String()
	w.mu.Unlock()
	if tail := out[max(0, len(out)-40):]; !strings.Contains(tail, "retry: ") {
		t.Fatalf("stream did not end with a retry: hint: ...%q", tail)
	}

	// The client resumes from the last id it received.
	last := evs[len(evs)-1].ID
	sub, err := h.Subscribe(context.Background(), []string{"t"}, last)
	if err != nil {
		t.Fatal(err)
	}
	again := newSocketWriter(-1)
	if err := sub.Start(again); err != nil {
		t.Fatal(err)
	}
	sub.Live()
	wantStream(t, again, ns(len(evs), 3)...)
}
