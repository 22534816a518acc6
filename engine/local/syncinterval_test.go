package local

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// fsyncs is how many times the store has fsynced its log so far, counted
// as each fsync returns, before Pebble wakes anyone waiting for it.
func fsyncs(e *Engine) uint64 { return e.logSyncs.Load() }

// By default an append is answered after the fsync that covers it.
func TestAppendIsFsyncedBeforeItIsAnswered(t *testing.T) {
	e := openT(t, t.TempDir(), Options{})
	before := fsyncs(e)
	if _, err := e.Append(context.Background(), []engine.Event{ev("a", 1)}); err != nil {
		t.Fatal(err)
	}
	if after := fsyncs(e); after <= before {
		t.Fatalf("answered with %d fsyncs of the log, as many as before the append", after)
	}
}

// With SyncInterval an append is answered once written, and reaches
// subscribers, Read and Head only after an fsync, SyncInterval later.
func TestSyncIntervalAnswersFirstAndDeliversAfterTheFsync(t *testing.T) {
	const interval = time.Second
	e := openT(t, t.TempDir(), Options{SyncInterval: interval})
	ctx := context.Background()
	type arrival struct {
		off    uint64
		fsyncs uint64
		at     time.Time
	}
	got := make(chan arrival, 1)
	cancel, err := e.Subscribe("a", func(ev engine.Event) {
		got <- arrival{ev.Pos.Offset, fsyncs(e), time.Now()}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	start := time.Now()
	pos, err := e.Append(ctx, []engine.Event{ev("a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	answered, atAnswer := time.Since(start), fsyncs(e)
	if answered > interval/2 {
		t.Fatalf("Append took %v: it waited for the fsync", answered)
	}
	if pos[0].Offset != 1 {
		t.Fatalf("offset %d, want 1", pos[0].Offset)
	}
	// Not fsynced yet: not readable and not delivered.
	if evs, err := e.Read(ctx, "a", engine.Position{}, 10); err != nil || len(evs) != 0 {
		t.Fatalf("Read before the fsync: %d events, %v; want none", len(evs), err)
	}
	if h, err := e.Head(ctx, "a"); err != nil || h.Offset != 0 {
		t.Fatalf("Head before the fsync: %v, %v; want offset 0", h, err)
	}
	select {
	case a := <-got:
		if a.at.Sub(start) < interval*9/10 {
			t.Fatalf("delivered %v after the append, before the interval", a.at.Sub(start))
		}
	case <-time.After(5 * interval):
		t.Fatal("never delivered")
	}
	// Delivered: now fsynced, readable and the head.
	if n := fsyncs(e); n <= atAnswer {
		t.Fatalf("delivered with %d fsyncs, as many as when the append was answered", n)
	}
	if evs, err := e.Read(ctx, "a", engine.Position{}, 10); err != nil || len(evs) != 1 {
		t.Fatalf("Read after delivery: %d events, %v; want 1", len(evs), err)
	}
	if h, _ := e.Head(ctx, "a"); h.Offset != 1 {
		t.Fatalf("Head after delivery: %v, want offset 1", h)
	}
}

// Close fsyncs what was answered and not yet fsynced.
func TestSyncIntervalCloseKeepsAnsweredAppends(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, Options{SyncInterval: time.Second})
	if _, err := e.Append(context.Background(), []engine.Event{ev("a", 1), ev("a", 2)}); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openT(t, dir, Options{})
	evs, err := e.Read(context.Background(), "a", engine.Position{}, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("after reopening: %d events, %v; want 2", len(evs), err)
	}
}

// Many publishers with a short SyncInterval: every event is delivered once,
// in offset order, with the offsets the publishers were answered.
func TestSyncIntervalManyPublishers(t *testing.T) {
	e := openT(t, t.TempDir(), Options{SyncInterval: 2 * time.Millisecond})
	const topics, publishers, each = 4, 8, 100
	var mu sync.Mutex
	delivered := map[string][]uint64{}
	for i := range topics {
		topic := fmt.Sprintf("t%d", i)
		cancel, err := e.Subscribe(topic, func(ev engine.Event) {
			mu.Lock()
			delivered[topic] = append(delivered[topic], ev.Pos.Offset)
			mu.Unlock()
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
	}
	answered := make(chan engine.Position, publishers*each)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				pos, err := e.Append(context.Background(), []engine.Event{ev(fmt.Sprintf("t%d", (p+i)%topics), i)})
				if err != nil {
					t.Error(err)
					return
				}
				answered <- pos[0]
			}
		})
	}
	wg.Wait()
	close(answered)
	if len(answered) != publishers*each {
		t.Fatalf("%d appends answered, want %d", len(answered), publishers*each)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, offs := range delivered {
			n += len(offs)
		}
		mu.Unlock()
		if n == publishers*each {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered", n, publishers*each)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for topic, offs := range delivered {
		for i, off := range offs {
			if off != uint64(i+1) {
				t.Fatalf("%s: delivery %d has offset %d, want %d", topic, i, off, i+1)
			}
		}
	}
}

func TestSyncIntervalIsBounded(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, MaxSyncInterval + time.Millisecond} {
		if e, err := Open(t.TempDir(), Options{SyncInterval: d, Logger: quiet}); err == nil {
			e.Close()
			t.Errorf("SyncInterval %v accepted", d)
		}
	}
}
