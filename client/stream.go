package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-hub/herald/sse"
)

// errIdle is the cause of a connection dropped by Config.IdleTimeout.
var errIdle = errors.New("client: no data within the idle timeout")

// Stream is a subscription that reconnects until it is closed or fails for
// good. It owns one goroutine, which reads the stream and sends its events.
type Stream struct {
	cfg    Config
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	lastID string
	err    error

	reconnects atomic.Int64

	base time.Duration // the base delay; used only by the goroutine
}

// Dial starts a Stream subscribing with cfg. It does not wait for the first
// connection: follow it with Config.OnState or the events that arrive.
// Cancelling ctx stops the Stream like Close.
func Dial(ctx context.Context, cfg Config) *Stream {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{
		cfg:    cfg,
		events: make(chan Event),
		cancel: cancel,
		done:   make(chan struct{}),
		lastID: cfg.LastEventID,
		base:   cfg.MinBackoff,
	}
	go s.run(ctx)
	return s
}

// Events returns the events in order. The channel is unbuffered: while it is
// not read, the Stream stops reading the connection, so a slow reader slows
// the TCP connection down as a slow client would. It is closed when the
// Stream stops for good.
func (s *Stream) Events() <-chan Event { return s.events }

// LastEventID returns the id to resume from: that of the last event received
// from Events, or a newer one set by the herald.connected event that opens
// every stream (or by an id-only block). While the Stream runs it already
// holds the id of an event being handed over on Events; once Close returns, an
// event that was read but never received is not counted, so resuming from
// LastEventID loses nothing.
func (s *Stream) LastEventID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// Err returns why the Stream stopped, once Events is closed: nil after Close
// or a cancelled context, otherwise the permanent error (often an *HTTPError).
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Reconnects returns how many connection attempts the Stream made after its
// first one.
func (s *Stream) Reconnects() int { return int(s.reconnects.Load()) }

// Close stops the Stream and waits for its goroutine to end. It returns Err
// and may be called more than once.
func (s *Stream) Close() error {
	s.cancel()
	<-s.done
	return s.Err()
}

func (s *Stream) run(ctx context.Context) {
	defer close(s.done)
	err := s.loop(ctx)
	if ctx.Err() != nil {
		err = nil
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.state(Stopped, err)
	close(s.events)
}

// loop connects until ctx ends or an error is permanent.
func (s *Stream) loop(ctx context.Context) error {
	if err := sse.CheckField(s.cfg.LastEventID); err != nil {
		return fmt.Errorf("client: LastEventID: %w", err)
	}
	failures := 0
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			s.reconnects.Add(1)
		}
		s.state(Connecting, nil)
		connected, wait, err := s.connect(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if permanent(err) {
			return err
		}
		s.state(Disconnected, err)
		if connected {
			failures = 0
		} else {
			failures++
		}
		t := time.NewTimer(delay(s.base, s.cfg.MaxBackoff, failures, wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// permanent reports whether err must stop the Stream rather than be retried.
func permanent(err error) bool {
	var herr *HTTPError
	if errors.As(err, &herr) {
		return !herr.Temporary()
	}
	// An event over the decoder's limit would come back on every reconnect.
	return errors.Is(err, sse.ErrTooLarge) || errors.Is(err, errRequest)
}

// errRequest marks a request that cannot be made, now or on any retry.
var errRequest = errors.New("client: cannot make the request")

// connect makes one connection and reads it to its end. It reports whether
// the server answered with an event stream, and the delay a 429 or 503 asked
// for. The error is why the connection ended: io.EOF when the server closed it.
func (s *Stream) connect(ctx context.Context) (connected bool, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return false, 0, fmt.Errorf("%w: %w", errRequest, err)
	}
	for k, v := range s.cfg.Header {
		req.Header[k] = append([]string(nil), v...)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if id := s.LastEventID(); id != "" {
		if !validHeaderValue(id) {
			// The decoder never yields CR, LF or NUL, but other control
			// characters would fail every request: stop instead.
			return false, 0, fmt.Errorf("%w: last event ID %q cannot be sent in a header", errRequest, id)
		}
		req.Header.Set("Last-Event-ID", id)
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return false, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, parseRetryAfter(resp, time.Now()), readHTTPError(resp)
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); mt != "text/event-stream" {
		return false, 0, contentTypeError(ct)
	}
	s.state(Connected, nil)

	var body io.Reader = resp.Body
	if d := s.cfg.IdleTimeout; d > 0 {
		t := time.AfterFunc(d, func() { cancel(errIdle) })
		defer t.Stop()
		body = &idleReader{r: resp.Body, t: t, d: d}
	}
	dec := sse.NewDecoder(body)
	for {
		ev, ok, err := dec.NextBlock()
		if d, ok := dec.Retry(); ok {
			s.base = max(d, s.cfg.MinBackoff)
		}
		if err != nil {
			if context.Cause(ctx) == errIdle {
				err = errIdle
			}
			return true, 0, err
		}
		if !ok {
			s.setLastID(dec.LastEventID()) // an id-only block (Herald's opening block before herald.connected)
			continue
		}
		if ev.Type == ConnectedType {
			s.setLastID(ev.ID) // the opening block: a cursor, not an event
			continue
		}
		// Set the id before the hand-over so that a reader of the event sees
		// it in LastEventID; take it back if the event is never taken.
		prev := s.setLastID(ev.ID)
		select {
		case s.events <- ev:
		case <-ctx.Done():
			s.setLastID(prev)
			return true, 0, ctx.Err()
		}
	}
}

// setLastID sets the last event ID and returns the previous one.
func (s *Stream) setLastID(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.lastID
	s.lastID = id
	return prev
}

func (s *Stream) state(st State, err error) {
	if s.cfg.OnState != nil {
		s.cfg.OnState(st, err)
	}
}

// idleReader pushes back the idle timer whenever data arrives.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}

// validHeaderValue reports whether net/http accepts v as a header value: no
// control characters other than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
