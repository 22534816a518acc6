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
}

// counters are the live values behind Stats.
type counters struct {
	connections   atomic.Int64
	subscriptions atomic.Int64
	delivered     atomic.Uint64
	replayed      atomic.Uint64
	droppedSlow   atomic.Uint64
	gaps          atomic.Uint64
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
	}
}

// Hub dispatches engine events to the streams of this node.
type Hub struct {
	eng   engine.Engine
	opt   Options
	stats counters

	mu      sync.Mutex
	topics  map[string]*topicState
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
		all:    make(map[*Subscriber]struct{}),
	}
	h.writers.work = make(chan job)
	return h
}

// topicState is the node's interest in one topic: one engine subscription shared by
// every local subscriber, so a publication is received and encoded once.
type topicState struct {
	hub    *Hub
	topic  string
	cancel func()
	refs   int // guarded by Hub.mu

	mu   sync.RWMutex
	subs map[*Subscriber]int // subscriber -> index of this topic in it
}

// dispatch runs on the engine's goroutine: encode once, hand the bytes to every
// subscriber's queue without blocking, and the streams that were idle to writers.
func (ts *topicState) dispatch(ev engine.Event) {
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
func (h *Hub) register(s *Subscriber) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return ErrClosing
	}
	var added []*topicState
	for i, t := range s.topics {
		ts := h.topics[t]
		if ts == nil {
			ts = &topicState{hub: h, topic: t, subs: make(map[*Subscriber]int)}
			cancel, err := h.eng.Subscribe(t, ts.dispatch, ts.lost)
			if err != nil {
				h.unregisterLocked(s, added)
				return err
			}
			ts.cancel = cancel
			h.topics[t] = ts
		}
		ts.refs++
		ts.mu.Lock()
		ts.subs[s] = i
		ts.mu.Unlock()
		added = append(added, ts)
	}
	s.states = added
	h.all[s] = struct{}{}
	h.streams.Add(1)
	h.stats.connections.Add(1)
	h.stats.subscriptions.Add(int64(len(added)))
	return nil
}

func (h *Hub) unregister(s *Subscriber) {
	h.mu.Lock()
	h.unregisterLocked(s, s.states)
	delete(h.all, s)
	h.mu.Unlock()
	h.stats.connections.Add(-1)
	h.stats.subscriptions.Add(-int64(len(s.states)))
	h.streams.Done()
}

func (h *Hub) unregisterLocked(s *Subscriber, states []*topicState) {
	for _, ts := range states {
		ts.mu.Lock()
		delete(ts.subs, s)
		ts.mu.Unlock()
		ts.refs--
		if ts.refs == 0 {
			delete(h.topics, ts.topic)
			// Not under ts.mu: cancel waits for a running dispatch, which takes ts.mu.
			ts.cancel()
		}
	}
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
