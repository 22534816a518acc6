package local

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// cachedLen is the number of durable topic states in memory.
func cachedLen(e *Engine) int {
	n := 0
	for i := range e.states {
		sh := &e.states[i]
		sh.mu.Lock()
		n += len(sh.topics)
		sh.mu.Unlock()
	}
	return n
}

func evictT(t *testing.T, e *Engine) {
	t.Helper()
	if err := e.evictIdle(); err != nil {
		t.Fatal(err)
	}
}

// Topics written once and then quiet leave memory after TopicIdle (three
// passes over the shards, one every TopicIdle/2), a topic in use stays, and a
// dropped topic is read back from the store: its offsets go on.
func TestIdleTopicStatesAreDropped(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), Options{TopicIdle: time.Hour}) // the test runs the passes
	for i := range 1000 {
		mustAppendT(t, e, ev(fmt.Sprintf("users/%d", i), 1))
	}
	if n := cachedLen(e); n != 1000 {
		t.Fatalf("%d topic states after writing 1000 topics", n)
	}
	for pass := 1; pass <= 3; pass++ {
		if _, err := e.Head(ctx, "users/7"); err != nil { // in use
			t.Fatal(err)
		}
		evictT(t, e)
		want := 1000
		if pass == 3 {
			want = 1
		}
		if n := cachedLen(e); n != want {
			t.Fatalf("after pass %d: %d topic states, want %d", pass, n, want)
		}
	}
	for range 3 {
		evictT(t, e)
	}
	// e.assigned goes with e.topics.
	if n, a := cachedLen(e), e.nAssigned; n != 0 || a != 0 {
		t.Fatalf("%d topic states and %d assigned after the topics went quiet, want none", n, a)
	}

	if p, err := e.Head(ctx, "users/5"); err != nil || p.Offset != 1 {
		t.Fatalf("Head(users/5) after its state was dropped = %v, %v; want offset 1", p, err)
	}
	pos := mustAppendT(t, e, ev("users/5", 2), ev("users/6", 2), ev("users/6", 3))
	if pos[0].Offset != 2 || pos[1].Offset != 2 || pos[2].Offset != 3 {
		t.Fatalf("appends after the states were dropped got offsets %v, want 2, 2, 3", pos)
	}
	got, err := e.Read(ctx, "users/6", engine.Position{}, 10)
	if err != nil || len(got) != 3 || got[2].Pos != pos[2] {
		t.Fatalf("Read(users/6) = %v, %v", got, err)
	}
}

// Above MaxTopics, states not used since the pass before go at the next one.
func TestMaxTopicsDropsStatesSooner(t *testing.T) {
	e := openT(t, t.TempDir(), Options{TopicIdle: time.Hour, MaxTopics: 100})
	for i := range 1000 {
		mustAppendT(t, e, ev(fmt.Sprintf("users/%d", i), 1))
	}
	// The committer ran a step itself when the count first went over; at
	// the idle pace, states unused for two passes would still be kept.
	evictT(t, e)
	evictT(t, e)
	if n := cachedLen(e); n > 100 {
		t.Fatalf("%d topic states after two passes, want at most MaxTopics (100)", n)
	}
}

// A topic with a group applied but not yet durable is never dropped: its
// assigned state is ahead of the durable one.
func TestInFlightStatesAreKept(t *testing.T) {
	e := openT(t, t.TempDir(), Options{TopicIdle: time.Hour})
	mustAppendT(t, e, ev("busy", 1), ev("quiet", 1))
	// The committer is idle: the test stands in for it, as if a group of
	// busy were between its apply and its fsync.
	sb, sq := e.shard("busy"), e.shard("quiet")
	a := sb.assigned["busy"]
	a.head++
	sb.assigned["busy"] = a
	for range 4 {
		e.evict(stateShards)
	}
	sb.mu.Lock()
	_, busy := sb.topics["busy"]
	sb.mu.Unlock()
	sq.mu.Lock()
	_, quiet := sq.topics["quiet"]
	sq.mu.Unlock()
	if _, ok := sb.assigned["busy"]; !ok || !busy || quiet {
		t.Fatalf("after the passes: busy kept %v (assigned) %v (durable), quiet kept %v; want busy only", ok, busy, quiet)
	}
	a.head--
	sb.assigned["busy"] = a
}
