package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/enginetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openT(t testing.TB, dir string, opt Options) *Engine {
	t.Helper()
	return openClockT(t, dir, opt, time.Now)
}

func openClockT(t testing.TB, dir string, opt Options, now func() time.Time) *Engine {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quiet
	}
	e, err := open(dir, opt, now)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestConformance(t *testing.T) {
	type handle struct {
		dir string
		opt Options
		now func() time.Time
	}
	var mu sync.Mutex
	handles := map[engine.Engine]handle{}
	openHandle := func(t *testing.T, h handle) engine.Engine {
		e := openClockT(t, h.dir, h.opt, h.now)
		mu.Lock()
		handles[e] = h
		mu.Unlock()
		return e
	}
	enginetest.Run(t, enginetest.Harness{
		Dense: true,
		Open: func(t *testing.T, o enginetest.Options) engine.Engine {
			return openHandle(t, handle{dir: t.TempDir(), opt: Options{MaxLen: o.MaxLen}, now: time.Now})
		},
		Reopen: func(t *testing.T, old engine.Engine) engine.Engine {
			mu.Lock()
			h := handles[old]
			mu.Unlock()
			if err := old.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openHandle(t, h)
		},
		Aging: &enginetest.Aging{
			Open: func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine {
				// The background sweeper stays out of the way: Trim sweeps.
				opt := Options{MaxAge: maxAge, SweepInterval: time.Hour}
				return openHandle(t, handle{dir: t.TempDir(), opt: opt, now: now})
			},
			Trim: func(t *testing.T, e engine.Engine) {
				if _, err := e.(*Engine).sweep(); err != nil {
					t.Fatalf("sweep: %v", err)
				}
			},
		},
	})
}

func ev(topic string, i int) engine.Event {
	return engine.Event{Topic: topic, Type: "t", Data: fmt.Appendf(nil, "%d", i)}
}

func TestSecondOpenOfDirFails(t *testing.T) {
	dir := t.TempDir()
	openT(t, dir, Options{})
	e2, err := Open(dir, Options{Logger: quiet})
	if err == nil {
		e2.Close()
		t.Fatal("second Open of a locked dir succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another engine") {
		t.Fatalf("second Open: %v, want a clear 'in use' error", err)
	}
	t.Log(err)
}

func TestDirFreeAfterClose(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, Options{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	openT(t, dir, Options{})
}

func TestWipedDirGetsNewEpoch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := openT(t, dir, Options{})
	pos, err := e.Append(ctx, []engine.Event{ev("a", 1), ev("a", 2)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.Epoch()); n == 0 || n > 16 {
		t.Fatalf("epoch %q: want a short, non-empty id", e.Epoch())
	}
	e.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	e = openT(t, dir, Options{})
	if e.Epoch() == pos[0].Epoch {
		t.Fatalf("wiped dir kept epoch %q", e.Epoch())
	}
	_, err = e.Read(ctx, "a", pos[1], 10)
	var gap *engine.GapError
	if !errors.As(err, &gap) || gap.Resume != (engine.Position{Epoch: e.Epoch()}) {
		t.Fatalf("Read with a cursor from the wiped store: %v, want a gap resuming at {%s 0}", err, e.Epoch())
	}
}

func TestAgeTrimming(t *testing.T) {
	ctx := context.Background()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }

	// A long SweepInterval: the test calls sweep itself.
	e, err := open(t.TempDir(), Options{MaxAge: time.Hour, SweepInterval: time.Hour, Logger: quiet}, now)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for i := 1; i <= 5; i++ { // offsets 1..5 at t0
		if _, err := e.Append(ctx, []engine.Event{ev("old", i), ev("mixed", i)}); err != nil {
			t.Fatal(err)
		}
	}
	advance(50 * time.Minute)
	for i := 6; i <= 8; i++ { // offsets 6..8 of "mixed" at t0+50m
		if _, err := e.Append(ctx, []engine.Event{ev("mixed", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.sweep(); err != nil || n != 0 {
		t.Fatalf("sweep before anything expired: %d topics trimmed, %v", n, err)
	}
	advance(20 * time.Minute) // t0+70m: offsets 1..5 expired
	if n, err := e.sweep(); err != nil || n != 2 {
		t.Fatalf("sweep: %d topics trimmed, %v; want 2", n, err)
	}
	epoch := e.Epoch()
	_, err = e.Read(ctx, "mixed", engine.Position{Epoch: epoch, Offset: 2}, 10)
	var gap *engine.GapError
	if !errors.As(err, &gap) || gap.Resume != (engine.Position{Epoch: epoch, Offset: 5}) {
		t.Fatalf("Read(mixed after 2) after the sweep: %v, want gap resuming at 5", err)
	}
	got, err := e.Read(ctx, "mixed", gap.Resume, 10)
	if err != nil || len(got) != 3 || got[0].Pos.Offset != 6 {
		t.Fatalf("Read(mixed after 5) = %d events, %v; want offsets 6..8", len(got), err)
	}
	// A topic whose events all expired: empty, head kept, gap from older cursors.
	if h, _ := e.Head(ctx, "old"); h.Offset != 5 {
		t.Fatalf("Head(old) = %v, want offset 5 kept after its events expired", h)
	}
	got, err = e.Read(ctx, "old", engine.Position{}, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("Read(old from start) = %d events, %v; want none", len(got), err)
	}
	_, err = e.Read(ctx, "old", engine.Position{Epoch: epoch, Offset: 3}, 10)
	if !errors.As(err, &gap) || gap.Resume.Offset != 5 {
		t.Fatalf("Read(old after 3): %v, want a gap resuming at 5", err)
	}
	// Offsets continue after a full expiry, and the trim survives a reopen.
	pos, err := e.Append(ctx, []engine.Event{ev("old", 6)})
	if err != nil || pos[0].Offset != 6 {
		t.Fatalf("Append after expiry = %v, %v; want offset 6", pos, err)
	}
	dir := e.dir
	e.Close()
	e, err = open(dir, Options{MaxAge: time.Hour, SweepInterval: time.Hour, Logger: quiet}, now)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err = e.Read(ctx, "mixed", engine.Position{Epoch: epoch, Offset: 2}, 10); !errors.Is(err, engine.ErrGap) {
		t.Fatalf("after reopen, Read(mixed after 2): %v, want a gap", err)
	}
}

func TestSweeperRunsInBackground(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), Options{MaxAge: 50 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
	if _, err := e.Append(ctx, []engine.Event{ev("a", 1), ev("a", 2)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := e.Read(ctx, "a", engine.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events older than MaxAge still readable after 10s: %d", len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoAgeLimit(t *testing.T) {
	e := openT(t, t.TempDir(), Options{MaxAge: NoAgeLimit})
	if n, err := e.sweep(); err != nil || n != 0 {
		t.Fatalf("sweep with NoAgeLimit: %d, %v", n, err)
	}
}

func TestOpenRejectsUnknownData(t *testing.T) {
	t.Run("file instead of dir", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f")
		os.WriteFile(path, []byte("x"), 0o600)
		if e, err := Open(path, Options{Logger: quiet}); err == nil {
			e.Close()
			t.Fatal("Open of a regular file succeeded")
		} else {
			t.Log(err)
		}
	})
	t.Run("garbage store files", func(t *testing.T) {
		dir := t.TempDir()
		e := openT(t, dir, Options{})
		e.Close()
		entries, _ := os.ReadDir(dir)
		for _, de := range entries {
			if strings.HasPrefix(de.Name(), "MANIFEST") || de.Name() == "CURRENT" {
				os.WriteFile(filepath.Join(dir, de.Name()), []byte("not a manifest\n"), 0o600)
			}
		}
		if e, err := Open(dir, Options{Logger: quiet}); err == nil {
			e.Close()
			t.Fatal("Open of a corrupt store succeeded")
		} else {
			t.Log(err)
		}
	})
	t.Run("foreign pebble store", func(t *testing.T) {
		dir := t.TempDir()
		db, err := pebble.Open(dir, &pebble.Options{Logger: &pebbleLogger{log: quiet}})
		if err != nil {
			t.Fatal(err)
		}
		db.Set([]byte("hello"), []byte("world"), pebble.Sync)
		db.Close()
		if e, err := Open(dir, Options{Logger: quiet}); err == nil {
			e.Close()
			t.Fatal("Open of a foreign Pebble store succeeded")
		} else if !strings.Contains(err.Error(), "not a herald log") {
			t.Fatalf("Open of a foreign Pebble store: %v", err)
		}
	})
	t.Run("unknown format", func(t *testing.T) {
		dir := t.TempDir()
		e := openT(t, dir, Options{})
		e.db.Set(formatKey, []byte("99"), pebble.Sync)
		e.Close()
		if e, err := Open(dir, Options{Logger: quiet}); err == nil {
			e.Close()
			t.Fatal("Open of a store of an unknown format succeeded")
		} else if !strings.Contains(err.Error(), `format "99"`) {
			t.Fatalf("Open of an unknown format: %v", err)
		}
	})
}

func TestCorruptRecordsAreErrors(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), Options{})
	if _, err := e.Append(ctx, []engine.Event{ev("a", 1), ev("a", 2), ev("b", 1)}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, {eventFormat}, {9, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {eventFormat, 0, 0, 0, 0, 0, 0, 0, 0, 200}} {
		e.db.Set(logKey("a", 2), bad, pebble.Sync)
		if _, err := e.Read(ctx, "a", engine.Position{}, 10); err == nil || !strings.Contains(err.Error(), "corrupt event") {
			t.Fatalf("Read over a corrupt event %x: %v, want a corruption error", bad, err)
		}
	}
	// Corrupt topic metadata, seen when the topic is first loaded.
	e.db.Set(metaKey("c"), []byte{1, 2, 3}, pebble.Sync)
	if _, err := e.Head(ctx, "c"); err == nil || !strings.Contains(err.Error(), "corrupt metadata") {
		t.Fatalf("Head over corrupt metadata: %v", err)
	}
	if _, err := e.Append(ctx, []engine.Event{ev("c", 1)}); err == nil {
		t.Fatal("Append to a topic with corrupt metadata succeeded")
	}
	// Other topics, even in the same group commit, are unaffected.
	if pos, err := e.Append(ctx, []engine.Event{ev("b", 2)}); err != nil || pos[0].Offset != 2 {
		t.Fatalf("Append(b) = %v, %v", pos, err)
	}
}

func TestCallbackPanicDoesNotStopEngine(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), Options{})
	cancel, _ := e.Subscribe("a", func(engine.Event) { panic("boom") }, nil)
	defer cancel()
	var got atomic.Int64
	cancel2, _ := e.Subscribe("a", func(engine.Event) { got.Add(1) }, nil)
	defer cancel2()
	for i := range 3 {
		if _, err := e.Append(ctx, []engine.Event{ev("a", i)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got.Load() != 3 {
		t.Fatalf("second subscriber got %d events, want 3", got.Load())
	}
}

// A publisher never waits for fan-out: Append returns while a subscriber is
// still busy with an earlier event, and delivery catches up in order.
func TestAppendDoesNotWaitForSubscribers(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), Options{NoSync: true})
	release := make(chan struct{})
	got := make(chan uint64, 10)
	cancel, _ := e.Subscribe("a", func(ev engine.Event) {
		if ev.Pos.Offset == 1 {
			<-release
		}
		got <- ev.Pos.Offset
	}, nil)
	defer cancel()
	appended := make(chan error, 1)
	go func() {
		for i := 1; i <= 10; i++ {
			if _, err := e.Append(ctx, []engine.Event{ev("a", i)}); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Append waited for a busy subscriber")
	}
	close(release)
	for want := uint64(1); want <= 10; want++ {
		if off := <-got; off != want {
			t.Fatalf("delivered offset %d, want %d", off, want)
		}
	}
}

func TestLargeCountTrimUsesRangeDelete(t *testing.T) {
	ctx := context.Background()
	e := openT(t, t.TempDir(), Options{MaxLen: 10, NoSync: true})
	var batch []engine.Event
	for i := range 500 {
		batch = append(batch, ev("a", i))
	}
	if _, err := e.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	got, err := e.Read(ctx, "a", engine.Position{}, 1000)
	if err != nil || len(got) != 10 || got[0].Pos.Offset != 491 {
		t.Fatalf("Read = %d events (first %v), %v; want 491..500", len(got), got, err)
	}
}

// Anyone may ask for any topic (an anonymous stream names it): asking must not
// grow the engine's memory. Only topics that hold events are remembered.
func TestLookingUpUnknownTopicsKeepsNoState(t *testing.T) {
	e := openT(t, t.TempDir(), Options{})
	ctx := context.Background()
	for i := range 1000 {
		topic := fmt.Sprintf("nobody/%d", i)
		if p, err := e.Head(ctx, topic); err != nil || p.Offset != 0 {
			t.Fatalf("Head(%s) = %v, %v", topic, p, err)
		}
		if evs, err := e.Read(ctx, topic, engine.Position{}, 10); err != nil || len(evs) != 0 {
			t.Fatalf("Read(%s) = %v, %v", topic, evs, err)
		}
	}
	if _, err := e.Append(ctx, []engine.Event{{Topic: "somebody", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if p, err := e.Head(ctx, "somebody"); err != nil || p.Offset != 1 {
		t.Fatalf("Head(somebody) = %v, %v", p, err)
	}
	if cached := cachedLen(e); cached != 1 {
		t.Fatalf("%d topic states kept after looking up 1000 unknown topics and writing one, want 1", cached)
	}
}
