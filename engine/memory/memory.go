// Package memory is Herald's reference engine, kept in memory: what
// testing/fstest.MapFS is to io/fs. It implements the whole engine contract,
// for several nodes in one process, and can misbehave on demand (see Faults)
// so that the hub's handling of lost, repeated, reordered or late fan-out, of
// a lost history and of failing calls can be tested without a network.
//
// A Log is the shared back end; every Engine opened on it is one node:
//
//	log := memory.NewLog(memory.Options{})
//	a, b := log.Open(), log.Open() // two nodes: an append through a reaches b's subscribers
//
// New opens the first node of a fresh Log, NewPeer another node of e's Log.
// A Log outlives the engines opened on it: closing every engine and opening a
// new one is a restart that keeps the history.
package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/herald-hub/herald/engine"
)

// Defaults for zero Options.
const (
	DefaultMaxLen            = 100_000
	DefaultIdempotencyWindow = 2 * time.Minute
)

// Options configure a Log. The zero value is ready to use.
type Options struct {
	// MaxLen is the most events kept per topic; older ones are dropped as
	// newer ones are appended. 0 means DefaultMaxLen.
	MaxLen int
	// MaxAge drops events older than this by Now, when the topic is next
	// appended to or read, or on Trim. 0 keeps events whatever their age.
	MaxAge time.Duration
	// Now tells the time: it stamps events, ages them and measures the
	// idempotency window. Nil means time.Now.
	Now func() time.Time
	// IdempotencyWindow is how long an Event.ID is remembered per topic.
	// 0 means DefaultIdempotencyWindow; negative disables idempotency keys.
	IdempotencyWindow time.Duration
	// Sparse, when above 1, makes a topic's offsets grow by a random 1..Sparse,
	// as in a log shared by many topics; Prev says where the previous event
	// is. 0 or 1 gives dense offsets (Prev = Offset-1).
	Sparse int
}

// Log is the shared back end: every topic's history, its epoch and its
// idempotency keys. It is safe for concurrent use.
type Log struct {
	opt Options

	mu     sync.Mutex
	epoch  string
	seq    uint64 // appends and epoch changes so far: orders delivery against Subscribe
	topics map[string]*topicLog
	nodes  map[*Engine]struct{} // open engines, for fan-out
}

// topic is one topic's history.
type topicLog struct {
	events []engine.Event // retained, in offset order
	head   uint64         // offset of the last event appended; 0 for none
	floor  uint64         // offset of the last event dropped: the Prev of the oldest retained
	ids    map[string]idKey
	idq    []idEntry // ids in append order, to forget them once the window passed
}

type idKey struct {
	pos engine.Position
	at  time.Time
}

type idEntry struct {
	id string
	at time.Time
}

// NewLog returns an empty log with a fresh epoch.
func NewLog(opt Options) *Log {
	if opt.MaxLen <= 0 {
		opt.MaxLen = DefaultMaxLen
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.IdempotencyWindow == 0 {
		opt.IdempotencyWindow = DefaultIdempotencyWindow
	}
	return &Log{opt: opt, epoch: newEpoch(""), topics: map[string]*topicLog{}, nodes: map[*Engine]struct{}{}}
}

// New returns an engine on a new Log.
func New(opt Options) *Engine { return NewLog(opt).Open() }

// NewPeer returns another node's engine on e's Log.
func NewPeer(e *Engine) *Engine { return e.log.Open() }

func newEpoch(old string) string {
	for {
		if ep := fmt.Sprintf("%016x", rand.Uint64()); ep != old {
			return ep
		}
	}
}

// Epoch is the log's current epoch.
func (l *Log) Epoch() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// LoseHistory drops every topic's history and idempotency keys and starts a
// new epoch, as a wiped store or a deleted stream would. Every subscription of
// every node is told, through its lost callback, that fan-out may have missed
// something: a subscriber then re-reads, finds its cursor from the old epoch
// and announces the gap.
func (l *Log) LoseHistory() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch = newEpoch(l.epoch)
	l.topics = map[string]*topicLog{}
	l.seq++
	for n := range l.nodes {
		n.enqueue(item{seq: l.seq, lostAll: true})
	}
}

// Trim drops the events older than MaxAge from every topic now, as appends
// and reads of a topic do for it.
func (l *Log) Trim() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tp := range l.topics {
		l.trimAge(tp)
	}
}

// trimAge drops tp's events older than MaxAge. l.mu is held.
func (l *Log) trimAge(tp *topicLog) {
	if l.opt.MaxAge <= 0 {
		return
	}
	cutoff := l.opt.Now().Add(-l.opt.MaxAge)
	n := 0
	for n < len(tp.events) && tp.events[n].Time.Before(cutoff) {
		n++
	}
	tp.drop(n)
}

// drop forgets the n oldest retained events.
func (tp *topicLog) drop(n int) {
	if n == 0 {
		return
	}
	tp.floor = tp.events[n-1].Pos.Offset
	tp.events = slices.Delete(tp.events, 0, n)
}

// Open returns a new engine (a node) on the log.
func (l *Log) Open() *Engine {
	e := &Engine{
		log:    l,
		faults: &Faults{},
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		subs:   map[string][]*subscription{},
	}
	l.mu.Lock()
	l.nodes[e] = struct{}{}
	l.mu.Unlock()
	go e.deliverer()
	return e
}

// Engine is one node on a Log. Create it with New, NewPeer or Log.Open.
type Engine struct {
	log    *Log
	faults *Faults

	// mu guards closed. Every call holds it for reading, so Close (writer)
	// knows the calls in flight, appends among them, are done.
	mu     sync.RWMutex
	closed bool

	qmu      sync.Mutex
	queue    []item // appended events waiting for the deliverer, in log order
	stopping bool   // Close: deliver what is queued, then stop
	wake     chan struct{}
	stop     chan struct{} // closed by Close: fan-out delays end at once
	done     chan struct{} // closed when the deliverer has returned

	closeOnce sync.Once

	subMu sync.RWMutex // held for reading while callbacks run: cancel waits for them
	subs  map[string][]*subscription
}

var _ engine.Engine = (*Engine)(nil)

// subscription is one Subscribe: it is delivered the items of sequence from on.
type subscription struct {
	fn   func(engine.Event)
	lost func()
	from uint64
}

// item is one append's events, or a loss of history, for the deliverer.
type item struct {
	seq     uint64
	events  []engine.Event
	lostAll bool
}

// Log returns the log e is a node of.
func (e *Engine) Log() *Log { return e.log }

// Faults returns e's faults, to inject them while e runs.
func (e *Engine) Faults() *Faults { return e.faults }

// Trim is Log.Trim.
func (e *Engine) Trim() { e.log.Trim() }

// Append appends events to the log, topic by topic atomically.
func (e *Engine) Append(ctx context.Context, events []engine.Event) ([]engine.Position, error) {
	for _, ev := range events {
		if err := engine.ValidateTopic(ev.Topic); err != nil {
			return nil, err
		}
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, nil
	}
	if e.faults.takeAppendError() {
		return nil, fmt.Errorf("%w: memory: append refused (injected fault)", engine.ErrUnavailable)
	}
	var failed map[string]error
	for _, ev := range events {
		if _, done := failed[ev.Topic]; !done && e.faults.takeTopicError(ev.Topic) {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[ev.Topic] = fmt.Errorf("%w: memory: append to %q refused (injected fault)", engine.ErrUnavailable, ev.Topic)
		}
	}

	l := e.log
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opt.Now()
	pos := make([]engine.Position, len(events))
	var out []engine.Event
	for i, ev := range events {
		if failed[ev.Topic] != nil {
			continue
		}
		tp := l.topics[ev.Topic]
		if tp == nil {
			tp = &topicLog{}
			l.topics[ev.Topic] = tp
		}
		if p, ok := l.seen(tp, ev.ID, now); ok {
			pos[i] = p
			continue
		}
		step := uint64(1)
		if l.opt.Sparse > 1 {
			step += rand.Uint64N(uint64(l.opt.Sparse))
		}
		stored := engine.Event{
			Topic: ev.Topic, Type: ev.Type, Data: slices.Clone(ev.Data), ID: ev.ID,
			Pos:  engine.Position{Epoch: l.epoch, Offset: tp.head + step},
			Prev: tp.head,
			Time: now,
		}
		tp.head = stored.Pos.Offset
		tp.events = append(tp.events, stored)
		if ev.ID != "" && l.opt.IdempotencyWindow > 0 {
			if tp.ids == nil {
				tp.ids = map[string]idKey{}
			}
			tp.ids[ev.ID] = idKey{pos: stored.Pos, at: now}
			tp.idq = append(tp.idq, idEntry{id: ev.ID, at: now})
		}
		pos[i] = stored.Pos
		out = append(out, stored)
	}
	for _, ev := range out {
		tp := l.topics[ev.Topic]
		tp.drop(max(0, len(tp.events)-l.opt.MaxLen))
		l.trimAge(tp)
	}
	if len(out) > 0 {
		l.seq++
		for n := range l.nodes {
			n.enqueue(item{seq: l.seq, events: out})
		}
	}
	if failed != nil {
		return pos, &engine.AppendError{Topics: failed}
	}
	return pos, nil
}

// seen returns the position of the event of tp appended with id within the
// idempotency window, forgetting the ids older than that. l.mu is held.
func (l *Log) seen(tp *topicLog, id string, now time.Time) (engine.Position, bool) {
	if id == "" || l.opt.IdempotencyWindow <= 0 {
		return engine.Position{}, false
	}
	cutoff := now.Add(-l.opt.IdempotencyWindow)
	for len(tp.idq) > 0 && !tp.idq[0].at.After(cutoff) {
		old := tp.idq[0]
		if k, ok := tp.ids[old.id]; ok && k.at.Equal(old.at) {
			delete(tp.ids, old.id)
		}
		tp.idq = tp.idq[1:]
	}
	k, ok := tp.ids[id]
	return k.pos, ok
}

// Subscribe calls fn, on e's delivery goroutine, for every event appended to
// topic through any node of the log once Subscribe has returned.
func (e *Engine) Subscribe(topic string, fn func(engine.Event), lost func()) (cancel func(), err error) {
	if err := engine.ValidateTopic(topic); err != nil {
		return nil, err
	}
	if d := e.faults.subscribeDelay(); d > 0 {
		// Not under e.mu: a slow Subscribe must not hold Close up.
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-e.stop:
			t.Stop()
		}
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, engine.ErrClosed
	}
	// Under the log's lock, no append is half done: every later one gets a
	// later sequence number, and a Head read after this returns sees only
	// events of earlier ones.
	e.log.mu.Lock()
	s := &subscription{fn: fn, lost: lost, from: e.log.seq + 1}
	e.subMu.Lock()
	list := e.subs[topic]
	e.subs[topic] = append(list[:len(list):len(list)], s) // copy on write
	e.subMu.Unlock()
	e.log.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.subMu.Lock() // waits for a running callback
			defer e.subMu.Unlock()
			list := e.subs[topic]
			i := slices.Index(list, s)
			if i < 0 {
				return
			}
			if len(list) == 1 {
				delete(e.subs, topic)
				return
			}
			e.subs[topic] = slices.Delete(slices.Clone(list), i, i+1)
		})
	}, nil
}

// Read returns up to limit events of topic after `after`.
func (e *Engine) Read(ctx context.Context, topic string, after engine.Position, limit int) ([]engine.Event, error) {
	if err := engine.ValidateTopic(topic); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("memory: Read limit %d, must be positive", limit)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.faults.takeReadError() {
		return nil, fmt.Errorf("%w: memory: read of %q failed (injected fault)", engine.ErrUnavailable, topic)
	}
	l := e.log
	l.mu.Lock()
	defer l.mu.Unlock()
	tp := l.topics[topic]
	if tp == nil {
		tp = &topicLog{}
	}
	l.trimAge(tp)
	var i int
	if after != (engine.Position{}) {
		if after.Epoch != l.epoch || after.Offset < tp.floor {
			return nil, &engine.GapError{Topic: topic, Resume: engine.Position{Epoch: l.epoch, Offset: tp.floor}}
		}
		i = sort.Search(len(tp.events), func(i int) bool { return tp.events[i].Pos.Offset > after.Offset })
	}
	n := min(limit, len(tp.events)-i)
	if n <= 0 {
		return nil, nil
	}
	return slices.Clone(tp.events[i : i+n]), nil
}

// Head returns the position of topic's last event.
func (e *Engine) Head(ctx context.Context, topic string) (engine.Position, error) {
	if err := engine.ValidateTopic(topic); err != nil {
		return engine.Position{}, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return engine.Position{}, engine.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return engine.Position{}, err
	}
	l := e.log
	l.mu.Lock()
	defer l.mu.Unlock()
	p := engine.Position{Epoch: l.epoch}
	if tp := l.topics[topic]; tp != nil {
		p.Offset = tp.head
	}
	return p, nil
}

// Close stops the node: calls in flight finish, events already appended are
// delivered (without injected delays), and no callback runs once it returns.
// The log and the other nodes are not affected. It is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.log.mu.Lock()
		delete(e.log.nodes, e)
		e.log.mu.Unlock()
		e.qmu.Lock()
		e.stopping = true
		e.qmu.Unlock()
		close(e.stop)
		e.signal()
		<-e.done
	})
	<-e.done
	return nil
}

func (e *Engine) enqueue(it item) {
	e.qmu.Lock()
	e.queue = append(e.queue, it)
	e.qmu.Unlock()
	e.signal()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// deliverer runs the node's fan-out until Close, then delivers what was
// queued before it and returns.
func (e *Engine) deliverer() {
	defer close(e.done)
	for {
		e.qmu.Lock()
		items, stopping := e.queue, e.stopping
		e.queue = nil
		e.qmu.Unlock()
		if len(items) == 0 {
			if stopping {
				return
			}
			<-e.wake
			continue
		}
		e.deliver(items)
	}
}

// delivery is one event on its way to the subscriptions of its topic.
type delivery struct {
	seq uint64
	ev  engine.Event
}

func (e *Engine) deliver(items []item) {
	var ds []delivery
	for _, it := range items {
		if it.lostAll {
			e.flush(ds)
			ds = nil
			e.lostAll(it.seq)
			continue
		}
		for _, ev := range it.events {
			ds = append(ds, delivery{it.seq, ev})
		}
	}
	e.flush(ds)
}

// flush delivers ds, with whatever fan-out faults are set.
func (e *Engine) flush(ds []delivery) {
	f := e.faults
	for i := 0; i < len(ds); i++ {
		d := ds[i]
		if j := nextOf(ds, i); j > 0 && f.take(&f.reorder) {
			// Deliver the topic's next event first, then this one.
			ds[j], ds[i] = d, ds[j]
			d = ds[i]
		}
		if wait := f.fanOutDelay(); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-e.stop:
				t.Stop()
			}
		}
		if f.take(&f.drop) {
			f.mu.Lock()
			signal := f.dropLost
			f.mu.Unlock()
			if signal {
				e.call(d, func(s *subscription) {
					if s.lost != nil {
						s.lost()
					}
				})
			}
			continue
		}
		times := 1
		if f.take(&f.dup) {
			times = 2
		}
		for range times {
			e.call(d, func(s *subscription) { s.fn(d.ev) })
		}
	}
}

// nextOf is the index of the next delivery of ds[i]'s topic, 0 for none.
func nextOf(ds []delivery, i int) int {
	for j := i + 1; j < len(ds); j++ {
		if ds[j].ev.Topic == ds[i].ev.Topic {
			return j
		}
	}
	return 0
}

// call runs do for every subscription of d's topic made before d was appended.
func (e *Engine) call(d delivery, do func(*subscription)) {
	e.subMu.RLock()
	defer e.subMu.RUnlock()
	for _, s := range e.subs[d.ev.Topic] {
		if d.seq >= s.from {
			do(s)
		}
	}
}

func (e *Engine) lostAll(seq uint64) {
	e.subMu.RLock()
	defer e.subMu.RUnlock()
	for _, list := range e.subs {
		for _, s := range list {
			if seq >= s.from && s.lost != nil {
				s.lost()
			}
		}
	}
}

// Faults are failures injected into one node, set while it runs. Counts say
// how many of the next events or calls fail; a count is used up as they do.
// The zero value injects nothing. Safe for concurrent use.
type Faults struct {
	mu        sync.Mutex
	drop      int
	dropLost  bool
	dup       int
	reorder   int
	delay     time.Duration
	reads     int
	appends   int
	topicErrs map[string]int
	subDelay  time.Duration
}

// DropFanOut makes the node's fan-out lose the next n events (for every
// subscription of their topic on this node). With signalLost, each loss is
// followed by a call of the subscriptions' lost callback, as an engine that
// notices a loss does; without, the loss is silent until a later event's Prev
// reveals it.
func (f *Faults) DropFanOut(n int, signalLost bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop, f.dropLost = n, signalLost
}

// DuplicateFanOut delivers each of the next n events twice.
func (f *Faults) DuplicateFanOut(n int) { f.set(&f.dup, n) }

// ReorderFanOut delivers, n times, an event after the next event of its topic,
// when that one is already waiting for delivery (appended in the same batch
// or while fan-out was behind).
func (f *Faults) ReorderFanOut(n int) { f.set(&f.reorder, n) }

// DelayFanOut makes the node wait d before delivering each event, until set
// back to 0.
func (f *Faults) DelayFanOut(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// FailReads makes the next n Reads return an error matching
// engine.ErrUnavailable.
func (f *Faults) FailReads(n int) { f.set(&f.reads, n) }

// FailAppends makes the next n Appends append nothing and return an error
// matching engine.ErrUnavailable.
func (f *Faults) FailAppends(n int) { f.set(&f.appends, n) }

// FailTopic makes the next n Appends that include topic append none of its
// events and return an *engine.AppendError naming it; the other topics of
// those calls are appended.
func (f *Faults) FailTopic(topic string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.topicErrs == nil {
		f.topicErrs = map[string]int{}
	}
	f.topicErrs[topic] = n
}

// SubscribeDelay makes every Subscribe take d longer, as a networked engine
// waiting for its subscription to be active does, until set back to 0.
func (f *Faults) SubscribeDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subDelay = d
}

func (f *Faults) set(n *int, v int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*n = v
}

// take uses up one of the count n, reporting whether there was one.
func (f *Faults) take(n *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *n <= 0 {
		return false
	}
	*n--
	return true
}

func (f *Faults) takeReadError() bool   { return f.take(&f.reads) }
func (f *Faults) takeAppendError() bool { return f.take(&f.appends) }

func (f *Faults) takeTopicError(topic string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.topicErrs[topic] <= 0 {
		return false
	}
	f.topicErrs[topic]--
	return true
}

func (f *Faults) fanOutDelay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delay
}

func (f *Faults) subscribeDelay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subDelay
}
