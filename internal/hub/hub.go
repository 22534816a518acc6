// Package hub holds a node's local subscribers: their bounded queues, the dispatch
// of engine events to them, heartbeats, and the replay -> live hand-over that lets a
// reconnecting client resume from its cursor without gap or duplicate.
package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/sse"
)

// Options tune a Hub. Zero values take the defaults in brackets.
type Options struct {
	QueueSize    int           // events a subscriber may have queued before it is cut off [1024]
	Heartbeat    time.Duration // interval of ": heartbeat" comments [15s]
	Retry        time.Duration // reconnection delay announced with retry: [2s]
	MaxLifetime  time.Duration // close streams after this long so clients rebalance; 0 = never
	WriteTimeout time.Duration // a write stuck this long ends the stream [10s]
	ReplayBatch  int           // events read from history per engine call [256]
	Logger       *slog.Logger
}

func (o *Options) setDefaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = 2 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.ReplayBatch <= 0 {
		o.ReplayBatch = 256
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

var (
	// ErrClosing is returned for new streams once shutdown has begun.
	ErrClosing = errors.New("hub: shutting down")
	// ErrSlow ends a stream whose client could not keep up with its queue.
	ErrSlow = errors.New("hub: subscriber too slow, queue overflowed")
)

// Stats is a snapshot of the hub's counters, read by /metrics.
type Stats struct {
	Connections   int64  // open streams
	Subscriptions int64  // open (stream, topic) pairs
	Delivered     uint64 // events written to streams, live and replayed
	Replayed      uint64 // events written to streams from history
	DroppedSlow   uint64 // streams cut off because their queue overflowed
	Gaps          uint64 // herald.gap events sent
	// Holes counts live events that came past a stream's cursor (an event
	// before them was not delivered live): each makes the stream read the
	// missing ones from history. Rereads counts the engine's lost signals
	// acted on, per stream and topic. Recovered counts the events written
	// from history by either: what fan-out lost and history gave back.
	Holes, Rereads, Recovered uint64
	// ContractViolations counts what the engine did against its contract
	// that the hub saw: an event its history does not reach, an epoch going
	// back, a callback after cancel.
	ContractViolations uint64
}

// counters are the live values behind Stats.
type counters struct {
	connections   atomic.Int64
	subscriptions atomic.Int64
	delivered     atomic.Uint64
	replayed      atomic.Uint64
	droppedSlow   atomic.Uint64
	gaps          atomic.Uint64
	holes         atomic.Uint64
	rereads       atomic.Uint64
	recovered     atomic.Uint64
	violations    atomic.Uint64
}

// Stats returns the hub's counters as they are now. Each is read atomically;
// they are not read together as one.
func (h *Hub) Stats() Stats {
	c := &h.stats
	return Stats{
		Connections:   c.connections.Load(),
		Subscriptions: c.subscriptions.Load(),
		Delivered:     c.delivered.Load(),
		Replayed:      c.replayed.Load(),
		DroppedSlow:   c.droppedSlow.Load(),
		Gaps:          c.gaps.Load(),
		Holes:         c.holes.Load(),
		Rereads:       c.rereads.Load(),
		Recovered:     c.recovered.Load(),

		ContractViolations: c.violations.Load(),
	}
}

// Hub dispatches engine events to the streams of this node.
type Hub struct {
	eng   engine.Engine
	opt   Options
	stats counters

	mu      sync.Mutex
	topics  map[string]*topicState
	busy    map[*topicState]struct{} // topics with busyStreams streams or more (up to maxBusy): candidates for Topics
	all     map[*Subscriber]struct{} // every registered stream
	closing bool
	streams sync.WaitGroup

	writers writers
}

// New returns a hub delivering events of eng.
func New(eng engine.Engine, opt Options) *Hub {
	opt.setDefaults()
	h := &Hub{
		eng: eng, opt: opt,
		topics: make(map[string]*topicState),
		busy:   make(map[*topicState]struct{}),
		all:    make(map[*Subscriber]struct{}),
	}
	h.writers.work = make(chan job)
	return h
}

// topicState is the node's interest in one topic: one engine subscription shared by
// every local subscriber, so a publication is received and encoded once.
type topicState struct {
	hub   *Hub
	topic string
	refs  int // streams holding or waiting for the state; guarded by Hub.mu

	// ready is closed once the engine subscription is made (cancel) or has
	// failed (err); both are set before it is closed and read after.
	ready  chan struct{}
	cancel func()
	err    error
	ended  atomic.Bool // cancel has returned: the engine may not call dispatch or lost again

	// The epochs of the events dispatched, to see the topic's log go back to
	// an epoch it had left. epoch is read without seen on the hot path.
	epoch atomic.Pointer[string] // epoch of the last event
	seen  sync.Mutex             // serializes changes of epoch and left
	left  string                 // the epoch before it

	mu   sync.RWMutex
	subs map[*Subscriber]int // subscriber -> index of this topic in it
}

// dispatch runs on the engine's goroutine: encode once, hand the bytes to every
// subscriber's queue without blocking, and the streams that were idle to writers.
func (ts *topicState) dispatch(ev engine.Event) {
	if !ts.admit(ev) {
		return
	}
	m := newMessage(ev)
	ts.mu.RLock()
	var claimed []*Subscriber // streams that were idle: most of them, in a broadcast
	for s, i := range ts.subs {
		if s.push(i, m) {
			if claimed == nil {
				claimed = make([]*Subscriber, 0, len(ts.subs))
			}
			claimed = append(claimed, s)
		}
	}
	ts.mu.RUnlock()
	ts.hub.runBatch(claimed)
}

// lost runs on the engine's goroutine when fan-out for the topic may have lost
// events: every stream of the topic re-reads history after its cursor, so an
// event lost with no later one to reveal it still arrives.
func (ts *topicState) lost() {
	if ts.ended.Load() {
		ts.hub.violation(msgAfterCancel, ts.topic, "callback", "lost")
		return
	}
	ts.mu.RLock()
	var claimed []*Subscriber
	for s, i := range ts.subs {
		if s.push(i, lostMessage) {
			claimed = append(claimed, s)
		}
	}
	ts.mu.RUnlock()
	ts.hub.runBatch(claimed)
}

// admit checks an event from the engine against the contract. An event after
// cancel, or of an epoch the topic's log had left, is reported and dropped:
// no stream's cursor can place it (each would end on "history does not
// reach" and reconnect into the same event).
func (ts *topicState) admit(ev engine.Event) bool {
	if ts.ended.Load() {
		ts.hub.violation(msgAfterCancel, ts.topic, "callback", "fn", "pos", ev.Pos.String())
		return false
	}
	if e := ts.epoch.Load(); e != nil && *e == ev.Pos.Epoch {
		return true // the same epoch as the last event: nearly always
	}
	ts.seen.Lock()
	e := ts.epoch.Load()
	switch {
	case e != nil && *e == ev.Pos.Epoch:
	case e != nil && ts.left == ev.Pos.Epoch:
		ts.seen.Unlock()
		ts.hub.violation(msgEpochBack, ts.topic, "epoch", *e, "event", ev.Pos.String())
		return false
	default:
		if e != nil {
			ts.left = *e
		}
		epoch := ev.Pos.Epoch
		ts.epoch.Store(&epoch)
	}
	ts.seen.Unlock()
	return true
}

// Messages of contract violations, one per kind: the server's logger
// rate-limits errors by message, so a flood of one kind does not hide another.
const (
	msgAfterCancel   = "engine contract violation: subscription callback after cancel"
	msgEpochBack     = "engine contract violation: topic's log went back to an epoch it had left"
	msgHistoryBehind = "engine contract violation: history does not reach a live event"
)

// violation reports something the engine did against its contract: an error
// (the engine, not a client, is at fault, and events may be lost) and a count
// in Stats.
func (h *Hub) violation(msg, topic string, args ...any) {
	h.stats.violations.Add(1)
	h.opt.Logger.Error(msg, append([]any{"topic", topic}, args...)...)
}

// historyBehind reports a live event that the topic's history, read after the
// stream's cursor, does not reach: the engine delivered an event its Read does
// not return. The stream ends; the client resumes from its cursor.
func (h *Hub) historyBehind(topic string, have, live engine.Position) {
	h.violation(msgHistoryBehind, topic, "cursor", have.String(), "event", live.String())
}

// lostMessage in a stream's queue asks its owner to re-read the topic's
// history after the cursor.
var lostMessage = &message{lost: true}

// message is an event encoded once for all subscribers: every field but the
// per-connection id line, and that line too for the streams of this topic
// alone, whose cursor is the same for all of them.
type message struct {
	pos   engine.Position
	prev  uint64 // the event's Prev: the stream delivers it when it has everything up to prev
	lost  bool   // not an event: fan-out may have lost some, re-read history
	check uint32 // EventCheck of the event
	id    []byte // "id: <cursor>\n" of a stream subscribed to this topic only
	body  []byte
}

func newMessage(ev engine.Event) *message {
	check := EventCheck(ev)
	b := make([]byte, 0, len(ev.Data)+len(ev.Type)+len(ev.Topic)+96)
	b = append(b, "id: "...)
	b = AppendCursor(b, []uint32{TopicHash(ev.Topic)}, []engine.Position{ev.Pos}, []uint32{check})
	b = append(b, '\n')
	idLen := len(b)
	b = appendEvent(b, ev)
	return &message{pos: ev.Pos, prev: ev.Prev, check: check, id: b[:idLen:idLen], body: b[idLen:]}
}

// appendEvent appends the event's type, topic and data fields and the blank line
// that ends it.
func appendEvent(b []byte, ev engine.Event) []byte {
	b = sse.AppendType(b, ev.Type)
	b = sse.AppendField(b, "topic", ev.Topic)
	b = sse.AppendData(b, ev.Data)
	return append(b, '\n')
}

// register adds s to the interest set of each of its topics, subscribing to the
// engine for topics this node had no interest in yet.
//
// h.mu guards only the topic map, reference counts and the set of streams; no
// engine call runs under it, since on a networked engine each is a round trip
// and a reconnect storm would queue every stream behind every other one. The
// first stream of a topic subscribes to the engine for it (a single flight per
// topic); streams of the same topic wait for that one call, not for other
// topics. A stream joins a topic's live set only once its subscription is
// active: Subscribe reads Head next and relies on every event after it being
// delivered. When ctx ends first, the stream gives up waiting.
func (h *Hub) register(ctx context.Context, s *Subscriber) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return ErrClosing
	}
	// Counted from here, not once live: Shutdown waits for a stream whose
	// engine subscriptions are still being made, so none outlives the engine.
	h.streams.Add(1)
	states := make([]*topicState, len(s.topics))
	var mine []*topicState // new to the node: this stream subscribes to the engine for them
	for i, t := range s.topics {
		ts := h.topics[t]
		if ts == nil {
			ts = &topicState{hub: h, topic: t, ready: make(chan struct{}), subs: make(map[*Subscriber]int)}
			h.topics[t] = ts
			mine = append(mine, ts)
		}
		ts.refs++
		if ts.refs >= busyStreams && len(h.busy) < maxBusy {
			h.busy[ts] = struct{}{} // again is harmless; a topic missed while the set was full gets in later
		}
		states[i] = ts
	}
	h.mu.Unlock()

	// A stream's own subscriptions are made in full before it waits for
	// others', so two streams each waiting for a topic the other subscribes
	// to cannot hold each other up, and a reference that drops to zero is
	// always on a state whose subscription has ended one way or the other.
	h.subscribeAll(mine)
	var err error
	for _, ts := range states {
		select {
		case <-ts.ready:
			if ts.err != nil && err == nil {
				err = ts.err
			}
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		h.mu.Lock()
		if h.closing {
			err = ErrClosing
		} else {
			// Under h.mu with closing unset, so Shutdown either sees the
			// stream or the stream sees closing.
			h.all[s] = struct{}{}
		}
		h.mu.Unlock()
	}
	if err != nil {
		h.release(states)
		h.streams.Done()
		return err
	}
	for i, ts := range states {
		ts.mu.Lock()
		ts.subs[s] = i
		ts.mu.Unlock()
	}
	s.states = states
	h.stats.connections.Add(1)
	h.stats.subscriptions.Add(int64(len(states)))
	return nil
}

// subscribeAll subscribes to the engine for each state at once rather than one
// after another: a stream of N topics new to the node waits for one round trip,
// not N. It returns when every call has.
func (h *Hub) subscribeAll(states []*topicState) {
	var wg sync.WaitGroup
	for i, ts := range states {
		if i == len(states)-1 {
			h.subscribe(ts) // the last on this goroutine
			break
		}
		wg.Go(func() { h.subscribe(ts) })
	}
	wg.Wait()
}

// subscribe makes the engine subscription of a state no stream has joined yet,
// and wakes the streams waiting for it. A failed state leaves the topic map at
// once, so the next stream of the topic tries again.
func (h *Hub) subscribe(ts *topicState) {
	cancel, err := h.eng.Subscribe(ts.topic, ts.dispatch, ts.lost)
	if err != nil {
		h.mu.Lock()
		if h.topics[ts.topic] == ts {
			delete(h.topics, ts.topic)
		}
		h.mu.Unlock()
	}
	ts.cancel, ts.err = cancel, err
	close(ts.ready)
}

// release drops a stream's references to states; the last reference to a
// subscribed state removes it from the topic map and cancels its engine
// subscription, outside h.mu. A stream arriving for the topic meanwhile finds
// no state and subscribes anew, so it never joins a subscription being
// cancelled.
func (h *Hub) release(states []*topicState) {
	var ended []*topicState
	h.mu.Lock()
	for _, ts := range states {
		ts.refs--
		if ts.refs == busyStreams-1 {
			delete(h.busy, ts)
		}
		if ts.refs == 0 && h.topics[ts.topic] == ts {
			delete(h.topics, ts.topic)
			ended = append(ended, ts)
		}
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for i, ts := range ended {
		if i == len(ended)-1 {
			ts.stop()
			break
		}
		wg.Go(ts.stop)
	}
	wg.Wait()
}

// stop cancels the engine subscription. Not under ts.mu: cancel waits for a
// running dispatch, which takes ts.mu.
func (ts *topicState) stop() {
	ts.cancel()
	ts.ended.Store(true)
}

func (h *Hub) unregister(s *Subscriber) {
	for _, ts := range s.states {
		ts.mu.Lock()
		delete(ts.subs, s)
		ts.mu.Unlock()
	}
	h.mu.Lock()
	delete(h.all, s)
	h.mu.Unlock()
	h.release(s.states)
	h.stats.connections.Add(-1)
	h.stats.subscriptions.Add(-int64(len(s.states)))
	h.streams.Done() // after the cancels: Shutdown waits for them too
}

// Shutdown refuses new streams, tells every open stream to reconnect after a
// jittered delay and close, and waits for them until ctx ends.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.closing {
		h.closing = true
		for s := range h.all {
			s.post(dueShutdown, true)
		}
	}
	h.mu.Unlock()
	waited := make(chan struct{})
	go func() { h.streams.Wait(); close(waited) }()
	select {
	case <-waited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Engine returns the engine the hub delivers from.
func (h *Hub) Engine() engine.Engine { return h.eng }

const (
	// topicsWalk bounds the topics Topics looks at besides the busy ones.
	topicsWalk = 4096
	// busyStreams is the number of streams from which a topic is always
	// among those Topics ranks; maxBusy bounds how many are kept.
	busyStreams = 8
	maxBusy     = 1024
)

// TopicStreams is a topic this node reads and the number of its streams
// reading it.
type TopicStreams struct {
	Topic   string
	Streams int
}

// Topics returns the number of topics this node's streams read and, of them,
// the n with the most streams, most first (ties by name): for the admin
// page's statistics, every few seconds, never on the delivery path. It holds
// the hub's lock, which streams connecting and leaving wait for, so its work
// is bounded: up to topicsWalk topics the list is exact; past that it ranks
// the topics that reached busyStreams streams (kept as they get there) and a
// sample of topicsWalk others (a map walk starts at a random place, so the
// sample changes from call to call).
func (h *Hub) Topics(n int) (int, []TopicStreams) {
	top := make([]TopicStreams, 0, n)
	add := func(ts *topicState) {
		e := TopicStreams{Topic: ts.topic, Streams: ts.refs}
		i := len(top)
		for i > 0 && (top[i-1].Streams < e.Streams || top[i-1].Streams == e.Streams && top[i-1].Topic > e.Topic) {
			i--
		}
		if i >= n {
			return
		}
		if len(top) < n {
			top = append(top, TopicStreams{})
		}
		copy(top[i+1:], top[i:])
		top[i] = e
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ts := range h.busy {
		if ts.refs < busyStreams || h.topics[ts.topic] != ts {
			delete(h.busy, ts) // fell back, or ended
			continue
		}
		add(ts)
	}
	walked := 0
	for _, ts := range h.topics {
		if walked == topicsWalk {
			break
		}
		walked++
		if _, ok := h.busy[ts]; !ok {
			add(ts)
			if ts.refs >= busyStreams && len(h.busy) < maxBusy {
				h.busy[ts] = struct{}{} // missed while the set was full
			}
		}
	}
	return len(h.topics), top
}
