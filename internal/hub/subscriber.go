package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-hub/herald/engine"
)

// GapType is the SSE event type announcing history that could not be replayed.
const GapType = "herald.gap"

// ConnectedType is the SSE event type of the block that opens every stream. It
// carries the starting cursor as its id and {} as its data: a named event with
// data is the one block that every client library stores the id of (some drop
// an id-only block), and handlers of unnamed messages never see it (while
// fetch-event-source, which hands every event to onmessage, gets JSON that
// parses).
const ConnectedType = "herald.connected"

// Writer is the stream's transport: a socket taken over from net/http, an
// http.ResponseController-backed response, or a buffer in tests. Writes come
// from one goroutine at a time, though not always the same one.
type Writer interface {
	Write(p []byte) (int, error)
	Flush() error
	SetWriteDeadline(t time.Time) error
}

// TryWriter is a Writer that can also write without waiting, so that one
// goroutine can write a fan-out to many streams: a client slow to read must not
// hold up the others.
type TryWriter interface {
	Writer
	// TryWrite takes all of p: it writes what the connection accepts at once
	// and keeps the rest, reporting pending. Flush then writes the rest, and
	// Write writes it before p. The hub does not call TryWrite while a rest
	// is pending.
	TryWrite(p []byte) (pending bool, err error)
}

// CollisionError refuses a stream of two topics whose cursor hashes are equal
// (about one pair in four billion): its cursor could not tell them apart.
type CollisionError struct{ Topics [2]string }

func (e *CollisionError) Error() string {
	return fmt.Sprintf("topics %q and %q cannot share a stream (their cursor hashes collide); subscribe to them on separate streams", e.Topics[0], e.Topics[1])
}

// ErrClientGone ends a stream whose client left (Stop).
var ErrClientGone = errors.New("hub: client gone")

// ErrBroken is returned for a write attempted after an earlier one failed.
var ErrBroken = errors.New("hub: stream broken by an earlier write error")

// Subscriber is one SSE stream: its topics, its cursor and a bounded queue.
//
// A live stream has no goroutine of its own while it is idle. Whatever has work
// for it (a published event, its heartbeat or lifetime timer, shutdown, the
// client leaving) records the work under mu and, unless the stream already has an
// owner, becomes the owner and runs it: run writes everything due, then gives
// ownership up. Only the owner touches the write side (the fields under "The
// owner's side"), so writing needs no lock. A published event's fan-out runs
// its streams from a few shared goroutines that never wait on a client
// (runTry); a stream that would make them wait moves to a goroutine of its
// own, so a client slow to read blocks only the goroutine writing to it.
type Subscriber struct {
	hub    *Hub
	topics []string
	hashes []uint32
	gaps   []string // topics whose history could not cover the client's cursor
	resume Cursor   // cursor the client came back with
	states []*topicState
	ctx    context.Context // ends when the stream stops; bounds engine reads
	cancel context.CancelFunc
	onEnd  func(error)
	done   chan struct{} // closed once the stream has ended and onEnd returned

	// The owner's side.
	w        Writer
	tw       TryWriter         // w, when it can write without waiting; set by Start
	try      bool              // writing for a fan-out's batch: flush must not wait
	pending  bool              // w holds bytes a TryWrite could not send yet
	pos      []engine.Position // cursor: last position sent per topic
	checks   []uint32          // EventCheck of the event at each of pos; 0 unknown
	buf      []byte            // write buffer, reused between flushes
	spare    []queued          // the previous queue, reused as the next one
	deadline time.Time         // write deadline last set by flush
	broken   bool              // a write failed: nothing more may be written
	werr     error             // the failed write of a fan-out's batch, for the stream's own writer to end it

	lastWrite atomic.Int64 // unix nanoseconds of the last write, read by the heartbeat timer
	cut       atomic.Bool  // overflowed: the next or current write fails at once

	mu       sync.Mutex
	queue    []queued
	overflow bool
	due      due  // work other than events
	owned    bool // a goroutine runs the stream; the creator owns it until Live
	ended    bool
	beat     *time.Timer
	life     *time.Timer
	err      error // why the stream ended, set before done is closed
}

// due is work for a stream other than events.
type due uint8

const (
	dueBeat     due = 1 << iota // heartbeat timer fired
	dueLifetime                 // maximum lifetime reached
	dueShutdown                 // the hub is shutting down
	dueStop                     // the client left
)

type queued struct {
	topic int
	m     *message
}

// Subscribe registers a stream for topics, resuming after lastEventID when it is
// not empty. Live interest is registered before the starting positions are read,
// so no event can fall between history and live delivery.
func (h *Hub) Subscribe(ctx context.Context, topics []string, lastEventID string) (*Subscriber, error) {
	s := &Subscriber{
		hub:    h,
		topics: topics,
		hashes: make([]uint32, len(topics)),
		pos:    make([]engine.Position, len(topics)),
		checks: make([]uint32, len(topics)),
		owned:  true, // by the caller, until Live
		done:   make(chan struct{}),
	}
	for i, t := range topics {
		s.hashes[i] = TopicHash(t)
		for j := range i {
			if s.hashes[j] == s.hashes[i] {
				// The cursor names topics by hash: it could not tell these apart.
				return nil, &CollisionError{Topics: [2]string{topics[j], t}}
			}
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	badCursor := false
	if lastEventID != "" {
		c, err := ParseCursor(lastEventID)
		if err != nil {
			// We cannot know what the client missed: announce it rather than stay silent.
			badCursor = true
		}
		s.resume = c
	}
	if err := h.register(ctx, s); err != nil {
		s.cancel()
		return nil, err
	}
	for i, t := range topics {
		head, err := h.eng.Head(ctx, t)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("head of %q: %w", t, err)
		}
		p, check, ok := s.resume.LookupCheck(t)
		start := head
		switch {
		case badCursor:
			s.gaps = append(s.gaps, t)
		case ok && p.Epoch == head.Epoch && p.Offset > head.Offset:
			// A cursor past the end of this log (forged, or the store was
			// restored from an older copy): resuming there would silently
			// skip the next events as already sent. Announce it and start at
			// the head.
			s.gaps = append(s.gaps, t)
		case ok && p.Epoch == head.Epoch && p.Offset > 0 && check != 0:
			held, err := h.holds(ctx, t, p, check)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("check the cursor of %q: %w", t, err)
			}
			if !held {
				// The store holds no event, or another one, where the
				// cursor points (a data dir copied back from an older
				// copy): the events after it are not the ones the client
				// missed. Announce it and start at the head.
				s.gaps = append(s.gaps, t)
				break
			}
			start = p
			s.checks[i] = check
		case ok:
			start = p // a different epoch is the engine's to judge when read
		}
		s.pos[i] = start
		if start == head && s.checks[i] == 0 {
			s.checks[i] = h.checkAt(ctx, t, head)
		}
	}
	return s, nil
}

// holds reports whether the store holds, at p, the event whose check the
// client's cursor carries. An event no longer retained cannot be compared; it
// counts as held (history resumes after p, or announces the gap).
func (h *Hub) holds(ctx context.Context, topic string, p engine.Position, check uint32) (bool, error) {
	evs, err := h.eng.Read(ctx, topic, engine.Position{Epoch: p.Epoch, Offset: p.Offset - 1}, 1)
	if errors.Is(err, engine.ErrGap) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return len(evs) == 1 && evs[0].Pos == p && EventCheck(evs[0]) == check, nil
}

// checkAt is the check of the event at p, for the cursor of a stream that
// starts there; 0 (unknown) when there is none or it cannot be read.
func (h *Hub) checkAt(ctx context.Context, topic string, p engine.Position) uint32 {
	if p.Offset == 0 {
		return 0
	}
	evs, err := h.eng.Read(ctx, topic, engine.Position{Epoch: p.Epoch, Offset: p.Offset - 1}, 1)
	if err != nil || len(evs) != 1 || evs[0].Pos != p {
		return 0
	}
	return EventCheck(evs[0])
}

// OnEnd sets a function called once when the stream ends, after its last write,
// on the goroutine that ended it; the server closes the connection there. Call
// it before Start.
func (s *Subscriber) OnEnd(fn func(err error)) { s.onEnd = fn }

// Done is closed when the stream has ended.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Err is why the stream ended (nil for a clean end); valid once Done is closed.
func (s *Subscriber) Err() error {
	<-s.done
	return s.err
}

// Serve streams to w until ctx ends or the stream ends for another reason (hub
// shutdown, lifetime, slow client, write failure): Start, Live, then wait.
func (s *Subscriber) Serve(ctx context.Context, w Writer) error {
	stop := context.AfterFunc(ctx, s.Stop)
	defer stop()
	if s.Start(w) == nil {
		s.Live()
	}
	<-s.done
	if errors.Is(s.err, ErrClientGone) {
		return nil
	}
	return s.err
}

// Start writes retry:, a comment and the starting cursor, then replays what the
// client missed, on the calling goroutine (it needs a deep stack for engine
// reads; a server runs it on the request's goroutine). Live events published
// meanwhile wait in the queue. When it fails, the stream has ended.
func (s *Subscriber) Start(w Writer) error {
	s.mu.Lock()
	s.w = w
	s.tw, _ = w.(TryWriter)
	s.mu.Unlock()
	err := s.open(w)
	switch {
	case errors.Is(err, errEnding):
		_, why := s.settle(s.takeDue())
		s.finish(why)
	case err != nil:
		s.finish(err)
	}
	return err
}

// Live hands the started stream over to whoever has work for it: it arms the
// heartbeat and lifetime timers, writes what queued up during Start and returns.
func (s *Subscriber) Live() {
	h := s.hub
	s.lastWrite.Store(time.Now().UnixNano())
	s.mu.Lock()
	if !s.ended {
		s.beat = time.AfterFunc(h.opt.Heartbeat, s.onBeat)
		if h.opt.MaxLifetime > 0 {
			s.life = time.AfterFunc(jitter(h.opt.MaxLifetime, 0.1), func() { s.post(dueLifetime, false) })
		}
	}
	s.mu.Unlock()
	s.run()
}

// Stop ends the stream without a goodbye: its client is gone. It does not wait.
func (s *Subscriber) Stop() {
	s.cancel() // abort an engine read in progress
	s.post(dueStop, true)
}

// End ends the stream with a retry: hint, as its maximum lifetime does (a server
// calls it when the credential that opened the stream expires). It does not wait.
func (s *Subscriber) End() { s.post(dueLifetime, true) }

// Close releases a subscriber that was never started.
func (s *Subscriber) Close() { s.finish(nil) }

// post records work and runs the stream if nobody owns it: on a writer
// goroutine (Hub.runSoon) when spawn is set, else on the caller's.
func (s *Subscriber) post(d due, spawn bool) {
	s.mu.Lock()
	s.due |= d
	claimed := s.claimLocked()
	s.mu.Unlock()
	if claimed {
		if spawn {
			s.hub.runSoon(s)
		} else {
			s.run()
		}
	}
}

// claimLocked makes the caller the owner if the stream has none.
func (s *Subscriber) claimLocked() bool {
	if s.owned || s.ended {
		return false
	}
	s.owned = true
	return true
}

// onBeat runs on the heartbeat timer's goroutine. A stream that wrote recently
// needs no heartbeat yet: the timer is re-armed for the rest of the interval.
func (s *Subscriber) onBeat() {
	every := s.hub.opt.Heartbeat
	since := time.Duration(time.Now().UnixNano() - s.lastWrite.Load())
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	if since < every*9/10 {
		s.beat.Reset(every - since)
		s.mu.Unlock()
		return
	}
	s.beat.Reset(every)
	s.due |= dueBeat
	claimed := s.claimLocked()
	s.mu.Unlock()
	if claimed {
		s.run()
	}
}

// push queues m for topic index i; it never blocks. It reports whether the
// caller claimed the stream and must have it run (Hub.runBatch). A subscriber
// whose queue is full is marked overflowed and its queue dropped: it will be cut
// off and catch up from history when it reconnects.
func (s *Subscriber) push(i int, m *message) (claimed bool) {
	s.mu.Lock()
	if s.overflow || s.ended {
		s.mu.Unlock()
		return false
	}
	if len(s.queue) >= s.hub.opt.QueueSize {
		s.overflow = true
		s.queue = nil
		w := s.w
		claimed := s.claimLocked()
		s.mu.Unlock()
		s.hub.stats.droppedSlow.Add(1)
		// A client this far behind is likely not reading at all: end a write
		// blocked on it now rather than after the write timeout.
		s.cut.Store(true)
		if w != nil {
			_ = w.SetWriteDeadline(time.Now())
		}
		return claimed
	}
	s.queue = append(s.queue, queued{i, m})
	claimed = s.claimLocked()
	s.mu.Unlock()
	return claimed
}

// run is the owner's loop: it writes everything due, then gives ownership up.
func (s *Subscriber) run() {
	for {
		q, over, d, idle := s.take()
		if idle {
			return
		}
		end, err := s.work(q, over, d)
		s.recycle(q)
		if end {
			s.finish(err)
			return
		}
	}
}

// runTry is run for a share of a fan-out (Hub.runBatch): it writes the queued
// events without waiting. Anything else due, a socket that cannot take all of
// a write, a hole to fill from history or a failed write hands the stream to
// a writer goroutine of its own, with the events not yet handled put back at
// the head of its queue; that writer sends what is pending first.
func (s *Subscriber) runTry() {
	for {
		s.mu.Lock()
		if s.overflow || s.due != 0 {
			s.mu.Unlock()
			s.hub.runSoon(s)
			return
		}
		if len(s.queue) == 0 {
			s.owned = false
			s.mu.Unlock()
			return
		}
		q := s.queue
		s.queue, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		s.try = true
		n, err := s.deliver(q)
		s.try = false
		if err == nil {
			s.recycle(q)
			continue
		}
		if s.broken {
			// Ending it closes the connection, which waits for its
			// reader goroutine: not on a shared goroutine.
			s.werr = err
		}
		clear(q[:n])
		s.mu.Lock()
		s.queue = append(q[n:], s.queue...)
		s.mu.Unlock()
		s.hub.runSoon(s)
		return
	}
}

// take takes the queue and what else is due, or gives ownership up and
// reports idle when there is nothing.
func (s *Subscriber) take() (q []queued, over bool, d due, idle bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		q, s.queue, s.spare = s.queue, s.spare[:0], nil
	}
	over, d = s.overflow, s.due
	s.due = 0
	if q == nil && !over && d == 0 && !s.pending && s.werr == nil {
		s.owned = false
		return nil, false, 0, true
	}
	return q, over, d, false
}

// recycle keeps a small written queue for reuse.
func (s *Subscriber) recycle(q []queued) {
	if q == nil {
		return
	}
	clear(q) // drop message references so their bytes can be freed
	if cap(q) <= 64 {
		s.spare = q[:0] // a burst's large queue is not kept by an idle stream
	}
}

// work writes queued events and whatever else is due. It reports whether the
// stream ends, and why.
func (s *Subscriber) work(q []queued, over bool, d due) (end bool, err error) {
	switch {
	case d&dueStop != 0:
		return true, ErrClientGone
	case over:
		return true, s.fail(ErrSlow)
	case s.werr != nil:
		return true, s.werr // a write for a fan-out's batch failed
	}
	if s.pending {
		if err := s.flush(); err != nil {
			return true, s.fail(err)
		}
	}
	if len(q) > 0 {
		_, err := s.deliver(q)
		switch {
		case errors.Is(err, errEnding):
			d |= s.takeDue()
		case err != nil:
			return true, s.fail(err)
		}
	}
	return s.settle(d)
}

// takeDue takes the work posted since the owner last looked.
func (s *Subscriber) takeDue() due {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.due
	s.due = 0
	return d
}

// settle does due work other than events, and reports whether the stream ends.
func (s *Subscriber) settle(d due) (end bool, err error) {
	h := s.hub
	switch {
	case d&dueStop != 0:
		return true, ErrClientGone
	case d&dueShutdown != 0:
		_ = s.bye(jitter(h.opt.Retry, 1))
		return true, nil
	case d&dueLifetime != 0:
		_ = s.bye(jitter(h.opt.Retry, 0.5))
		return true, nil
	case d&dueBeat != 0:
		s.buf = append(s.buf, ": heartbeat\n"...)
		if err := s.flush(); err != nil {
			return true, err
		}
	}
	return false, nil
}

// finish ends the stream once: timers stop, interest is released, onEnd runs.
func (s *Subscriber) finish(err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.owned = true // nobody may run it any more
	s.queue = nil
	beat, life := s.beat, s.life
	s.mu.Unlock()
	s.cancel()
	if beat != nil {
		beat.Stop()
	}
	if life != nil {
		life.Stop()
	}
	s.hub.unregister(s)
	s.err = err
	if s.onEnd != nil {
		s.onEnd(err)
	}
	close(s.done)
}
