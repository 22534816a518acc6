package local

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

type testClock struct{ nanos atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.nanos.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(0, c.nanos.Load()) }
func (c *testClock) advance(d time.Duration) { c.nanos.Add(int64(d)) }

func sweepT(t *testing.T, e *Engine) sweepStats {
	t.Helper()
	s, err := e.sweepOnce()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readN(t *testing.T, e *Engine, topic string) int {
	t.Helper()
	got, err := e.Read(context.Background(), topic, engine.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(got)
}

// A sweep reads the index keys of the minutes that expired, not every topic,
// and deletes those it is done with.
func TestSweepVisitsOnlyExpiredBuckets(t *testing.T) {
	c := newTestClock()
	e := openClockT(t, t.TempDir(), Options{MaxAge: time.Hour, SweepInterval: time.Hour}, c.now)
	for i := range 100 { // t0
		mustAppendT(t, e, ev(fmt.Sprintf("old/%d", i), 1), ev(fmt.Sprintf("old/%d", i), 2))
	}
	c.advance(50 * time.Minute)
	for i := range 10 { // t0+50m
		mustAppendT(t, e, ev(fmt.Sprintf("new/%d", i), 1))
	}
	mustAppendT(t, e, ev("old/0", 3))
	if got := countKeys(t, e, 'a'); got != 111 {
		t.Fatalf("%d index keys, want one per topic and minute: 111", got)
	}
	if s := sweepT(t, e); s.keys != 0 || s.trimmed != 0 || s.full {
		t.Fatalf("sweep before anything expired: %+v, want no key read", s)
	}

	c.advance(20 * time.Minute) // t0+70m: the events of t0 expired
	if s := sweepT(t, e); s.keys != 100 || s.topics != 100 || s.trimmed != 100 {
		t.Fatalf("sweep at t0+70m: %+v, want the 100 keys of t0 read and their topics trimmed", s)
	}
	if got := countKeys(t, e, 'a'); got != 11 {
		t.Fatalf("%d index keys after the sweep, want the 11 of t0+50m", got)
	}
	if n := readN(t, e, "old/0"); n != 1 {
		t.Fatalf("old/0 holds %d events, want 1 (t0+50m)", n)
	}
	if n := readN(t, e, "old/1"); n != 0 {
		t.Fatalf("old/1 holds %d events, want none", n)
	}
	if s := sweepT(t, e); s.keys != 0 {
		t.Fatalf("sweep again: %+v, want no key read", s)
	}

	c.advance(time.Hour) // t0+130m: everything expired
	if s := sweepT(t, e); s.keys != 11 || s.trimmed != 11 {
		t.Fatalf("sweep at t0+130m: %+v, want the 11 keys of t0+50m", s)
	}
	if got := countKeys(t, e, 'a'); got != 0 {
		t.Fatalf("%d index keys once every event expired, want none", got)
	}
	if n := readN(t, e, "old/0"); n != 0 {
		t.Fatalf("old/0 holds %d events, want none", n)
	}
	// Offsets go on, and the topic is indexed again.
	if pos := mustAppendT(t, e, ev("old/0", 4)); pos[0].Offset != 4 {
		t.Fatalf("append after expiry at offset %d, want 4", pos[0].Offset)
	}
	if got := countKeys(t, e, 'a'); got != 1 {
		t.Fatalf("%d index keys after a new append, want 1", got)
	}
}

// A store appended to without the index (here with NoAgeLimit) is scanned
// whole once, which indexes each topic's oldest event left; later sweeps read
// the index, and each trim indexes the oldest event it leaves, which no
// append did.
func TestStoreWithoutIndexIsScannedOnce(t *testing.T) {
	c := newTestClock()
	dir := t.TempDir()
	e := openClockT(t, dir, Options{MaxAge: NoAgeLimit}, c.now)
	for i := range 50 {
		mustAppendT(t, e, ev(fmt.Sprintf("t/%d", i), 1))
	}
	c.advance(30 * time.Minute)
	mustAppendT(t, e, ev("t/0", 2))
	c.advance(20 * time.Minute)
	mustAppendT(t, e, ev("t/0", 3))
	if got := countKeys(t, e, 'a'); got != 0 || e.ageIndexed.Load() {
		t.Fatalf("without an age limit: %d index keys, indexed %v; want none", got, e.ageIndexed.Load())
	}
	e.Close()

	c.advance(20 * time.Minute) // t0+70m
	e = openClockT(t, dir, Options{MaxAge: time.Hour, SweepInterval: time.Hour}, c.now)
	if s := sweepT(t, e); !s.full || s.keys != 50 || s.trimmed != 50 {
		t.Fatalf("first sweep: %+v, want a full scan of the 50 topics", s)
	}
	if got := countKeys(t, e, 'a'); got != 1 || !e.ageIndexed.Load() {
		t.Fatalf("after the scan: %d index keys, indexed %v; want t/0's only", got, e.ageIndexed.Load())
	}
	c.advance(30 * time.Minute) // t0+100m: t/0's event of t0+30m expired
	if s := sweepT(t, e); s.full || s.keys != 1 || s.trimmed != 1 {
		t.Fatalf("second sweep: %+v, want the index read", s)
	}
	if n := readN(t, e, "t/0"); n != 1 {
		t.Fatalf("t/0 holds %d events, want 1", n)
	}
	c.advance(20 * time.Minute) // t0+120m: everything expired
	if s := sweepT(t, e); s.keys != 1 || s.trimmed != 1 {
		t.Fatalf("third sweep: %+v, want the key of t/0's event of t0+50m read", s)
	}
	if n := readN(t, e, "t/0"); n != 0 {
		t.Fatalf("t/0 holds %d events, want none", n)
	}
}
