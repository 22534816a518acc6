package nats

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herald-hub/herald/engine"
)

// live builds a republished message of topic at seq, after prev.
func live(e *Engine, topic string, seq, prev uint64) *nats.Msg {
	m := nats.NewMsg(e.live(topic))
	m.Header[hdrSequence] = []string{strconv.FormatUint(seq, 10)}
	m.Header[hdrPrev] = []string{strconv.FormatUint(prev, 10)}
	m.Header[hdrTime] = []string{"1"}
	return m
}

func dispatchEngine(t *testing.T) (*Engine, *topic, *[]uint64) {
	e := &Engine{livePrefix: "herald.S.live.", topics: map[string]*topic{}}
	epoch := "e1"
	e.epoch.Store(&epoch)
	var got []uint64
	tp := &topic{name: "a.b", epoch: epoch, delivered: 1, ready: make(chan struct{})}
	tp.subs = []*sub{{fn: func(ev engine.Event) {
		if ev.Topic != "a.b" || ev.Pos.Epoch != "e1" {
			t.Errorf("event %+v", ev)
		}
		got = append(got, ev.Pos.Offset)
	}}}
	e.topics["a.b"] = tp
	return e, tp, &got
}

// Messages of one subject republished out of order are delivered in order.
func TestDispatchReorders(t *testing.T) {
	e, tp, got := dispatchEngine(t)
	if held := e.message(live(e, "a.b", 7, 4)); held != tp {
		t.Fatalf("a message after a missing one was not held")
	}
	if held := e.message(live(e, "a.b", 4, 1)); held != nil {
		t.Fatalf("the held message was not released by its predecessor")
	}
	e.message(live(e, "a.b", 4, 1)) // a duplicate
	e.message(live(e, "a.b", 9, 7))
	if want := []uint64{4, 7, 9}; !slices.Equal(*got, want) {
		t.Fatalf("delivered %v, want %v", *got, want)
	}
	if n := e.holes.Load(); n != 0 {
		t.Fatalf("holes = %d, want 0", n)
	}
}

// A message whose predecessor never comes goes out after holdTime, with its
// hole, which the subscriber fills from Prev.
func TestDispatchReleasesAHole(t *testing.T) {
	e, tp, got := dispatchEngine(t)
	e.message(live(e, "a.b", 7, 4))
	if e.release(tp, time.Now()) {
		t.Fatal("released before holdTime")
	}
	if !e.release(tp, time.Now().Add(holdTime)) {
		t.Fatal("not released after holdTime")
	}
	if want := []uint64{7}; !slices.Equal(*got, want) {
		t.Fatalf("delivered %v, want %v", *got, want)
	}
	if n := e.holes.Load(); n != 1 {
		t.Fatalf("holes = %d, want 1", n)
	}
}

// Topics map to one subject token and back.
func TestSubjectMapping(t *testing.T) {
	e := &Engine{subjPrefix: "herald.S.t.", livePrefix: "herald.S.live."}
	for _, tp := range []string{"a", "a.b", ".", "a..b.", "rooms/7", "u@x.com", "~:/@+-_"} {
		if err := engine.ValidateTopic(tp); err != nil {
			t.Fatal(err)
		}
		s := e.subject(tp)
		if got := unmap(s[len(e.subjPrefix):]); got != tp {
			t.Fatalf("%q -> %q -> %q", tp, s, got)
		}
		for i := len(e.subjPrefix); i < len(s); i++ {
			if c := s[i]; c == '.' || c == ' ' || c == '*' || c == '>' {
				t.Fatalf("%q maps to %q, not one token", tp, s)
			}
		}
	}
}
