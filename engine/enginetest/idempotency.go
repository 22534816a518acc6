package enginetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// testIdempotency checks Event.ID: an append of an ID already appended to
// the topic (well within any engine's window) appends nothing and returns the
// first position, whether the repeat comes later, in the same call, or from
// concurrent calls; IDs are per topic; an event without an ID is never
// deduplicated. The helpers are local to this file so that it stands on its
// own next to the rest of the suite.
func (s *suite) testIdempotency(t *testing.T) {
	t.Run("Sequential", func(t *testing.T) {
		e := s.h.Open(t, Options{})
		sub := idemSubscribe(t, e, "idem/seq")
		first := idemAppend(t, e, idemEvent("idem/seq", "k1", "first"))
		// A retry may carry other data: the key decides, the first event stays.
		again := idemAppend(t, e, idemEvent("idem/seq", "k1", "retry"))
		if again[0] != first[0] {
			t.Fatalf("retry of ID k1 returned %v, want the first position %v", again[0], first[0])
		}
		marker := idemAppend(t, e, idemEvent("idem/seq", "", "marker"))
		got := idemReadAll(t, e, "idem/seq")
		if len(got) != 2 || string(got[0].Data) != "first" || got[0].Pos != first[0] || string(got[1].Data) != "marker" {
			t.Fatalf("log after a retried append: %s, want the first event then the marker", idemDescribe(got))
		}
		// Nothing was delivered for the retry either.
		live := sub.waitFor(t, marker[0])
		if len(live) != 2 || string(live[0].Data) != "first" {
			t.Fatalf("subscriber got %s, want the first event then the marker", idemDescribe(live))
		}
	})

	t.Run("InOneCall", func(t *testing.T) {
		e := s.h.Open(t, Options{})
		pos := idemAppend(t, e,
			idemEvent("idem/batch", "a", "1"),
			idemEvent("idem/batch", "", "2"),
			idemEvent("idem/batch", "a", "3"),
			idemEvent("idem/batch", "b", "4"),
			idemEvent("idem/batch", "b", "5"),
		)
		if pos[2] != pos[0] || pos[4] != pos[3] {
			t.Fatalf("positions %v: a repeated ID in one call must return the first position", pos)
		}
		if !(pos[0].Offset < pos[1].Offset && pos[1].Offset < pos[3].Offset) {
			t.Fatalf("positions %v: the appended events must get increasing offsets", pos)
		}
		got := idemReadAll(t, e, "idem/batch")
		if want := "1 2 4"; idemData(got) != want {
			t.Fatalf("log holds %q, want %q", idemData(got), want)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		e := s.h.Open(t, Options{})
		const callers = 16
		var wg sync.WaitGroup
		start := make(chan struct{})
		pos := make([]engine.Position, callers)
		errs := make([]error, callers)
		for i := range callers {
			wg.Go(func() {
				<-start
				p, err := e.Append(idemCtx(t), []engine.Event{idemEvent("idem/conc", "same", fmt.Sprint(i))})
				if err == nil && len(p) != 1 {
					err = fmt.Errorf("%d positions for one event", len(p))
				}
				if err == nil {
					pos[i] = p[0]
				}
				errs[i] = err
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("caller %d: %v", i, err)
			}
			if pos[i] != pos[0] {
				t.Fatalf("concurrent appends of one ID returned %v and %v", pos[0], pos[i])
			}
		}
		if got := idemReadAll(t, e, "idem/conc"); len(got) != 1 || got[0].Pos != pos[0] {
			t.Fatalf("log holds %s, want one event at %v", idemDescribe(got), pos[0])
		}
	})

	t.Run("PerTopic", func(t *testing.T) {
		e := s.h.Open(t, Options{})
		pos := idemAppend(t, e, idemEvent("idem/x", "k", "x"), idemEvent("idem/y", "k", "y"))
		again := idemAppend(t, e, idemEvent("idem/y", "k", "y2"), idemEvent("idem/x", "k", "x2"))
		if again[0] != pos[1] || again[1] != pos[0] {
			t.Fatalf("retries returned %v, want %v", again, []engine.Position{pos[1], pos[0]})
		}
		for topic, want := range map[string]string{"idem/x": "x", "idem/y": "y"} {
			if got := idemData(idemReadAll(t, e, topic)); got != want {
				t.Fatalf("%s holds %q, want %q: one ID is independent per topic", topic, got, want)
			}
		}
	})

	t.Run("WithoutIDNeverDeduplicated", func(t *testing.T) {
		e := s.h.Open(t, Options{})
		a := idemAppend(t, e, idemEvent("idem/none", "", "same"))
		b := idemAppend(t, e, idemEvent("idem/none", "", "same"), idemEvent("idem/none", "", "same"))
		if a[0] == b[0] || b[0] == b[1] {
			t.Fatalf("events without an ID share positions: %v %v", a, b)
		}
		if got := idemReadAll(t, e, "idem/none"); len(got) != 3 {
			t.Fatalf("log holds %s, want 3 events", idemDescribe(got))
		}
	})

	t.Run("AcrossReopen", func(t *testing.T) {
		if s.h.Reopen == nil {
			t.Skip("engine cannot be reopened on the same back end (Harness.Reopen is nil)")
		}
		e := s.h.Open(t, Options{})
		first := idemAppend(t, e, idemEvent("idem/reopen", "k", "first"))
		e = s.h.Reopen(t, e)
		again := idemAppend(t, e, idemEvent("idem/reopen", "k", "retry"))
		if again[0] != first[0] {
			t.Fatalf("retry after a restart returned %v, want %v", again[0], first[0])
		}
		if got := idemData(idemReadAll(t, e, "idem/reopen")); got != "first" {
			t.Fatalf("log holds %q after a retry across a restart, want %q", got, "first")
		}
	})
}

func idemCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*Timeout)
	t.Cleanup(cancel)
	return ctx
}

func idemEvent(topic, id, data string) engine.Event {
	return engine.Event{Topic: topic, Type: "test", ID: id, Data: []byte(data)}
}

func idemAppend(t *testing.T, e engine.Engine, events ...engine.Event) []engine.Position {
	t.Helper()
	pos, err := e.Append(idemCtx(t), events)
	if err != nil {
		t.Fatalf("Append(%d events): %v", len(events), err)
	}
	if len(pos) != len(events) {
		t.Fatalf("Append(%d events) returned %d positions", len(events), len(pos))
	}
	return pos
}

func idemReadAll(t *testing.T, e engine.Engine, topic string) []engine.Event {
	t.Helper()
	var out []engine.Event
	after := engine.Position{}
	for {
		page, err := e.Read(idemCtx(t), topic, after, 100)
		if err != nil {
			t.Fatalf("Read(%q): %v", topic, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Pos
	}
}

func idemData(events []engine.Event) string {
	s := ""
	for i, ev := range events {
		if i > 0 {
			s += " "
		}
		s += string(ev.Data)
	}
	return s
}

func idemDescribe(events []engine.Event) string {
	s := "["
	for i, ev := range events {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %q", ev.Pos, ev.Data)
	}
	return s + "]"
}

// idemSub collects a subscription's events.
type idemSub struct {
	mu     sync.Mutex
	events []engine.Event
}

func idemSubscribe(t *testing.T, e engine.Engine, topic string) *idemSub {
	t.Helper()
	s := &idemSub{}
	cancel, err := e.Subscribe(topic, func(ev engine.Event) {
		s.mu.Lock()
		s.events = append(s.events, ev)
		s.mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	t.Cleanup(cancel)
	return s
}

// waitFor returns what was delivered once the event at last was.
func (s *idemSub) waitFor(t *testing.T, last engine.Position) []engine.Event {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		s.mu.Lock()
		got := append([]engine.Event(nil), s.events...)
		s.mu.Unlock()
		for _, ev := range got {
			if ev.Pos == last {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("event at %v not delivered within %v; got %s", last, Timeout, idemDescribe(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
