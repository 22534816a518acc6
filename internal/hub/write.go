package hub

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/sse"
)

// What a stream writes. Everything here runs on the stream's owner (see
// Subscriber), so it uses the write side without locking.

// open writes retry:, a comment and the starting cursor as a herald.connected
// event (so that a client's last event id is set before any event, and a client
// that drops at once still resumes from where it connected), announces
// unreadable cursors, then replays history after the cursor, topic by topic.
func (s *Subscriber) open(w Writer) error {
	h := s.hub
	s.buf = sse.AppendRetry(s.buf[:0], h.opt.Retry)
	s.buf = sse.AppendComment(s.buf, "herald")
	s.buf = s.appendID(s.buf)
	s.buf = sse.AppendType(s.buf, ConnectedType)
	s.buf = sse.AppendData(s.buf, []byte("{}"))
	s.buf = append(s.buf, '\n')
	if len(s.gaps) > 0 {
		s.buf = s.appendGap(s.buf, s.gaps)
	}
	if err := s.flush(); err != nil {
		return err
	}
	for i := range s.topics {
		if err := s.fill(i, 0, false); err != nil {
			if errors.Is(err, errEnding) {
				return err // Start ends the stream as what is due asks
			}
			return s.fail(err)
		}
	}
	return nil
}

// deliver writes queued live events in one write and one flush. Events at or
// before the cursor were already sent by replay; a hole before an event is filled
// from history first, so the stream stays gap-free even if fan-out lost something.
// It returns how many events of q it has handled: put in the buffer (and taken
// by the writer, when a flush stopped with errWouldBlock) or skipped.
//
// For a fan-out's batch (s.try) a hole is not filled there: an engine read would
// hold up every stream after this one. deliver stops with errHandOff, and the
// stream's own writer goroutine fills it.
func (s *Subscriber) deliver(q []queued) (handled int, err error) {
	for i, e := range q {
		cur := s.pos[e.topic]
		p := e.m.pos
		switch {
		case e.m.lost:
			if s.try {
				return i, errHandOff // an engine read: on the stream's own writer
			}
			s.hub.stats.rereads.Add(1)
			if err := s.fill(e.topic, 0, true); err != nil {
				return i, err
			}
		case p.Epoch == cur.Epoch && p.Offset <= cur.Offset:
			continue // already sent
		case p.Epoch == cur.Epoch && e.m.prev <= cur.Offset:
			s.pos[e.topic] = p
			s.checks[e.topic] = e.m.check
			if len(s.pos) == 1 {
				s.buf = append(s.buf, e.m.id...) // the cursor is p alone
			} else {
				s.buf = s.appendID(s.buf)
			}
			s.buf = append(s.buf, e.m.body...)
			s.hub.stats.delivered.Add(1)
			if len(s.buf) >= flushAt {
				if err := s.flush(); err != nil {
					return i + 1, err
				}
			}
		case s.try:
			return i, errHandOff
		default:
			s.hub.stats.holes.Add(1)
			if err := s.fill(e.topic, p.Offset, true); err != nil {
				return i, err
			}
			if s.pos[e.topic].Epoch != p.Epoch || s.pos[e.topic].Offset < p.Offset {
				s.hub.historyBehind(s.topics[e.topic], s.pos[e.topic], p)
				return i, fmt.Errorf("history of %q does not reach live event %s", s.topics[e.topic], p)
			}
		}
	}
	return len(q), s.flush()
}

// flushAt bounds the write buffer: a queue of large events goes out in several
// writes rather than in one buffer of QueueSize × MaxEventSize.
const flushAt = 64 << 10

// errEnding interrupts a replay: the stream is to end (shutdown, lifetime, the
// client left) and the rest of history would be sent for nothing.
var errEnding = errors.New("hub: stream ending during replay")

// fill sends events of topic i from history after the cursor, until history is
// exhausted or, when upTo > 0, the cursor reaches offset upTo of the live epoch.
// A gap in history is announced with a herald.gap event before what remains.
// recovery says the events are what live delivery missed, not a replay.
func (s *Subscriber) fill(i int, upTo uint64, recovery bool) error {
	h := s.hub
	for {
		if s.ending() {
			return errEnding
		}
		evs, err := h.eng.Read(s.ctx, s.topics[i], s.pos[i], h.opt.ReplayBatch)
		var gap *engine.GapError
		if errors.As(err, &gap) {
			s.pos[i], s.checks[i] = gap.Resume, 0 // the event before the oldest retained is gone
			s.buf = s.appendGap(s.buf, s.topics[i:i+1])
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			s.pos[i], s.checks[i] = ev.Pos, EventCheck(ev)
			s.buf = s.appendID(s.buf)
			s.buf = appendEvent(s.buf, ev)
			h.stats.replayed.Add(1)
			h.stats.delivered.Add(1)
			if recovery {
				h.stats.recovered.Add(1)
			}
			if len(s.buf) >= flushAt {
				if err := s.flush(); err != nil {
					return err
				}
			}
		}
		if err := s.flush(); err != nil {
			return err
		}
		if len(evs) < h.opt.ReplayBatch || (upTo > 0 && s.pos[i].Offset >= upTo) {
			return nil
		}
	}
}

// ending reports whether work that ends the stream is waiting for the owner.
func (s *Subscriber) ending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.due&(dueShutdown|dueLifetime|dueStop) != 0
}

func (s *Subscriber) appendID(b []byte) []byte {
	b = append(b, "id: "...)
	b = AppendCursor(b, s.hashes, s.pos, s.checks)
	return append(b, '\n')
}

// appendGap writes a herald.gap event naming topics, carrying the cursor from
// which retained history resumes.
func (s *Subscriber) appendGap(b []byte, topics []string) []byte {
	s.hub.stats.gaps.Add(1)
	b = s.appendID(b)
	b = sse.AppendType(b, GapType)
	b = sse.AppendData(b, []byte(`{"topics":["`+strings.Join(topics, `","`)+`"]}`))
	return append(b, '\n')
}

// errWouldBlock stops a write for a fan-out's batch (Subscriber.try): the
// writer sent part of it and keeps the rest.
var errWouldBlock = errors.New("hub: connection full")

// errHandOff stops a fan-out's batch from doing work that may wait (reading
// history) on a goroutine shared with other streams.
var errHandOff = errors.New("hub: stream needs its own writer")

// flush writes the buffer, after whatever an earlier TryWrite left pending;
// for a fan-out's batch, without waiting.
func (s *Subscriber) flush() error {
	if len(s.buf) == 0 && !s.pending {
		return nil
	}
	w := s.w
	// Setting a deadline costs a runtime timer update, about a tenth of a small
	// write: refresh it only once half of it has passed. A write therefore
	// times out after between WriteTimeout/2 and WriteTimeout.
	now := time.Now()
	if now.Add(s.hub.opt.WriteTimeout / 2).After(s.deadline) {
		s.deadline = now.Add(s.hub.opt.WriteTimeout)
		_ = w.SetWriteDeadline(s.deadline)
	}
	if s.cut.Load() {
		s.buf = s.buf[:0]
		return ErrSlow
	}
	var err error
	if s.try {
		s.pending, err = s.tw.TryWrite(s.buf)
	} else {
		if len(s.buf) > 0 {
			_, err = w.Write(s.buf)
		}
		if err == nil {
			err = w.Flush()
			s.pending = false
		}
	}
	if err != nil {
		// Part of an event may have gone out: anything written after it
		// would complete it into an event the client dispatches.
		s.broken = true
	}
	s.lastWrite.Store(now.UnixNano())
	if cap(s.buf) > 4<<10 {
		s.buf = nil // do not keep a replay- or burst-sized buffer on an idle stream
	} else {
		s.buf = s.buf[:0]
	}
	if err == nil && s.pending {
		return errWouldBlock
	}
	return err
}

// fail ends the stream with a retry: hint so the client comes back and resumes.
func (s *Subscriber) fail(err error) error {
	s.buf = s.buf[:0]
	_ = s.bye(jitter(s.hub.opt.Retry, 0.5))
	return err
}

// bye tells the client when to come back. It is written even to a client cut off
// as too slow, with a short deadline: if its socket has room, the hint helps. It
// is not written after a failed write, which may have left an event half sent.
func (s *Subscriber) bye(retry time.Duration) error {
	if s.broken {
		s.buf = s.buf[:0]
		return ErrBroken
	}
	s.buf = sse.AppendRetry(s.buf, retry)
	s.buf = append(s.buf, '\n')
	s.deadline = time.Now().Add(100 * time.Millisecond)
	_ = s.w.SetWriteDeadline(s.deadline)
	_, err := s.w.Write(s.buf)
	if err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		s.broken = true
	}
	s.buf = s.buf[:0]
	return err
}

// jitter returns d plus a random part of up to frac*d, so clients told to
// reconnect at once do not all come back in the same instant.
func jitter(d time.Duration, frac float64) time.Duration {
	return d + time.Duration(rand.Float64()*frac*float64(d))
}
