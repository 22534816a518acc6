package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

func ev(topic string, i int) engine.Event {
	return engine.Event{Topic: topic, Type: "t", Data: fmt.Appendf(nil, "%d", i)}
}

func newT(t *testing.T, opt Options) *Engine {
	t.Helper()
	e := New(opt)
	t.Cleanup(func() { e.Close() })
	return e
}

func mustAppend(t *testing.T, e *Engine, events ...engine.Event) []engine.Position {
	t.Helper()
	pos, err := e.Append(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// recorder keeps what a subscription is given: events, and "lost" calls as
// an event of Type "lost".
type recorder struct {
	mu  sync.Mutex
	got []engine.Event
}

func (r *recorder) fn(e engine.Event) { r.mu.Lock(); r.got = append(r.got, e); r.mu.Unlock() }
func (r *recorder) lost()             { r.fn(engine.Event{Type: "lost"}) }
func (r *recorder) events() []engine.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// wait returns what was given once it is n entries long; fails after 5 s.
func (r *recorder) wait(t *testing.T, n int) []engine.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.events()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d deliveries, want %d: %v", len(r.events()), n, r.events())
		}
		time.Sleep(time.Millisecond)
	}
	// Give a wrong extra delivery a moment to show.
	time.Sleep(10 * time.Millisecond)
	return r.events()
}

func sub(t *testing.T, e *Engine, topic string) *recorder {
	t.Helper()
	r := &recorder{}
	cancel, err := e.Subscribe(topic, r.fn, r.lost)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return r
}

func describe(evs []engine.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == "lost" {
			out = append(out, "lost")
		} else {
			out = append(out, string(e.Data))
		}
	}
	return out
}

func wantDeliveries(t *testing.T, got []engine.Event, want ...string) {
	t.Helper()
	if d := describe(got); !slices.Equal(d, want) {
		t.Fatalf("deliveries %v, want %v", d, want)
	}
}

func TestIdempotencyKey(t *testing.T) {
	var now atomic.Int64
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	e := newT(t, Options{Now: clock, IdempotencyWindow: time.Minute})
	r := sub(t, e, "a")
	first := engine.Event{Topic: "a", Type: "t", Data: []byte("1"), ID: "k"}
	p1 := mustAppend(t, e, first)
	// The same key on another topic is another event.
	other := mustAppend(t, e, engine.Event{Topic: "b", Type: "t", Data: []byte("x"), ID: "k"})
	now.Add(int64(59 * time.Second))
	// Within the window, through a peer too, and twice in one batch: nothing
	// is appended, the first position comes back.
	peer := NewPeer(e)
	defer peer.Close()
	p2, err := peer.Append(context.Background(), []engine.Event{first, ev("a", 2), first})
	if err != nil {
		t.Fatal(err)
	}
	if p2[0] != p1[0] || p2[2] != p1[0] || p2[1].Offset != p1[0].Offset+1 {
		t.Fatalf("repeated key got %v, want %v at 0 and 2 and the next offset at 1", p2, p1[0])
	}
	if other[0].Offset != 1 {
		t.Fatalf("the key on another topic got %v, want its own offset 1", other[0])
	}
	// Once the window has passed on the engine's clock, the key is new again.
	now.Add(int64(2 * time.Second))
	p3 := mustAppend(t, e, first)
	if p3[0].Offset != p2[1].Offset+1 {
		t.Fatalf("the key after its window got %v, want a new offset %d", p3[0], p2[1].Offset+1)
	}
	wantDeliveries(t, r.wait(t, 3), "1", "2", "1")
	h, _ := e.Head(context.Background(), "a")
	if h != p3[0] {
		t.Fatalf("Head %v, want %v", h, p3[0])
	}
}

func TestIdempotencyDisabled(t *testing.T) {
	e := newT(t, Options{IdempotencyWindow: -1})
	a := engine.Event{Topic: "a", ID: "k"}
	if p := mustAppend(t, e, a, a); p[0] == p[1] {
		t.Fatalf("with keys disabled, two events with one key got one position %v", p[0])
	}
}

func TestSparseOffsetsHavePrev(t *testing.T) {
	e := newT(t, Options{Sparse: 10})
	var pos []engine.Position
	for i := range 50 {
		pos = append(pos, mustAppend(t, e, ev("a", i), ev("b", i))[0])
	}
	holes := 0
	for i := 1; i < len(pos); i++ {
		if pos[i].Offset > pos[i-1].Offset+1 {
			holes++
		}
	}
	if holes == 0 {
		t.Fatalf("50 offsets with Sparse 10 and no hole: %v", pos)
	}
	got, err := e.Read(context.Background(), "a", engine.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		want := uint64(0)
		if i > 0 {
			want = pos[i-1].Offset
		}
		if g.Pos != pos[i] || g.Prev != want {
			t.Fatalf("event %d at %v prev %d, want %v prev %d", i, g.Pos, g.Prev, pos[i], want)
		}
	}
}

func TestFailTopicIsAnAppendError(t *testing.T) {
	e := newT(t, Options{})
	e.Faults().FailTopic("b", 1)
	pos, err := e.Append(context.Background(), []engine.Event{ev("a", 1), ev("b", 1), ev("a", 2), ev("b", 2)})
	var ae *engine.AppendError
	if !errors.As(err, &ae) || len(ae.Topics) != 1 || ae.Topics["b"] == nil || !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("err = %v, want an *AppendError naming b alone, matching ErrUnavailable", err)
	}
	if pos[0].Offset != 1 || pos[2].Offset != 2 || pos[1] != (engine.Position{}) || pos[3] != (engine.Position{}) {
		t.Fatalf("positions %v: want a appended at 1 and 2, b not at all", pos)
	}
	if h, _ := e.Head(context.Background(), "b"); h.Offset != 0 {
		t.Fatalf("Head(b) = %v, want nothing appended", h)
	}
	// Used up: the next append of b succeeds.
	if p := mustAppend(t, e, ev("b", 3)); p[0].Offset != 1 {
		t.Fatalf("next append of b at %v, want offset 1", p[0])
	}
}

func TestFailAppendsAndReads(t *testing.T) {
	e := newT(t, Options{})
	ctx := context.Background()
	e.Faults().FailAppends(1)
	if _, err := e.Append(ctx, []engine.Event{ev("a", 1), ev("b", 1)}); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Append: %v, want ErrUnavailable", err)
	}
	for _, tp := range []string{"a", "b"} {
		if h, _ := e.Head(ctx, tp); h.Offset != 0 {
			t.Fatalf("Head(%s) = %v after a failed Append, want nothing appended", tp, h)
		}
	}
	mustAppend(t, e, ev("a", 1))
	e.Faults().FailReads(2)
	for range 2 {
		if _, err := e.Read(ctx, "a", engine.Position{}, 10); !errors.Is(err, engine.ErrUnavailable) {
			t.Fatalf("Read: %v, want ErrUnavailable", err)
		}
	}
	if got, err := e.Read(ctx, "a", engine.Position{}, 10); err != nil || len(got) != 1 {
		t.Fatalf("Read once the faults are used up: %d events, %v", len(got), err)
	}
}

func TestFanOutFaults(t *testing.T) {
	for _, c := range []struct {
		name   string
		inject func(*Faults)
		want   []string
	}{
		{"none", func(*Faults) {}, []string{"1", "2", "3"}},
		{"drop", func(f *Faults) { f.DropFanOut(1, false) }, []string{"2", "3"}},
		{"dropAndSignal", func(f *Faults) { f.DropFanOut(1, true) }, []string{"lost", "2", "3"}},
		{"duplicate", func(f *Faults) { f.DuplicateFanOut(1) }, []string{"1", "1", "2", "3"}},
		{"reorder", func(f *Faults) { f.ReorderFanOut(1) }, []string{"2", "1", "3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newT(t, Options{})
			r := sub(t, e, "a")
			c.inject(e.Faults())
			mustAppend(t, e, ev("a", 1), ev("a", 2), ev("a", 3)) // one batch: all queued at once
			wantDeliveries(t, r.wait(t, len(c.want)), c.want...)
		})
	}
}

func TestDelayedFanOut(t *testing.T) {
	e := newT(t, Options{})
	r := sub(t, e, "a")
	e.Faults().DelayFanOut(50 * time.Millisecond)
	start := time.Now()
	mustAppend(t, e, ev("a", 1))
	if len(r.events()) != 0 {
		t.Fatal("a delayed event was delivered at once")
	}
	r.wait(t, 1)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("delivered after %v, want at least the delay", d)
	}
	// Close does not wait out delays.
	mustAppend(t, e, ev("a", 2))
	e.Faults().DelayFanOut(time.Hour)
	mustAppend(t, e, ev("a", 3))
	done := make(chan struct{})
	go func() { e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited out a fan-out delay")
	}
}

func TestSubscribeDelay(t *testing.T) {
	e := newT(t, Options{})
	e.Faults().SubscribeDelay(20 * time.Millisecond)
	start := time.Now()
	sub(t, e, "a")
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Subscribe took %v, want at least the delay", d)
	}
}

func TestLoseHistoryStartsAnEpochAndSignalsLoss(t *testing.T) {
	e := newT(t, Options{})
	peer := NewPeer(e)
	defer peer.Close()
	old := mustAppend(t, e, ev("a", 1), ev("a", 2))
	r := sub(t, peer, "a")
	e.Log().LoseHistory()
	wantDeliveries(t, r.wait(t, 1), "lost")
	_, err := e.Read(context.Background(), "a", old[1], 10)
	var gap *engine.GapError
	if !errors.As(err, &gap) || gap.Resume.Epoch == old[1].Epoch || gap.Resume.Offset != 0 {
		t.Fatalf("Read after the old epoch's cursor: %v, want a gap resuming at offset 0 of a new epoch", err)
	}
	p := mustAppend(t, e, ev("a", 3))
	if p[0] != (engine.Position{Epoch: gap.Resume.Epoch, Offset: 1}) {
		t.Fatalf("first append of the new epoch at %v", p[0])
	}
}

func TestRestartKeepsTheLog(t *testing.T) {
	e := New(Options{})
	pos := mustAppend(t, e, ev("a", 1))
	e.Close()
	if _, err := e.Append(context.Background(), []engine.Event{ev("a", 2)}); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	e2 := e.Log().Open()
	defer e2.Close()
	if h, _ := e2.Head(context.Background(), "a"); h != pos[0] {
		t.Fatalf("Head after restart %v, want %v", h, pos[0])
	}
}
