package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/redistest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func do(t *testing.T, e *Engine, args ...string) rueidis.RedisResult {
	t.Helper()
	return e.client.Do(ctx(t), e.client.B().Arbitrary(args[0]).Args(args[1:]...).Build())
}

func appendOK(t *testing.T, e *Engine, events ...engine.Event) []engine.Position {
	t.Helper()
	pos, err := e.Append(ctx(t), events)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return pos
}

func readAll(t *testing.T, e *Engine, tp string, after engine.Position) ([]engine.Event, error) {
	t.Helper()
	var out []engine.Event
	for {
		page, err := e.Read(ctx(t), tp, after, 7)
		if err != nil || len(page) == 0 {
			return out, err
		}
		out = append(out, page...)
		after = page[len(page)-1].Pos
	}
}

func datas(events []engine.Event) string {
	var s []string
	for _, e := range events {
		s = append(s, string(e.Data))
	}
	return strings.Join(s, " ")
}

func ev(tp, id, data string) engine.Event {
	return engine.Event{Topic: tp, Type: "t", ID: id, Data: []byte(data)}
}

// A stream left without its meta hash (the meta expired or was deleted) is
// from a lost epoch: the first append of the new epoch deletes it.
func TestOrphanedStreamIsDeleted(t *testing.T) {
	e := mustOpen(t, testOptions(t, testURL(t)))
	k := e.key("orphan")
	for i := 1; i <= 5; i++ {
		do(t, e, "XADD", k+"l", fmt.Sprintf("%d-0", i), "t", "1", "y", "old", "d", "old")
	}
	pos := appendOK(t, e, ev("orphan", "", "new"))
	if pos[0].Offset != 1 {
		t.Fatalf("first append over an orphaned stream at %v, want offset 1", pos[0])
	}
	got, err := readAll(t, e, "orphan", engine.Position{})
	if err != nil || datas(got) != "new" {
		t.Fatalf("Read = %q, %v; want only the new event", datas(got), err)
	}
	// Head of an unseen topic deletes an orphan too, and its epoch is the
	// one the first append uses.
	k = e.key("orphan2")
	do(t, e, "XADD", k+"l", "9-0", "t", "1", "y", "old", "d", "old")
	h, err := e.Head(ctx(t), "orphan2")
	if err != nil || h.Offset != 0 {
		t.Fatalf("Head = %v, %v", h, err)
	}
	pos = appendOK(t, e, ev("orphan2", "", "new"))
	if pos[0] != (engine.Position{Epoch: h.Epoch, Offset: 1}) {
		t.Fatalf("append after Head %v at %v", h, pos[0])
	}
}

// One call retrying IDs of several topics: each retried ID returns its first
// position and appends nothing; new IDs append; IDs are per topic.
func TestIdempotentRetryAcrossTopicsInOneBatch(t *testing.T) {
	e := mustOpen(t, testOptions(t, testURL(t)))
	first := appendOK(t, e, ev("ia", "k1", "a1"), ev("ib", "k1", "b1"), ev("ia", "k2", "a2"))
	again := appendOK(t, e, ev("ib", "k1", "b1x"), ev("ia", "k1", "a1x"), ev("ia", "k3", "a3"), ev("ib", "k2", "b2"), ev("ia", "k2", "a2x"), ev("ia", "k3", "a3x"))
	want := []engine.Position{first[1], first[0], {Epoch: first[0].Epoch, Offset: 3}, {Epoch: first[1].Epoch, Offset: 2}, first[2], {Epoch: first[0].Epoch, Offset: 3}}
	for i := range want {
		if again[i] != want[i] {
			t.Fatalf("retry positions %v, want %v", again, want)
		}
	}
	for tp, w := range map[string]string{"ia": "a1 a2 a3", "ib": "b1 b2"} {
		if got, err := readAll(t, e, tp, engine.Position{}); err != nil || datas(got) != w {
			t.Fatalf("%s holds %q (%v), want %q", tp, datas(got), err, w)
		}
	}
}

// MaxLen is exact for readers (Read trims logically) while the stream is
// trimmed approximately, so memory stays bounded.
func TestMaxLenTrim(t *testing.T) {
	opt := testOptions(t, testURL(t))
	opt.MaxLen = 100
	e := mustOpen(t, opt)
	var batch []engine.Event
	for i := 1; i <= 1000; i++ {
		batch = append(batch, ev("ml", "", strconv.Itoa(i)))
		if len(batch) == 50 {
			appendOK(t, e, batch...)
			batch = nil
		}
	}
	got, err := readAll(t, e, "ml", engine.Position{})
	if err != nil || len(got) != 100 || got[0].Pos.Offset != 901 || got[0].Prev != 900 {
		t.Fatalf("Read from the start: %d events from %v, %v; want 100 from offset 901", len(got), got[0].Pos, err)
	}
	_, err = e.Read(ctx(t), "ml", engine.Position{Epoch: got[0].Pos.Epoch, Offset: 899}, 10)
	var gap *engine.GapError
	if !errors.As(err, &gap) || gap.Resume != (engine.Position{Epoch: got[0].Pos.Epoch, Offset: 900}) {
		t.Fatalf("Read after 899: %v, want a gap resuming after 900", err)
	}
	n, err := do(t, e, "XLEN", e.key("ml")+"l").AsInt64()
	if err != nil || n > 300 {
		t.Fatalf("stream holds %d entries (%v), want at most a few hundred for MaxLen 100", n, err)
	}
}

// Losing a topic's keys (FLUSHDB, a restart without persistence, a DEL) is
// a new epoch: a cursor of the old one reads a gap, offsets start again.
func TestLostKeysAreANewEpoch(t *testing.T) {
	opt := testOptions(t, testURL(t))
	e := mustOpen(t, opt)
	pos := appendOK(t, e, ev("fl", "", "1"), ev("fl", "", "2"), ev("fl", "", "3"))
	redistest.DeletePrefix(t, opt.Client, opt.Prefix)
	_, err := e.Read(ctx(t), "fl", pos[1], 10)
	var gap *engine.GapError
	if !errors.As(err, &gap) || gap.Resume.Epoch == pos[0].Epoch || gap.Resume.Offset != 0 {
		t.Fatalf("Read after a flush: %v, want a gap resuming in a new epoch at 0", err)
	}
	h, err := e.Head(ctx(t), "fl")
	if err != nil || h != gap.Resume {
		t.Fatalf("Head after a flush = %v, %v; want %v", h, err, gap.Resume)
	}
	next := appendOK(t, e, ev("fl", "", "4"))
	if next[0] != (engine.Position{Epoch: h.Epoch, Offset: 1}) {
		t.Fatalf("append after a flush at %v, want {%s 1}", next[0], h.Epoch)
	}
	// A cursor at offset 0 of a lost epoch is a gap too (nothing to vouch for).
	redistest.DeletePrefix(t, opt.Client, opt.Prefix)
	if _, err := e.Read(ctx(t), "fl", engine.Position{Epoch: h.Epoch}, 10); !errors.Is(err, engine.ErrGap) {
		t.Fatalf("Read after {old epoch, 0}: %v, want a gap", err)
	}
}

// A stream whose entries are ahead of the meta's head (keys changed behind
// Herald's back) makes the whole call fail before anything is written.
func TestInconsistentTopicFailsTheWholeCall(t *testing.T) {
	e := mustOpen(t, testOptions(t, testURL(t)))
	appendOK(t, e, ev("bad", "", "1"))
	do(t, e, "XADD", e.key("bad")+"l", "7-0", "t", "1", "y", "x", "d", "x")
	_, err := e.Append(ctx(t), []engine.Event{ev("good", "", "1"), ev("bad", "", "2")})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("Append over an inconsistent topic: %v, want ErrUnavailable", err)
	}
	if h, err := e.Head(ctx(t), "good"); err != nil || h.Offset != 0 {
		t.Fatalf("Head(good) = %v, %v: the failed call wrote to another topic", h, err)
	}
}

// A call of one topic does not read the stream before writing: its first
// XADD finds the inconsistency, and the call still fails with nothing
// written, idempotency keys included.
func TestInconsistentTopicFailsACallOfOneTopic(t *testing.T) {
	e := mustOpen(t, testOptions(t, testURL(t)))
	appendOK(t, e, ev("bad", "", "1"))
	do(t, e, "XADD", e.key("bad")+"l", "7-0", "t", "1", "y", "x", "d", "x")
	_, err := e.Append(ctx(t), []engine.Event{ev("bad", "k1", "2"), ev("bad", "k2", "3")})
	if !errors.Is(err, engine.ErrUnavailable) || !strings.Contains(err.Error(), "ahead of its head 1") {
		t.Fatalf("Append over an inconsistent topic: %v, want ErrUnavailable naming the head", err)
	}
	if h, err := e.Head(ctx(t), "bad"); err != nil || h.Offset != 1 {
		t.Fatalf("Head(bad) = %v, %v: the failed call moved the head", h, err)
	}
	if n, err := do(t, e, "EXISTS", e.key("bad")+"r:k1").AsInt64(); err != nil || n != 0 {
		t.Fatalf("the failed call stored an idempotency key (%d, %v)", n, err)
	}
	// A call of retries alone writes no event, so it reads no stream: it
	// answers the offset the key got, inconsistency or not.
	first := appendOK(t, e, ev("bad2", "k", "1"))
	do(t, e, "XADD", e.key("bad2")+"l", "7-0", "t", "1", "y", "x", "d", "x")
	if again := appendOK(t, e, ev("bad2", "k", "1")); again[0] != first[0] {
		t.Fatalf("a retry of one topic answered %v, want its first offset %v", again[0], first[0])
	}
}

// Fan-out frames carry any bytes, and batches arrive in order.
func TestFrameCarriesBinaryData(t *testing.T) {
	e := mustOpen(t, testOptions(t, testURL(t)))
	var mu sync.Mutex
	var got []engine.Event
	cancel, err := e.Subscribe("bin", func(ev engine.Event) { mu.Lock(); got = append(got, ev); mu.Unlock() }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	data := make([]byte, 256)
	for i := range data {
		data[i] = byte(i)
	}
	pos := appendOK(t, e, engine.Event{Topic: "bin", Type: "", Data: data}, engine.Event{Topic: "bin", Type: "ty\x00pe", Data: nil})
	waitFor(t, "two events", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if string(got[0].Data) != string(data) || got[0].Pos != pos[0] || got[1].Type != "ty\x00pe" || len(got[1].Data) != 0 || got[1].Prev != pos[0].Offset {
		t.Fatalf("delivered %+v", got)
	}
	if _, err := decodeFrame("x", []byte{1, 2, 3}); err == nil {
		t.Fatal("a short frame decoded")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRefusesAnEvictingRedis(t *testing.T) {
	r := redistest.Start(t, "--maxmemory-policy", "volatile-lru")
	co, _ := rueidis.ParseURL(r.URL())
	e, err := Open(Options{Client: co})
	if err == nil {
		e.Close()
		t.Fatal("Open on a Redis with maxmemory-policy volatile-lru succeeded")
	}
	if !strings.Contains(err.Error(), "noeviction") {
		t.Fatalf("Open: %v, want an error that says to use noeviction", err)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []engine.Event
	losses atomic.Int64
}

func (r *recorder) fn(e engine.Event) { r.mu.Lock(); r.events = append(r.events, e); r.mu.Unlock() }
func (r *recorder) lost()             { r.losses.Add(1) }
func (r *recorder) len() int          { r.mu.Lock(); defer r.mu.Unlock(); return len(r.events) }

// A killed Pub/Sub connection is reconnected and resubscribed, and the
// subscribers are told they may have lost events.
func TestPubSubReconnectCallsLost(t *testing.T) {
	r := redistest.Start(t)
	opt := testOptions(t, r.URL())
	opt.PubSubConns = 1
	e := mustOpen(t, opt)
	rec := &recorder{}
	cancel, err := e.Subscribe("rc", rec.fn, rec.lost)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	appendOK(t, e, ev("rc", "", "1"))
	waitFor(t, "the first event", func() bool { return rec.len() == 1 })
	if err := do(t, e, "CLIENT", "KILL", "TYPE", "pubsub").Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "lost after the reconnect", func() bool { return rec.losses.Load() > 0 })
	appendOK(t, e, ev("rc", "", "2"))
	waitFor(t, "an event after the reconnect", func() bool { return rec.len() == 2 })
}

// A restart of a Redis without persistence loses every key: resuming
// readers get a gap into a new epoch, subscribers are told to re-read, and
// fan-out goes on.
func TestRestartWithoutPersistence(t *testing.T) {
	r := redistest.Start(t)
	opt := testOptions(t, r.URL())
	e := mustOpen(t, opt)
	rec := &recorder{}
	cancel, err := e.Subscribe("rs", rec.fn, rec.lost)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	pos := appendOK(t, e, ev("rs", "", "1"), ev("rs", "", "2"))
	waitFor(t, "two events", func() bool { return rec.len() == 2 })
	r.Stop()
	r.Run()
	waitFor(t, "lost after the restart", func() bool { return rec.losses.Load() > 0 })
	var p []engine.Position
	waitFor(t, "an append after the restart", func() bool {
		var err error
		p, err = e.Append(ctx(t), []engine.Event{ev("rs", "", "3")})
		return err == nil
	})
	if p[0].Epoch == pos[0].Epoch || p[0].Offset != 1 {
		t.Fatalf("append after the restart at %v, want offset 1 of a new epoch (was %v)", p[0], pos[1])
	}
	var rerr error
	waitFor(t, "a Read answered after the restart", func() bool {
		_, rerr = e.Read(ctx(t), "rs", pos[1], 10)
		return !errors.Is(rerr, engine.ErrUnavailable) // a connection broken by the restart
	})
	if !errors.Is(rerr, engine.ErrGap) {
		t.Fatalf("Read after the old position: %v, want a gap", rerr)
	}
	waitFor(t, "the event of the new epoch", func() bool { return rec.len() == 3 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.events[2].Pos != p[0] {
		t.Fatalf("delivered %v, want %v", rec.events[2].Pos, p[0])
	}
}

// An append trims expired entries from the front of its topic's stream.
func TestAppendTrimsExpiredEntries(t *testing.T) {
	opt := testOptions(t, testURL(t))
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	opt.MaxAge, opt.Now = time.Hour, func() time.Time { return time.Unix(0, now.Load()) }
	e := mustOpen(t, opt)
	for i := range 5 {
		appendOK(t, e, ev("at", "", strconv.Itoa(i)))
	}
	now.Add(int64(2 * time.Hour))
	p := appendOK(t, e, ev("at", "", "late"))
	if n, err := do(t, e, "XLEN", e.key("at")+"l").AsInt64(); err != nil || n != 1 {
		t.Fatalf("stream holds %d entries (%v) after an append past MaxAge, want 1", n, err)
	}
	got, err := readAll(t, e, "at", engine.Position{})
	if err != nil || len(got) != 1 || got[0].Pos != p[0] || got[0].Prev != 5 {
		t.Fatalf("Read = %v, %v; want the late event at offset 6", got, err)
	}
}

// Where CONFIG is disabled (managed Redis services), Open cannot check the
// eviction policy: it warns and opens.
func TestOpensWhenConfigIsDisabled(t *testing.T) {
	r := redistest.Start(t, "--rename-command", "CONFIG", "")
	opt := testOptions(t, r.URL())
	var logged strings.Builder
	var mu sync.Mutex
	opt.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), nil))
	e := mustOpen(t, opt)
	appendOK(t, e, ev("cfg", "", "1"))
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logged.String(), "noeviction") {
		t.Fatalf("no warning about the eviction policy; logged %q", logged.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// The last cancel of a topic unsubscribes its channel; a new Subscribe
// subscribes it again and receives.
func TestLastCancelUnsubscribes(t *testing.T) {
	e := mustOpen(t, testOptions(t, testURL(t)))
	ch := e.channel("un")
	numsub := func() int64 {
		v, err := do(t, e, "PUBSUB", "NUMSUB", ch).ToArray()
		if err != nil || len(v) != 2 {
			t.Fatalf("PUBSUB NUMSUB: %v %v", v, err)
		}
		n, _ := v[1].AsInt64()
		return n
	}
	rec := &recorder{}
	c1, err := e.Subscribe("un", rec.fn, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := e.Subscribe("un", rec.fn, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := numsub(); n != 1 {
		t.Fatalf("%d subscriptions of the channel for two subscribers, want one", n)
	}
	c1()
	if n := numsub(); n != 1 {
		t.Fatalf("%d subscriptions after one cancel of two, want 1", n)
	}
	c2()
	c2() // idempotent
	if n := numsub(); n != 0 {
		t.Fatalf("%d subscriptions after the last cancel, want 0", n)
	}
	rec2 := &recorder{}
	c3, err := e.Subscribe("un", rec2.fn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c3()
	appendOK(t, e, ev("un", "", "1"))
	waitFor(t, "delivery after subscribing again", func() bool { return rec2.len() == 1 })
	if rec.len() != 0 {
		t.Fatalf("a cancelled subscriber got %d events", rec.len())
	}
}

// The quiet topic: one event is published while the Pub/Sub connection is
// down and nothing after it. No later event reveals the loss; the lost call
// after the reconnect makes the subscriber re-read, as the hub does, and
// the event arrives.
func TestQuietTopicEventLostInFanOutArrivesByLost(t *testing.T) {
	r := redistest.Start(t)
	opt := testOptions(t, r.URL())
	opt.PubSubConns = 1
	opt.Client.PipelineMultiplex = -1 // one command connection, open from the start
	e := mustOpen(t, opt)
	// An administrator's connection, logged in before logins are refused.
	adm, release := e.client.Dedicate()
	aclDefault := func(state string) error {
		return adm.Do(context.Background(), adm.B().Arbitrary("ACL", "SETUSER").Args("default", state).Build()).Error()
	}
	if err := aclDefault("on"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := aclDefault("on"); err != nil {
			t.Errorf("ACL SETUSER default on: %v", err)
		}
		release()
	})
	r2 := subscribeResumer(t, e, "quiet")
	// Keep the engine's Pub/Sub connection from coming back (new
	// connections cannot log in; the open command connection stays), so
	// that the append below is published to nobody.
	if err := aclDefault("off"); err != nil {
		t.Fatal(err)
	}
	if err := do(t, e, "CLIENT", "KILL", "TYPE", "pubsub").Error(); err != nil {
		t.Fatal(err)
	}
	appendOK(t, e, ev("quiet", "", "only"))
	if err := aclDefault("on"); err != nil {
		t.Fatal(err)
	}
	r2.awaitLostAndReread(t, "the Pub/Sub connection was killed")
	if res, viaFn := r2.has(); res != "only" || viaFn != 0 {
		t.Fatalf("subscriber has %q (%d by fan-out), want the event published while fan-out was down, by the re-read", res, viaFn)
	}
}

// CanWrite (readiness) turns unavailable within seconds of Redis going
// away, and available again once it is back and Pub/Sub is resubscribed.
func TestCanWriteFollowsRedis(t *testing.T) {
	r := redistest.Start(t)
	e := mustOpen(t, testOptions(t, r.URL()))
	var _ engine.WriteChecker = e
	waitFor(t, "ready after Open", func() bool { return e.CanWrite() == nil })
	r.Stop()
	stopped := time.Now()
	var err error
	waitFor(t, "not ready once Redis is stopped", func() bool { err = e.CanWrite(); return err != nil })
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("not ready only after %v", d)
	}
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Errorf("CanWrite = %v, want ErrUnavailable", err)
	}
	r.Run()
	waitFor(t, "ready once Redis is back", func() bool { return e.CanWrite() == nil })
	e.Close()
	if err := e.CanWrite(); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("CanWrite after Close = %v, want ErrClosed", err)
	}
}
