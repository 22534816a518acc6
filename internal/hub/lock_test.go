package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// The hub makes no engine call under its lock: a Subscribe or a cancel that
// takes a round trip holds up only the streams of its topic.

// delayEngine is an engine whose Subscribe takes delay, like a round trip to a
// networked back end.
type delayEngine struct {
	engine.Engine
	delay time.Duration
}

func (e delayEngine) Subscribe(topic string, fn func(engine.Event), lost func()) (func(), error) {
	time.Sleep(e.delay)
	return e.Engine.Subscribe(topic, fn, lost)
}

// gateEngine counts engine subscriptions and can hold a Subscribe or a cancel
// of a topic until the test lets it through, or fail a Subscribe.
type gateEngine struct {
	engine.Engine

	mu          sync.Mutex
	calls       map[string]int           // Subscribe calls per topic
	active      map[string]int           // subscriptions made and not being cancelled, per topic
	inflight    int                      // Subscribe calls running
	maxInflight int                      // most Subscribe calls running at once
	hold        map[string]chan struct{} // a Subscribe of the topic waits until it is closed
	holdCancel  map[string]chan struct{} // a cancel of the topic waits until it is closed
	fail        map[string]error         // Subscribe of the topic fails with this
	entered     chan string              // told of each held Subscribe or cancel, when set
	fns         map[string]func(engine.Event)
	losts       map[string]func()
	barrier     int // Subscribe waits for this many calls running at once (or 2 s)
}

func newGateEngine(eng engine.Engine) *gateEngine {
	return &gateEngine{
		Engine: eng,
		calls:  map[string]int{}, active: map[string]int{},
		hold: map[string]chan struct{}{}, holdCancel: map[string]chan struct{}{},
		fail: map[string]error{},
		fns:  map[string]func(engine.Event){}, losts: map[string]func(){},
	}
}

func (e *gateEngine) Subscribe(topic string, fn func(engine.Event), lost func()) (func(), error) {
	e.mu.Lock()
	e.calls[topic]++
	e.inflight++
	e.maxInflight = max(e.maxInflight, e.inflight)
	hold, fail, entered := e.hold[topic], e.fail[topic], e.entered
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.inflight--
		e.mu.Unlock()
	}()
	if hold != nil {
		if entered != nil {
			entered <- topic
		}
		<-hold
	}
	if e.barrier > 0 {
		deadline := time.Now().Add(2 * time.Second)
		for {
			e.mu.Lock()
			all := e.maxInflight >= e.barrier
			e.mu.Unlock()
			if all || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if fail != nil {
		return nil, fail
	}
	cancel, err := e.Engine.Subscribe(topic, fn, lost)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.active[topic]++
	e.fns[topic], e.losts[topic] = fn, lost
	e.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			e.active[topic]--
			hold, entered := e.holdCancel[topic], e.entered
			e.mu.Unlock()
			if hold != nil {
				if entered != nil {
					entered <- "cancel " + topic
				}
				<-hold
			}
			cancel()
		})
	}, nil
}

// holdSubscribe makes Subscribe of topic wait until the returned function is
// called; the test's end calls it too, so a failed test does not leave the
// callers stuck.
func (e *gateEngine) holdSubscribe(t *testing.T, topic string) (release func()) {
	c := make(chan struct{})
	e.mu.Lock()
	e.hold[topic] = c
	e.mu.Unlock()
	release = sync.OnceFunc(func() { close(c) })
	t.Cleanup(release)
	return release
}

func (e *gateEngine) count(m map[string]int, topic string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return m[topic]
}

// subscribeAsync subscribes on a goroutine the test owns through the returned
// channel, which yields the result once.
func subscribeAsync(h *Hub, topics ...string) <-chan subscribed {
	c := make(chan subscribed, 1)
	go func() {
		s, err := h.Subscribe(context.Background(), topics, "")
		c <- subscribed{s, err}
	}()
	return c
}

type subscribed struct {
	s   *Subscriber
	err error
}

func recv(t *testing.T, c <-chan subscribed, what string) subscribed {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Subscribe did not return within 5s", what)
		return subscribed{}
	}
}

func TestSubscribeDoesNotWaitForAnotherTopicsEngineSubscribe(t *testing.T) {
	eng := newGateEngine(openEngine(t))
	release := eng.holdSubscribe(t, "slow")
	eng.entered = make(chan string, 1)
	h := New(eng, Options{})
	slow := subscribeAsync(h, "slow")
	<-eng.entered // the engine is subscribing to "slow" now

	fast := recv(t, subscribeAsync(h, "fast"), "a stream of another topic")
	if fast.err != nil {
		t.Fatal(fast.err)
	}
	select {
	case <-slow:
		t.Fatal("a stream returned before its topic's engine subscription was made")
	default:
	}
	release()
	r := recv(t, slow, "the held stream")
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.s.Close()
	fast.s.Close()
}

// Streams of one topic arriving together make one engine subscription, and none
// of them is live (nor returns) before it is made.
func TestStreamsOfATopicShareOneEngineSubscribe(t *testing.T) {
	eng := newGateEngine(openEngine(t))
	release := eng.holdSubscribe(t, "t")
	eng.entered = make(chan string, 1)
	h := New(eng, Options{})
	const n = 50
	cs := make([]<-chan subscribed, n)
	for i := range cs {
		cs[i] = subscribeAsync(h, "t")
	}
	<-eng.entered
	waitUntil(t, "every stream waiting for the subscription", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.topics["t"] != nil && h.topics["t"].refs == n
	})
	ts := h.topics["t"]
	ts.mu.RLock()
	live := len(ts.subs)
	ts.mu.RUnlock()
	if live != 0 {
		t.Fatalf("%d streams live before the engine subscription was made", live)
	}
	for _, c := range cs {
		select {
		case <-c:
			t.Fatal("a stream returned before its topic's engine subscription was made")
		default:
		}
	}
	release()
	ws := make([]*bufWriter, n)
	for i, c := range cs {
		r := recv(t, c, "a waiting stream")
		if r.err != nil {
			t.Fatal(r.err)
		}
		ws[i] = &bufWriter{}
		if err := r.s.Start(ws[i]); err != nil {
			t.Fatal(err)
		}
		r.s.Live()
		defer r.s.Close()
	}
	if c := eng.count(eng.calls, "t"); c != 1 {
		t.Fatalf("%d engine subscriptions for one topic, want 1", c)
	}
	appendN(t, eng, "t", 1, "hello")
	for i, w := range ws {
		waitUntil(t, fmt.Sprintf("stream %d gets the event", i), func() bool { return strings.Contains(w.String(), "data: hello") })
	}
}

// A failed engine Subscribe fails the streams that waited for it and no other;
// the next stream of the topic tries again.
func TestFailedEngineSubscribeFailsOnlyItsStreamsAndIsRetried(t *testing.T) {
	eng := newGateEngine(openEngine(t))
	boom := errors.New("back end unreachable")
	release := eng.holdSubscribe(t, "t")
	eng.fail["t"] = boom
	eng.entered = make(chan string, 1)
	h := New(eng, Options{})
	other, err := h.Subscribe(context.Background(), []string{"u"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	var cs []<-chan subscribed
	cs = append(cs, subscribeAsync(h, "t"))
	<-eng.entered
	for range 5 {
		cs = append(cs, subscribeAsync(h, "t"), subscribeAsync(h, "u", "t"))
	}
	waitUntil(t, "every stream waiting for the subscription", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.topics["t"].refs == len(cs)
	})
	eng.mu.Lock()
	delete(eng.fail, "t")
	eng.mu.Unlock()
	release()
	for _, c := range cs {
		if r := recv(t, c, "a waiting stream"); !errors.Is(r.err, boom) {
			t.Fatalf("stream waiting for a failed subscription: err %v, want %v", r.err, boom)
		}
	}
	h.mu.Lock()
	refs, stale := h.topics["u"].refs, h.topics["t"]
	h.mu.Unlock()
	if refs != 1 || stale != nil {
		t.Fatalf("after the failure: %d references to u (want 1), t in the map: %v", refs, stale != nil)
	}
	if st := h.Stats(); st.Connections != 1 || st.Subscriptions != 1 {
		t.Fatalf("stats after the failure: %+v", st)
	}
	again, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		t.Fatalf("a later stream does not retry: %v", err)
	}
	again.Close()
	if c := eng.count(eng.calls, "t"); c != 2 {
		t.Fatalf("%d engine subscriptions for t, want 2 (the failed one and the retry)", c)
	}
}

// A stream of N topics new to the node subscribes to them all at once: it
// waits for one round trip, not N.
func TestStreamSubscribesItsTopicsAtOnce(t *testing.T) {
	const n = 8
	eng := newGateEngine(openEngine(t))
	eng.barrier = n
	h := New(eng, Options{})
	topics := make([]string, n)
	for i := range topics {
		topics[i] = fmt.Sprintf("rooms/%d", i)
	}
	s, err := h.Subscribe(context.Background(), topics, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	eng.mu.Lock()
	most := eng.maxInflight
	eng.mu.Unlock()
	if most != n {
		t.Fatalf("at most %d engine subscriptions ran at once for a stream of %d new topics, want %d", most, n, n)
	}
}

// A stream arriving for a topic while the last one to leave it cancels the
// engine subscription ends up with an active subscription of its own, and gets
// the topic's events.
func TestStreamArrivingDuringCancelGetsASubscription(t *testing.T) {
	eng := newGateEngine(openEngine(t))
	h := New(eng, Options{})
	first, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		t.Fatal(err)
	}
	releaseCancel := sync.OnceFunc(func() { close(eng.holdCancel["t"]) })
	eng.mu.Lock()
	eng.holdCancel["t"] = make(chan struct{})
	eng.entered = make(chan string, 1)
	eng.mu.Unlock()
	t.Cleanup(releaseCancel)
	closed := make(chan struct{})
	go func() { first.Close(); close(closed) }()
	<-eng.entered // the cancel is running

	r := recv(t, subscribeAsync(h, "t"), "a stream arriving during the cancel")
	if r.err != nil {
		t.Fatal(r.err)
	}
	w := &bufWriter{}
	if err := r.s.Start(w); err != nil {
		t.Fatal(err)
	}
	r.s.Live()
	releaseCancel()
	<-closed
	if a := eng.count(eng.active, "t"); a != 1 {
		t.Fatalf("%d active engine subscriptions for t, want 1", a)
	}
	appendN(t, eng, "t", 1, "after")
	waitUntil(t, "the new stream gets the event", func() bool { return strings.Contains(w.String(), "data: after") })
	r.s.Close()
	if a := eng.count(eng.active, "t"); a != 0 {
		t.Fatalf("%d active engine subscriptions for t after every stream left, want 0", a)
	}
}

// Streams come and go on a few topics from many goroutines, with engine calls
// of random length: a registered stream always has an active engine
// subscription for each of its topics, and when all have left none is left.
func TestSubscribeUnsubscribeInterleavings(t *testing.T) {
	eng := &jitterEngine{gateEngine: newGateEngine(openEngine(t))}
	h := New(eng, Options{})
	topics := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for g := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 100 {
				var mine []string
				for _, i := range rng.Perm(len(topics))[:1+rng.IntN(len(topics))] {
					mine = append(mine, topics[i])
				}
				s, err := h.Subscribe(context.Background(), mine, "")
				if err != nil {
					report(err)
					return
				}
				for _, topic := range mine {
					if eng.count(eng.active, topic) < 1 {
						report(fmt.Errorf("stream of %v registered while %q has no active engine subscription", mine, topic))
					}
				}
				if rng.IntN(2) == 0 {
					if err := s.Start(&bufWriter{}); err == nil {
						s.Live()
					}
					s.Stop()
					<-s.Done()
				} else {
					s.Close()
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	h.mu.Lock()
	left := len(h.topics)
	h.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d topics of interest left after every stream ended", left)
	}
	for _, topic := range topics {
		if a := eng.count(eng.active, topic); a != 0 {
			t.Fatalf("%d engine subscriptions of %q left after every stream ended", a, topic)
		}
	}
	if st := h.Stats(); st.Connections != 0 || st.Subscriptions != 0 {
		t.Fatalf("stats after every stream ended: %+v", st)
	}
	// And each topic still works.
	for _, topic := range topics {
		w := &bufWriter{}
		s := startStream(t, h, topic, w)
		s.Live()
		appendN(t, eng, topic, 1, "still "+topic)
		waitUntil(t, "a stream of "+topic+" gets its event", func() bool { return strings.Contains(w.String(), "data: still "+topic) })
		s.Close()
	}
}

// jitterEngine makes Subscribe and cancel take a random few microseconds, so
// that they overlap the other goroutines' in every order.
type jitterEngine struct{ *gateEngine }

func (e *jitterEngine) Subscribe(topic string, fn func(engine.Event), lost func()) (func(), error) {
	time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
	cancel, err := e.gateEngine.Subscribe(topic, fn, lost)
	if err != nil {
		return nil, err
	}
	return func() {
		time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
		cancel()
	}, nil
}

// errorLog records the messages of records at level Error.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }
func (l *errorLog) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if m == msg {
			return true
		}
	}
	return false
}

// An engine that calls a subscription's callbacks after cancel, or goes back
// to an epoch it had left, breaks its contract: the hub drops the event, logs
// an error and counts it.
func TestContractViolationsAreLoggedAndCounted(t *testing.T) {
	eng := newGateEngine(openEngine(t))
	log := &errorLog{}
	h := New(eng, Options{Logger: slog.New(log)})
	// Not started: the events it is given stay in its queue, where the test
	// sees which ones the hub let through.
	s, err := h.Subscribe(context.Background(), []string{"t"}, "")
	if err != nil {
		t.Fatal(err)
	}
	eng.mu.Lock()
	fn, lost := eng.fns["t"], eng.losts["t"]
	eng.mu.Unlock()

	fn(engine.Event{Topic: "t", Type: "x", Data: []byte("old"), Pos: engine.Position{Epoch: "old", Offset: 1}})
	fn(engine.Event{Topic: "t", Type: "x", Data: []byte("new"), Pos: engine.Position{Epoch: "new", Offset: 1}})
	if v := h.Stats().ContractViolations; v != 0 {
		t.Fatalf("a new epoch counted as %d contract violations, want 0", v)
	}
	fn(engine.Event{Topic: "t", Type: "x", Data: []byte("back"), Pos: engine.Position{Epoch: "old", Offset: 2}})
	if v := h.Stats().ContractViolations; v != 1 || !log.has(msgEpochBack) {
		t.Fatalf("epoch going back: %d violations (want 1), logged: %v", v, log.has(msgEpochBack))
	}
	s.mu.Lock()
	queued := len(s.queue)
	s.mu.Unlock()
	if queued != 2 {
		t.Fatalf("%d events queued, want 2: the one of an epoch left behind is dropped", queued)
	}

	s.Close()
	fn(engine.Event{Topic: "t", Type: "x", Data: []byte("late"), Pos: engine.Position{Epoch: "new", Offset: 2}})
	lost()
	if v := h.Stats().ContractViolations; v != 3 || !log.has(msgAfterCancel) {
		t.Fatalf("callbacks after cancel: %d violations (want 3), logged: %v", v, log.has(msgAfterCancel))
	}
}

// A live event that the topic's history, read after the stream's cursor, does
// not reach (the engine delivered what its Read does not return) ends the
// stream, and is logged and counted.
func TestHistoryShortOfALiveEventIsAViolation(t *testing.T) {
	eng := newGateEngine(openEngine(t))
	log := &errorLog{}
	h := New(eng, Options{Logger: slog.New(log)})
	appendN(t, eng, "t", 3, "real")
	s := startStream(t, h, "t", &bufWriter{})
	s.Live()
	head, err := eng.Head(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	eng.mu.Lock()
	fn := eng.fns["t"]
	eng.mu.Unlock()
	fn(engine.Event{Topic: "t", Type: "x", Data: []byte("phantom"), Pos: engine.Position{Epoch: head.Epoch, Offset: head.Offset + 10}, Prev: head.Offset + 9})
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end")
	}
	if s.Err() == nil {
		t.Fatal("the stream ended without an error")
	}
	if v := h.Stats().ContractViolations; v != 1 || !log.has(msgHistoryBehind) {
		t.Fatalf("%d violations (want 1), logged: %v", v, log.has(msgHistoryBehind))
	}
}

// Storm: per-user streams (one topic each) connecting at once against an
// engine whose Subscribe takes 1 ms, a round trip to a networked back end.

const stormDelay = time.Millisecond

// subscribeStorm opens n streams of topics users/0..n-1 at once and returns how
// long until all were registered; it closes them before returning.
func subscribeStorm(tb testing.TB, h *Hub, n int) time.Duration {
	tb.Helper()
	subs := make([]*Subscriber, n)
	errs := make([]error, n)
	var ready, wg sync.WaitGroup
	ready.Add(1)
	for i := range n {
		wg.Go(func() {
			ready.Wait()
			subs[i], errs[i] = h.Subscribe(context.Background(), []string{fmt.Sprintf("users/%d", i)}, "")
		})
	}
	start := time.Now()
	ready.Done()
	wg.Wait()
	took := time.Since(start)
	for i, s := range subs {
		if errs[i] != nil {
			tb.Fatal(errs[i])
		}
		s.Close()
	}
	return took
}

func TestSubscribeStorm(t *testing.T) {
	const n = 1000
	h := New(delayEngine{openEngine(t), stormDelay}, Options{})
	took := subscribeStorm(t, h, n)
	t.Logf("%d streams of one topic each connected in %v with a %v engine Subscribe", n, took, stormDelay)
	// One after another they take at least n × the delay.
	if serial := n * stormDelay; took >= serial {
		t.Fatalf("%d streams took %v to connect: no faster than one engine Subscribe after another (%v)", n, took, serial)
	}
}

func BenchmarkSubscribeStorm(b *testing.B) {
	const n = 10_000
	h := New(delayEngine{openEngine(b), stormDelay}, Options{})
	var total time.Duration
	for b.Loop() {
		total += subscribeStorm(b, h, n)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/storm")
}

// Shutdown waits for a stream whose engine subscription is still being made,
// so no engine call outlives it (the server closes the engine next); the
// stream is then refused.
func TestShutdownWaitsForAStreamStillSubscribing(t *testing.T) {
	eng := newGateEngine(openEngine(t))
	release := eng.holdSubscribe(t, "t")
	eng.entered = make(chan string, 1)
	h := New(eng, Options{})
	c := subscribeAsync(h, "t")
	<-eng.entered // the engine is subscribing now
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a subscription in flight: %v, want it to wait", err)
	}
	release()
	if r := recv(t, c, "the stream subscribing at shutdown"); !errors.Is(r.err, ErrClosing) {
		t.Fatalf("the stream subscribing at shutdown: %v, want ErrClosing", r.err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := eng.count(eng.active, "t"); n != 0 {
		t.Fatalf("%d engine subscriptions left after shutdown", n)
	}
}
