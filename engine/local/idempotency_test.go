package local

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/herald-hub/herald/engine"
)

func idEv(topic, id string, i int) engine.Event {
	e := ev(topic, i)
	e.ID = id
	return e
}

// countKeys counts the store's keys starting with prefix.
func countKeys(t *testing.T, e *Engine, prefix byte) int {
	t.Helper()
	n := 0
	err := e.readLocked(func() error {
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
		if err != nil {
			return err
		}
		for valid := it.First(); valid; valid = it.Next() {
			n++
		}
		return it.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustAppendT(t *testing.T, e *Engine, events ...engine.Event) []engine.Position {
	t.Helper()
	pos, err := e.Append(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// A key dedupes for the window from its first append, not after; the sweeper
// drops expired keys and their index entries, and only those; a key reused
// after it expired is a new key that the sweep of the old one leaves alone.
func TestIdempotencyWindow(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	opt := Options{IdempotencyWindow: time.Minute, SweepInterval: time.Hour, MaxAge: NoAgeLimit}
	e := openClockT(t, t.TempDir(), opt, now)

	first := mustAppendT(t, e, idEv("a", "k", 1), idEv("a", "old", 2))
	advance(59 * time.Second)
	if again := mustAppendT(t, e, idEv("a", "k", 3)); again[0] != first[0] {
		t.Fatalf("retry 59s later (window 1m): %v, want %v", again[0], first[0])
	}
	fresh := mustAppendT(t, e, idEv("a", "fresh", 4))
	if n, err := e.expireKeys(); err != nil || n != 0 {
		t.Fatalf("expiry within the window dropped %d keys: %v", n, err)
	}
	advance(time.Second) // the first keys are one window old
	reused := mustAppendT(t, e, idEv("a", "k", 5))
	if reused[0] == first[0] || reused[0].Offset != fresh[0].Offset+1 {
		t.Fatalf("append of an expired key: %v, want a new event after %v", reused[0], fresh[0])
	}
	// "old" expired; "k" was reused (its old entry went with the reuse);
	// "fresh" and the new "k" are live.
	if n, err := e.expireKeys(); err != nil || n != 1 {
		t.Fatalf("expiry dropped %d keys, %v; want 1 (old)", n, err)
	}
	if i, x := countKeys(t, e, 'i'), countKeys(t, e, 'x'); i != 2 || x != 2 {
		t.Fatalf("after expiry: %d keys, %d index entries; want 2 and 2", i, x)
	}
	if again := mustAppendT(t, e, idEv("a", "k", 6)); again[0] != reused[0] {
		t.Fatalf("the reused key no longer dedupes after the old one expired: %v, want %v", again[0], reused[0])
	}
	advance(time.Hour)
	if n, err := e.expireKeys(); err != nil || n != 2 {
		t.Fatalf("expiry dropped %d keys, %v; want 2", n, err)
	}
	if i, x := countKeys(t, e, 'i'), countKeys(t, e, 'x'); i != 0 || x != 0 {
		t.Fatalf("after everything expired: %d keys, %d index entries left", i, x)
	}
}

// Expiry goes through the committer a chunk at a time and drops everything.
func TestExpiryOfManyKeys(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	e := openClockT(t, t.TempDir(), Options{IdempotencyWindow: time.Minute, SweepInterval: time.Hour, NoSync: true}, now)
	const n = 2*expireChunk + 10
	batch := make([]engine.Event, 0, 500)
	for i := range n {
		batch = append(batch, idEv("many", "key-"+strconv.Itoa(i), i))
		if len(batch) == cap(batch) || i == n-1 {
			mustAppendT(t, e, batch...)
			batch = batch[:0]
		}
	}
	clock.Add(int64(time.Minute))
	if got, err := e.expireKeys(); err != nil || got != n {
		t.Fatalf("expireKeys: %d, %v; want %d", got, err, n)
	}
	if i, x := countKeys(t, e, 'i'), countKeys(t, e, 'x'); i != 0 || x != 0 {
		t.Fatalf("%d keys and %d index entries left", i, x)
	}
}

// The key is stored with the event: a retry after a restart, within the
// window, gets the first position even when it is the first append of the
// new process (no state cached).
func TestIdempotencyKeySurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, Options{})
	first := mustAppendT(t, e, idEv("a", "k", 1))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openT(t, dir, Options{})
	if again := mustAppendT(t, e, idEv("a", "k", 2), idEv("a", "k2", 3)); again[0] != first[0] || again[1].Offset != 2 {
		t.Fatalf("after reopen: %v, want %v then offset 2", again, first[0])
	}
}

// A retry refused while the disk is full is not recorded: once writes
// resume, the same key appends.
func TestRefusedAppendRecordsNoKey(t *testing.T) {
	e := openT(t, t.TempDir(), Options{})
	e.refuse(&e.full, "test")
	if _, err := e.Append(context.Background(), []engine.Event{idEv("a", "k", 1)}); err == nil {
		t.Fatal("append accepted while refusing writes")
	}
	e.full.Store(false)
	if pos := mustAppendT(t, e, idEv("a", "k", 1)); pos[0].Offset != 1 {
		t.Fatalf("append after the refusal: %v, want offset 1", pos[0])
	}
	if pos := mustAppendT(t, e, idEv("a", "k", 1)); pos[0].Offset != 1 {
		t.Fatalf("retry: %v, want offset 1", pos[0])
	}
}

func TestAbsurdIDsAndWindowsAreRefused(t *testing.T) {
	e := openT(t, t.TempDir(), Options{})
	_, err := e.Append(context.Background(), []engine.Event{ev("a", 1), idEv("a", strings.Repeat("k", MaxIDLen+1), 2)})
	if err == nil || !strings.Contains(err.Error(), "event 1") || !strings.Contains(err.Error(), "at most 1024") {
		t.Fatalf("ID of %d bytes: %v, want a clear refusal", MaxIDLen+1, err)
	}
	if h, _ := e.Head(context.Background(), "a"); h.Offset != 0 {
		t.Fatalf("a refused call appended %d events", h.Offset)
	}
	mustAppendT(t, e, idEv("a", strings.Repeat("k", MaxIDLen), 1))
	if _, err := Open(t.TempDir(), Options{IdempotencyWindow: -time.Second, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "IdempotencyWindow") {
		t.Fatalf("negative window: %v", err)
	}
}
