package nats

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/natstest"
)

// recorder is a subscriber that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []engine.Event
	losses atomic.Int64
}

func (r *recorder) fn(ev engine.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) lost() { r.losses.Add(1) }

func (r *recorder) has(pos engine.Position) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Pos == pos {
			return true
		}
	}
	return false
}

func subscribeRec(t *testing.T, e engine.Engine, topic string) *recorder {
	t.Helper()
	r := &recorder{}
	cancel, err := e.Subscribe(topic, r.fn, r.lost)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	t.Cleanup(cancel)
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// appendOne appends one event, retrying while the server is coming back.
func appendOne(t *testing.T, e engine.Engine, topic string, i int) engine.Position {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pos, err := e.Append(ctx, []engine.Event{{Topic: topic, Type: "test", Data: fmt.Appendf(nil, `{"n":%d}`, i)}})
		cancel()
		if err == nil {
			return pos[0]
		}
		if !errors.Is(err, engine.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Append: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readAllOf(t *testing.T, e engine.Engine, topic string) []engine.Event {
	t.Helper()
	var out []engine.Event
	after := engine.Position{}
	for {
		page, err := e.Read(context.Background(), topic, after, 100)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Pos
	}
}

// A server killed and restarted on the same store keeps the stream: the
// epoch stays, nothing acknowledged is lost, the subscribers are told to
// re-read (fan-out during the outage is gone) and then receive again.
func TestServerRestartWithSameStore(t *testing.T) {
	srv := natstest.Start(t)
	e := mustOpen(t, Options{URL: srv.URL(), SweepInterval: time.Hour})
	r := subscribeRec(t, e, "rs/a")
	var pos []engine.Position
	for i := range 3 {
		pos = append(pos, appendOne(t, e, "rs/a", i))
	}
	waitFor(t, "the first events delivered", func() bool { return r.has(pos[2]) })

	srv.Stop()
	srv.Run()
	waitFor(t, "lost after the reconnect", func() bool { return r.losses.Load() > 0 })
	for i := 3; i < 5; i++ {
		pos = append(pos, appendOne(t, e, "rs/a", i))
	}
	for i, p := range pos {
		if p.Epoch != pos[0].Epoch || (i > 0 && p.Offset <= pos[i-1].Offset) {
			t.Fatalf("positions across the restart: %v, want one epoch and increasing offsets", pos)
		}
	}
	waitFor(t, "events after the restart delivered", func() bool { return r.has(pos[4]) })
	got := readAllOf(t, e, "rs/a")
	if len(got) != 5 {
		t.Fatalf("Read after the restart: %d events, want 5", len(got))
	}
	for i, ev := range got {
		if ev.Pos != pos[i] || (i > 0 && ev.Prev != pos[i-1].Offset) {
			t.Fatalf("event %d read at %v prev %d, appended at %v", i, ev.Pos, ev.Prev, pos[i])
		}
	}
	if m := metric(e, "reconnects"); m == 0 {
		t.Errorf("reconnects = 0 after a restart")
	}
}

// A server restarted with an empty store has lost the stream: the engine
// creates it again under a new epoch, tells the subscribers, and a cursor
// of the old epoch reads a gap.
func TestServerRestartWithEmptyStore(t *testing.T) {
	srv := natstest.Start(t)
	e := mustOpen(t, Options{URL: srv.URL(), SweepInterval: time.Hour})
	r := subscribeRec(t, e, "rw/a")
	old := appendOne(t, e, "rw/a", 1)
	waitFor(t, "the first event delivered", func() bool { return r.has(old) })

	srv.Stop()
	srv.Wipe()
	srv.Run()
	waitFor(t, "a new epoch and lost", func() bool { return e.curEpoch() != old.Epoch && r.losses.Load() > 0 })
	_, err := e.Read(context.Background(), "rw/a", old, 10)
	var gap *engine.GapError
	if !errors.As(err, &gap) || gap.Resume != (engine.Position{Epoch: e.curEpoch()}) {
		t.Fatalf("Read after the old cursor: %v, want a gap resuming at the new epoch's start", err)
	}
	p := appendOne(t, e, "rw/a", 2)
	if p.Epoch == old.Epoch {
		t.Fatalf("append after the wipe at %v, in the old epoch", p)
	}
	waitFor(t, "the new epoch's event delivered", func() bool { return r.has(p) })
}

// A node that has not noticed yet that the server lost its store (another
// node created the stream again) appends to a topic it has no last
// sequence for: the compare-and-set expects no message, which passes in the
// new stream as in the old. The acknowledgement's sequence, below what the
// engine was acknowledged at before, gives the new stream away: the
// position is in the new epoch, not the lost one.
func TestAppendAfterTheStreamWasCreatedAgainElsewhere(t *testing.T) {
	srv := natstest.Start(t)
	e1 := mustOpen(t, Options{URL: srv.URL(), SweepInterval: time.Hour})
	e2 := mustOpen(t, Options{URL: srv.URL(), SweepInterval: time.Hour})
	var old engine.Position
	for i := range 3 {
		old = appendOne(t, e1, "ca/a", i)
		appendOne(t, e2, "ca/z", i)
	}
	high := e1.highSeq.Load()

	srv.Stop()
	srv.Wipe()
	srv.Run()
	p2 := appendOne(t, e2, "ca/b", 1) // creates the stream again, or finds it created
	if p2.Epoch == old.Epoch {
		t.Fatalf("append after the wipe at %v, in the old epoch", p2)
	}
	waitFor(t, "e1 connected again and aware of the new epoch", func() bool {
		return e1.nc.IsConnected() && e1.curEpoch() == p2.Epoch
	})
	// As e1 was before it noticed (its reconnect's check can come after
	// an append).
	e1.epoch.Store(&old.Epoch)
	e1.highSeq.Store(high)
	p := appendOne(t, e1, "ca/c", 1)
	if p.Epoch != p2.Epoch || p.Offset <= p2.Offset {
		t.Fatalf("append on the node that had not noticed: %v, want after %v in the new epoch", p, p2)
	}
}

// After its connection dropped, an engine checks the stream before it
// answers a Head, a Read or an Append: the server may have come back with
// an empty store and another node created the stream again, which the
// engine's reconnect handling may not have noticed yet; a Head of the new
// stream must not be given in the old epoch (a stream's cursor there would
// look past the end of the log).
func TestCallsAfterAReconnectAreInTheNewEpoch(t *testing.T) {
	srv := natstest.Start(t)
	e1 := mustOpen(t, Options{URL: srv.URL(), SweepInterval: time.Hour})
	e2 := mustOpen(t, Options{URL: srv.URL(), SweepInterval: time.Hour})
	old := appendOne(t, e1, "rc/a", 1)
	if h, err := e1.Head(context.Background(), "rc/a"); err != nil || h != old || e1.unverified.Load() {
		t.Fatalf("Head = %v, %v (unverified %v); want %v", h, err, e1.unverified.Load(), old)
	}

	srv.Stop()
	srv.Wipe()
	srv.Run()
	p2 := appendOne(t, e2, "rc/b", 1)
	waitFor(t, "e1 connected again", func() bool { return e1.reconnects.Load() > 0 && e1.nc.IsConnected() })
	time.Sleep(200 * time.Millisecond) // its reconnect's check of the stream, if any, done
	if !e1.unverified.Load() {
		t.Fatal("the dropped connection did not mark the epoch unverified")
	}
	// As e1 is before its reconnect's check of the stream, if that comes
	// late.
	e1.epoch.Store(&old.Epoch)
	h, err := e1.Head(context.Background(), "rc/b")
	if err != nil || h.Epoch != p2.Epoch || h.Offset != p2.Offset {
		t.Fatalf("Head after the reconnect = %v, %v; want %v", h, err, p2)
	}
	if e1.unverified.Load() {
		t.Fatal("still unverified after a check of the stream")
	}
}

// A stream deleted behind the engine's back is created again by the next
// Append, and one deleted and created again by someone else is noticed by
// the next Append's compare-and-set: a new epoch either way.
func TestStreamDeletedAndCreatedAgain(t *testing.T) {
	raw := natstest.URL(t)
	opt := testOptions(t, raw)
	opt.SweepInterval = time.Hour
	e := mustOpen(t, opt)
	r := subscribeRec(t, e, "sd/a")
	first := appendOne(t, e, "sd/a", 1)
	appendOne(t, e, "sd/a", 2)

	nc, err := nats.Connect(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, opt.Stream); err != nil {
		t.Fatal(err)
	}
	second := appendOne(t, e, "sd/a", 3)
	if second.Epoch == first.Epoch {
		t.Fatalf("append after the stream was deleted at %v, in the old epoch", second)
	}
	waitFor(t, "lost after the new epoch", func() bool { return r.losses.Load() > 0 })
	if _, err := e.Read(ctx, "sd/a", first, 10); !errors.Is(err, engine.ErrGap) {
		t.Fatalf("Read after an old-epoch cursor: %v, want a gap", err)
	}
	waitFor(t, "the new epoch's event delivered", func() bool { return r.has(second) })

	// Now someone else deletes it and creates it again, the same way.
	if err := js.DeleteStream(ctx, opt.Stream); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // another creation time
	if _, err := js.CreateStream(ctx, e.streamConfig()); err != nil {
		t.Fatal(err)
	}
	third := appendOne(t, e, "sd/a", 4)
	if third.Epoch == second.Epoch {
		t.Fatalf("append after the stream was created again at %v, in the old epoch", third)
	}
	got := readAllOf(t, e, "sd/a")
	if len(got) != 1 || got[0].Pos != third || got[0].Prev != 0 {
		t.Fatalf("Read after the stream was created again: %v, want only %v", got, third)
	}
}

// A dispatcher that falls behind makes the client drop live messages; the
// slow-consumer error tells the topic's subscribers to re-read.
func TestSlowConsumerCallsLost(t *testing.T) {
	raw := natstest.URL(t)
	defer func(n int) { fanoutBuffer = n }(fanoutBuffer)
	fanoutBuffer = 1
	opt := testOptions(t, raw)
	e := mustOpen(t, opt)
	peer := mustOpen(t, opt)
	var losses atomic.Int64
	block := make(chan struct{})
	var once sync.Once
	cancel, err := e.Subscribe("sc/a", func(engine.Event) { <-block }, func() { losses.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	defer once.Do(func() { close(block) })
	for i := range 20 {
		appendOne(t, peer, "sc/a", i)
	}
	waitFor(t, "a slow consumer", func() bool { return metric(e, "slow_consumers") > 0 })
	once.Do(func() { close(block) })
	waitFor(t, "lost", func() bool { return losses.Load() > 0 })
}

// The periodic sweep finds a quiet topic whose last event was not
// delivered, and tells its subscribers.
func TestSweepFindsAQuietTopicBehind(t *testing.T) {
	raw := natstest.URL(t)
	opt := testOptions(t, raw)
	opt.SweepInterval = 100 * time.Millisecond
	e := mustOpen(t, opt)
	r := subscribeRec(t, e, "sw/a")
	// A lost republish is simulated by rolling back what the topic has
	// delivered once its event has arrived.
	p := appendOne(t, e, "sw/a", 1)
	waitFor(t, "delivered", func() bool { return r.has(p) })
	e.subMu.Lock()
	tp := e.topics["sw/a"]
	e.subMu.Unlock()
	tp.mu.Lock()
	tp.delivered = 0
	tp.mu.Unlock()
	waitFor(t, "lost from the sweep", func() bool { return r.losses.Load() > 0 })
	if metric(e, "sweep_behind_topics") == 0 {
		t.Fatal("sweep_behind_topics = 0")
	}
}

func metric(e *Engine, name string) uint64 {
	for _, c := range e.Metrics() {
		if c.Name == name {
			return c.Value
		}
	}
	panic("no metric " + name)
}

// A connection that goes silent (a blackholed path) is given up after the
// client's unanswered pings and dialled again; the subscribers are told to
// re-read and then receive again.
func TestSilentConnectionIsDialledAgain(t *testing.T) {
	raw := natstest.URL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { pingInterval = d }(pingInterval)
	pingInterval = 200 * time.Millisecond
	proxy := natstest.NewBlackhole(t, u.Host)
	opt := testOptions(t, raw)
	opt.SweepInterval = time.Hour
	direct := mustOpen(t, opt)
	opt.URL = proxy.URL()
	e := mustOpen(t, opt)
	r := subscribeRec(t, e, "bh/a")
	first := appendOne(t, direct, "bh/a", 1)
	waitFor(t, "the first event delivered", func() bool { return r.has(first) })
	if n := proxy.Blackhole(); n == 0 {
		t.Fatal("no connection to blackhole")
	}
	lost := appendOne(t, direct, "bh/a", 2) // its fan-out is dropped
	waitFor(t, "lost after the silent connection was dialled again", func() bool { return r.losses.Load() > 0 })
	if r.has(lost) {
		t.Fatal("an event went through the blackholed connection")
	}
	next := appendOne(t, direct, "bh/a", 3)
	waitFor(t, "delivery on the new connection", func() bool { return r.has(next) })
	if metric(e, "reconnects") == 0 {
		t.Fatal("reconnects = 0")
	}
}

// A topic's head is checked once soon after its first Subscribe (for an
// event republished by another server of a cluster before the interest
// reached it), without waiting for the periodic sweep.
func TestHeadVerifiedAfterSubscribe(t *testing.T) {
	raw := natstest.URL(t)
	opt := testOptions(t, raw)
	opt.SweepInterval = time.Hour
	e := mustOpen(t, opt)
	r := subscribeRec(t, e, "vf/a")
	p := appendOne(t, e, "vf/a", 1)
	waitFor(t, "delivered", func() bool { return r.has(p) })
	e.subMu.Lock()
	tp := e.topics["vf/a"]
	e.subMu.Unlock()
	tp.mu.Lock()
	tp.delivered = 0 // as if the event had been missed
	tp.mu.Unlock()
	start := time.Now()
	waitFor(t, "lost from the check after Subscribe", func() bool { return r.losses.Load() > 0 })
	if d := time.Since(start); d > verifyDelay+2*time.Second {
		t.Fatalf("told after %v", d)
	}
}

// A publish whose acknowledgement is lost times out; an event with an ID is
// published again once the connection is replaced, and the server's
// duplicate check answers with the first position: one copy in the log.
func TestLostAckWithEventID(t *testing.T) {
	raw := natstest.URL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer func(d, r time.Duration) { pingInterval, requestTimeout = d, r }(pingInterval, requestTimeout)
	pingInterval, requestTimeout = 100*time.Millisecond, 700*time.Millisecond
	proxy := natstest.NewBlackhole(t, u.Host)
	opt := testOptions(t, raw)
	opt.SweepInterval = time.Hour
	opt.URL = proxy.URL()
	e := mustOpen(t, opt)
	first := appendOne(t, e, "la/a", 1)
	if n := proxy.Deafen(); n == 0 {
		t.Fatal("no connection to deafen")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pos, err := e.Append(ctx, []engine.Event{{Topic: "la/a", Type: "t", ID: "k1", Data: []byte("once")}})
	if err != nil {
		t.Fatalf("Append with a lost acknowledgement: %v", err)
	}
	got := readAllOf(t, e, "la/a")
	if len(got) != 2 || got[1].Pos != pos[0] || string(got[1].Data) != "once" || got[1].Prev != first.Offset {
		t.Fatalf("log after a lost acknowledgement: %+v, want the first event and one copy at %v", got, pos[0])
	}
}

// On a NATS cluster of three, with the stream on three replicas: when the
// stream's leader dies, the new leader's election advisory tells the
// subscribers of a node connected elsewhere to re-read (only the leader
// republishes), nothing acknowledged is lost, and appends and delivery go
// on.
func TestStreamLeaderChange(t *testing.T) {
	servers := natstest.StartCluster(t, 3)
	all := servers[0].URL() + "?server=" + servers[1].URL()[len("nats://"):] + "&server=" + servers[2].URL()[len("nats://"):]
	e0, err := engine.Open(all+"&replicas=3&sweep=1h", engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e0.Close()
	admin := e0.(*Engine)
	var pos []engine.Position
	for i := range 3 {
		pos = append(pos, appendOne(t, admin, "lc/a", i))
	}
	s, err := admin.js.Stream(context.Background(), admin.opt.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %+v, %v", info, err)
	}
	var leader, other *natstest.Server
	for _, srv := range servers {
		if srv.Name == info.Cluster.Leader {
			leader = srv
		} else if other == nil {
			other = srv
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is none of the servers", info.Cluster.Leader)
	}
	// A node on a server that stays up: its connection never breaks.
	e := mustOpen(t, Options{URL: other.URL(), Stream: admin.opt.Stream, SweepInterval: time.Hour})
	r := subscribeRec(t, e, "lc/a")
	pos = append(pos, appendOne(t, e, "lc/a", 3))
	waitFor(t, "delivered before the leader dies", func() bool { return r.has(pos[3]) })

	leader.Stop()
	waitFor(t, "a leader election seen", func() bool { return metric(e, "leader_changes") > 0 })
	waitFor(t, "lost after the leader change", func() bool { return r.losses.Load() > 0 })
	pos = append(pos, appendOne(t, e, "lc/a", 4))
	waitFor(t, "delivered after the leader change", func() bool { return r.has(pos[4]) })
	got := readAllOf(t, e, "lc/a")
	if len(got) != len(pos) {
		t.Fatalf("Read after the leader change: %d events, want %d", len(got), len(pos))
	}
	for i, ev := range got {
		if ev.Pos != pos[i] {
			t.Fatalf("event %d at %v, appended at %v", i, ev.Pos, pos[i])
		}
	}
	if n := metric(e, "reconnects"); n != 0 {
		t.Fatalf("reconnects = %d on a node whose server stayed up", n)
	}
}
