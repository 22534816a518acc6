package redis

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// resumer subscribes to a topic as the hub does: it starts at the topic's
// Head, takes live events past its cursor, and re-reads history after its
// cursor when the engine calls lost.
type resumer struct {
	e      *Engine
	topic  string
	mu     sync.Mutex
	cursor engine.Position
	got    []string
	viaFn  int // events taken from fan-out
	relost chan struct{}
}

func subscribeResumer(t *testing.T, e *Engine, topic string) *resumer {
	t.Helper()
	r := &resumer{e: e, topic: topic, relost: make(chan struct{}, 1)}
	cancel, err := e.Subscribe(topic, func(ev engine.Event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.viaFn++
		r.take(ev)
	}, func() {
		select {
		case r.relost <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	h, err := e.Head(ctx(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.cursor = h
	r.mu.Unlock()
	return r
}

// take keeps ev if it is past the cursor; r.mu is held.
func (r *resumer) take(ev engine.Event) {
	if ev.Pos.Epoch == r.cursor.Epoch && ev.Pos.Offset <= r.cursor.Offset {
		return
	}
	r.cursor = ev.Pos
	r.got = append(r.got, string(ev.Data))
}

// lostCalled reports whether lost was called since the last look.
func (r *resumer) lostCalled() bool {
	select {
	case <-r.relost:
		return true
	default:
		return false
	}
}

// awaitLostAndReread waits for a lost call, then re-reads after the cursor.
func (r *resumer) awaitLostAndReread(t *testing.T, why string) {
	t.Helper()
	select {
	case <-r.relost:
	case <-time.After(20 * time.Second):
		t.Fatalf("no lost call after %s", why)
	}
	r.mu.Lock()
	after := r.cursor
	r.mu.Unlock()
	events, err := r.e.Read(ctx(t), r.topic, after, 10)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range events {
		r.take(ev)
	}
}

// has returns what the subscriber took, joined by spaces, and how many came
// by fan-out.
func (r *resumer) has() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.got, " "), r.viaFn
}
