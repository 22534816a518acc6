package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/testdisk"
)

// appendUntilRefused appends 16 KiB events until the engine refuses one, and
// returns the data of every event it acknowledged, by offset.
func appendUntilRefused(t *testing.T, e *Engine, topic string) map[uint64]string {
	t.Helper()
	acked := map[uint64]string{}
	for i := 0; ; i++ {
		if i > 10_000 {
			t.Fatal("the disk never filled")
		}
		data := fmt.Sprintf("%06d", i) + strings.Repeat("x", 16<<10)
		// A write of the log may wait for room (no reserve left): that
		// append gives up after a while, its outcome unknown.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pos, err := e.Append(ctx, []engine.Event{{Topic: topic, Type: "t", Data: []byte(data)}})
		cancel()
		if err != nil {
			if !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("append on a full disk: %v, want ErrUnavailable", err)
			}
			t.Logf("refused after %d events: %v", len(acked), err)
			return acked
		}
		acked[pos[0].Offset] = data
	}
}

// checkAll reads topic from its start and checks every acknowledged event is there.
func checkAll(t *testing.T, e *Engine, topic string, acked map[uint64]string) {
	t.Helper()
	found := 0
	after := engine.Position{}
	for {
		evs, err := e.Read(context.Background(), topic, after, 100)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			if want, ok := acked[ev.Pos.Offset]; ok {
				if string(ev.Data) != want {
					t.Fatalf("event %d holds other data", ev.Pos.Offset)
				}
				found++
			}
		}
		after = evs[len(evs)-1].Pos
	}
	if found != len(acked) {
		t.Fatalf("%d of %d acknowledged events read back", found, len(acked))
	}
}

// waitWritable appends until one is accepted, for at most d.
func waitWritable(t *testing.T, e *Engine, topic string, d time.Duration) engine.Position {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		pos, err := e.Append(context.Background(), []engine.Event{{Topic: topic, Type: "t", Data: []byte("after")}})
		if err == nil {
			if cerr := e.CanWrite(); cerr != nil {
				t.Fatalf("an append was accepted but CanWrite says %v", cerr)
			}
			return pos[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("appends did not resume within %v of freeing space: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer is a log sink written by the engine's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func diskOptions() Options {
	return Options{Reserve: 4 << 20, SpaceCheckInterval: 20 * time.Millisecond, MaxLen: 1 << 20, MaxAge: NoAgeLimit}
}

func TestAFullDiskRefusesAppendsAndResumesOnceSpaceIsFreed(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dropReserve bool
	}{
		{"the reserve takes the write that filled the disk", false},
		{"without the reserve a write of the log waits for room", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := testdisk.Mount(t, 40<<20)
			filler := filepath.Join(disk, "filler")
			if err := os.WriteFile(filler, make([]byte, 16<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(disk, "log")
			e := openT(t, dir, diskOptions())
			if tc.dropReserve {
				os.Remove(filepath.Join(dir, reserveName))
			}
			acked := appendUntilRefused(t, e, "t/full")
			if len(acked) == 0 {
				t.Fatal("nothing was accepted before the disk filled")
			}
			if err := e.CanWrite(); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("CanWrite on a full disk: %v, want ErrUnavailable", err)
			}
			// Refused again, at once, without touching the disk.
			if _, err := e.Append(context.Background(), []engine.Event{{Topic: "t/full", Type: "t", Data: []byte("x")}}); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("append while full: %v", err)
			}
			checkAll(t, e, "t/full", acked) // history is still served

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			pos := waitWritable(t, e, "t/full", 5*time.Second)
			acked[pos.Offset] = "after"
			checkAll(t, e, "t/full", acked)

			// Everything acknowledged is durable.
			e.Close()
			e = openT(t, dir, diskOptions())
			checkAll(t, e, "t/full", acked)
		})
	}
}

func TestAStoreOpenedOnAFullDiskServesHistoryAndResumesWrites(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keepReserve bool
	}{
		{"reserve in place", true},
		{"no room for the reserve: opened read-only", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := testdisk.Mount(t, 32<<20)
			dir := filepath.Join(disk, "log")
			e := openT(t, dir, diskOptions())
			acked := map[uint64]string{}
			for i := range 20 {
				data := fmt.Sprint("event ", i)
				pos, err := e.Append(context.Background(), []engine.Event{{Topic: "t/restart", Type: "t", Data: []byte(data)}})
				if err != nil {
					t.Fatal(err)
				}
				acked[pos[0].Offset] = data
			}
			e.Close()
			if !tc.keepReserve {
				os.Remove(filepath.Join(dir, reserveName))
			}
			filler := filepath.Join(disk, "filler")
			testdisk.Fill(t, filler)

			var logs lockedBuffer
			opt := diskOptions()
			opt.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			start := time.Now()
			e = openT(t, dir, opt)
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("opening on a full disk took %v", d)
			}
			checkAll(t, e, "t/restart", acked)
			if _, err := e.Append(context.Background(), []engine.Event{{Topic: "t/restart", Type: "t", Data: []byte("x")}}); !errors.Is(err, engine.ErrUnavailable) {
				t.Fatalf("append on a full disk: %v, want ErrUnavailable", err)
			}
			if err := e.CanWrite(); err == nil {
				t.Fatal("CanWrite is nil on a full disk")
			}
			time.Sleep(300 * time.Millisecond) // some checks of the watcher
			if n := strings.Count(logs.String(), "\n"); n > 20 {
				t.Fatalf("%d log lines in 300 ms on a full disk:\n%s", n, logs.String())
			}

			os.Remove(filler)
			pos := waitWritable(t, e, "t/restart", 5*time.Second)
			acked[pos.Offset] = "after"
			checkAll(t, e, "t/restart", acked)
			if pos.Offset != 21 {
				t.Fatalf("first event after the full disk has offset %d, want 21", pos.Offset)
			}
		})
	}
}

// Close does not wait forever when publishers fill the request queue: the
// committer never waits for the lock Close holds.
func TestCloseWithAFullQueueOfAppends(t *testing.T) {
	e, err := open(t.TempDir(), Options{MaxBatch: 1, MaxAge: NoAgeLimit, Logger: quiet}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := e.Append(context.Background(), []engine.Event{{Topic: "t/x", Type: "t", Data: []byte("x")}}); err != nil {
					return // ErrClosed
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- e.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s with a full queue of appends")
	}
	wg.Wait()
}

// A backup on a nearly full disk is refused: it must not spend the reserve
// and stop publishing.
func TestABackupDoesNotFillTheDisk(t *testing.T) {
	disk := testdisk.Mount(t, 32<<20)
	dir := filepath.Join(disk, "log")
	e := openT(t, dir, diskOptions())
	if _, err := e.Append(context.Background(), []engine.Event{{Topic: "t/b", Type: "t", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	testdisk.Fill(t, filepath.Join(disk, "filler"))
	err := e.Backup(filepath.Join(disk, "backup"))
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("backup on a full disk: %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(filepath.Join(dir, reserveName)); err != nil {
		t.Fatalf("the reserve is gone after a refused backup: %v", err)
	}
	if err := e.CanWrite(); err != nil {
		t.Fatalf("a refused backup stopped writes: %v", err)
	}
}
