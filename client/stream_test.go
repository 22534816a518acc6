package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-hub/herald/sse"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if heraldTmp != "" {
			os.RemoveAll(heraldTmp)
		}
	}))
}

// server is an httptest server whose handler sees the connection number,
// starting at 0, and the Last-Event-ID it was sent.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	ids   []string      // Last-Event-ID of each request
	times []time.Time   // arrival of each request
	stop  chan struct{} // closed at cleanup, to release handlers that hang
}

func newServer(t *testing.T, h func(s *server, n int, w http.ResponseWriter, r *http.Request)) *server {
	s := &server{stop: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := len(s.ids)
		s.ids = append(s.ids, r.Header.Get("Last-Event-ID"))
		s.times = append(s.times, time.Now())
		s.mu.Unlock()
		h(s, n, w, r)
	}))
	t.Cleanup(func() {
		close(s.stop)
		s.Close()
	})
	return s
}

func (s *server) requests() ([]string, []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...), append([]time.Time(nil), s.times...)
}

// hang keeps a stream open until the client leaves or the test ends.
func (s *server) hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.stop:
	}
}

func stream(w http.ResponseWriter, frames ...[]byte) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	for _, f := range frames {
		w.Write(f)
	}
	w.(http.Flusher).Flush()
}

// hello is what Herald writes on connect.
func hello(retry time.Duration, cursor string) []byte {
	b := sse.AppendRetry(nil, retry)
	b = sse.AppendComment(b, "herald")
	b = sse.AppendID(b, cursor)
	b = sse.AppendType(b, ConnectedType)
	b = sse.AppendData(b, []byte("{}"))
	return append(b, '\n')
}

func event(id, data string) []byte {
	b := sse.AppendID(nil, id)
	b = sse.AppendType(b, "note")
	b = sse.AppendField(b, "topic", "users/42")
	b = sse.AppendData(b, []byte(data))
	return append(b, '\n')
}

func dial(t *testing.T, srv *server, cfg Config) *Stream {
	t.Helper()
	cfg.URL = srv.URL + "/v1/events?topic=users/42"
	cfg.HTTPClient = srv.Client()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Millisecond
	}
	s := Dial(context.Background(), cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

func next(t *testing.T, s *Stream) Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatalf("stream stopped: %v", s.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

func waitClosed(t *testing.T, s *Stream) {
	t.Helper()
	for {
		select {
		case _, ok := <-s.Events():
			if !ok {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("stream did not stop")
		}
	}
}

func TestReconnectResumes(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			// Closed after two events, as a slow client or a shutdown would be.
			stream(w, hello(10*time.Millisecond, "c0"), event("c1", "a"), event("c2", "b"))
		default:
			stream(w, hello(10*time.Millisecond, "c2"), event("c3", "c"))
			srv.hang(r)
		}
	})
	s := dial(t, srv, Config{LastEventID: "start"})
	for _, want := range []Event{
		{ID: "c1", Type: "note", Topic: "users/42", Data: "a"},
		{ID: "c2", Type: "note", Topic: "users/42", Data: "b"},
		{ID: "c3", Type: "note", Topic: "users/42", Data: "c"},
	} {
		if got := next(t, s); got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	ids, _ := srv.requests()
	if fmt.Sprint(ids) != "[start c2]" {
		t.Fatalf("Last-Event-ID of each request: %q", ids)
	}
	if s.Reconnects() != 1 || s.LastEventID() != "c3" {
		t.Fatalf("Reconnects %d, LastEventID %q", s.Reconnects(), s.LastEventID())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, s)
	if s.Err() != nil {
		t.Fatalf("Err after Close: %v", s.Err())
	}
}

func TestOpeningBlockUpdatesLastEventID(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			// The starting cursor, then a drop before any event.
			stream(w, hello(time.Millisecond, "cursor-1"))
			time.Sleep(50 * time.Millisecond)
			return
		}
		stream(w, hello(time.Millisecond, "cursor-1"), event("cursor-2", "x"))
		srv.hang(r)
	})
	var states []State
	var mu sync.Mutex
	s := dial(t, srv, Config{OnState: func(st State, err error) {
		mu.Lock()
		states = append(states, st)
		mu.Unlock()
	}})
	deadline := time.Now().Add(5 * time.Second)
	for s.LastEventID() != "cursor-1" {
		if time.Now().After(deadline) {
			t.Fatalf("LastEventID %q, want cursor-1 before any event", s.LastEventID())
		}
		time.Sleep(time.Millisecond)
	}
	if ev := next(t, s); ev.ID != "cursor-2" {
		t.Fatalf("got %+v", ev)
	}
	ids, _ := srv.requests()
	if fmt.Sprint(ids) != "[ cursor-1]" {
		t.Fatalf("Last-Event-ID of each request: %q", ids)
	}
	s.Close()
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(states); got != "[connecting connected disconnected connecting connected stopped]" {
		t.Fatalf("states %s", got)
	}
}

// Herald before the herald.connected event opened streams with an id-only
// block; it sets the cursor as well.
func TestIDOnlyBlockUpdatesLastEventID(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			stream(w, []byte("retry: 1\n: herald\nid: cursor-1\n\n"))
			time.Sleep(50 * time.Millisecond)
			return
		}
		stream(w, event("cursor-2", "x"))
		srv.hang(r)
	})
	s := dial(t, srv, Config{})
	if ev := next(t, s); ev.ID != "cursor-2" {
		t.Fatalf("got %+v", ev)
	}
	ids, _ := srv.requests()
	if fmt.Sprint(ids) != "[ cursor-1]" {
		t.Fatalf("Last-Event-ID of each request: %q", ids)
	}
}

func TestHonoursRetry(t *testing.T) {
	const retry = 300 * time.Millisecond
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			stream(w, hello(time.Millisecond, "c0"), event("c1", "x"), sse.AppendRetry(nil, retry), []byte("\n"))
			return
		}
		stream(w, hello(time.Millisecond, "c1"))
		srv.hang(r)
	})
	var closedAt time.Time
	var mu sync.Mutex
	s := dial(t, srv, Config{OnState: func(st State, err error) {
		if st == Disconnected {
			mu.Lock()
			closedAt = time.Now()
			mu.Unlock()
		}
	}})
	next(t, s)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, times := srv.requests()
		if len(times) == 2 {
			mu.Lock()
			waited := times[1].Sub(closedAt)
			mu.Unlock()
			if waited < retry || waited > retry*3/2+time.Second {
				t.Fatalf("reconnected after %v, want %v plus jitter", waited, retry)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reconnect")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBackoffOn503(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		if n < 4 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"unavailable","message":"engine down"}}`))
			return
		}
		stream(w, hello(time.Millisecond, "c0"), event("c1", "x"))
		srv.hang(r)
	})
	var mu sync.Mutex
	var causes []error
	s := dial(t, srv, Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		OnState: func(st State, err error) {
			if st == Disconnected {
				mu.Lock()
				causes = append(causes, err)
				mu.Unlock()
			}
		}})
	if ev := next(t, s); ev.Data != "x" {
		t.Fatalf("got %+v", ev)
	}
	if s.Reconnects() != 4 {
		t.Fatalf("Reconnects %d, want 4", s.Reconnects())
	}
	mu.Lock()
	defer mu.Unlock()
	var herr *HTTPError
	if len(causes) != 4 || !errors.As(causes[0], &herr) || *herr != (HTTPError{503, "unavailable", "engine down"}) {
		t.Fatalf("causes %v", causes)
	}
}

func TestRetryAfter(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		stream(w, hello(time.Millisecond, "c0"))
		srv.hang(r)
	})
	s := dial(t, srv, Config{})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, times := srv.requests(); len(times) == 2 {
			if d := times[1].Sub(times[0]); d < time.Second {
				t.Fatalf("retried after %v, want Retry-After 1s", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no retry")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Close()
}

func TestPermanentErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
		want   HTTPError
	}{
		{"401 json", 401, "application/json", `{"error":{"code":"unauthorized","message":"token expired"}}`,
			HTTPError{401, "unauthorized", "token expired"}},
		{"403", 403, "application/json", `{"error":{"code":"forbidden","message":"topic users/1"}}`,
			HTTPError{403, "forbidden", "topic users/1"}},
		{"404 text", 404, "text/plain", "404 page not found\n", HTTPError{404, "", "404 page not found"}},
		{"400", 400, "application/json", `{"error":{"code":"bad_topic","message":"bad"}}`, HTTPError{400, "bad_topic", "bad"}},
		{"413", 413, "", "", HTTPError{413, "", ""}},
		{"200 html", 200, "text/html", "<html>login</html>", HTTPError{200, "", `Content-Type "text/html" is not text/event-stream`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
				if tt.ctype != "" {
					w.Header().Set("Content-Type", tt.ctype)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			})
			s := dial(t, srv, Config{})
			waitClosed(t, s)
			var herr *HTTPError
			if !errors.As(s.Err(), &herr) || *herr != tt.want {
				t.Fatalf("Err = %v, want %+v", s.Err(), tt.want)
			}
			if s.Reconnects() != 0 {
				t.Fatalf("retried %d times", s.Reconnects())
			}
			if err := s.Close(); err != s.Err() {
				t.Fatalf("Close = %v", err)
			}
		})
	}
}

// An id a server sent that net/http cannot put in a header stops the Stream
// instead of failing every reconnect.
func TestUnsendableLastEventID(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		stream(w, hello(time.Millisecond, "bad\x01id"))
	})
	s := dial(t, srv, Config{})
	waitClosed(t, s)
	if !errors.Is(s.Err(), errRequest) || s.Reconnects() != 1 {
		t.Fatalf("Err = %v after %d reconnects", s.Err(), s.Reconnects())
	}
}

func TestInvalidLastEventID(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {})
	s := dial(t, srv, Config{LastEventID: "1\r\nX-Evil: 1"})
	waitClosed(t, s)
	if !errors.Is(s.Err(), sse.ErrInvalidField) {
		t.Fatalf("Err = %v", s.Err())
	}
	if ids, _ := srv.requests(); len(ids) != 0 {
		t.Fatalf("made %d requests", len(ids))
	}
}

// Close ends the goroutine while it waits for data, while it waits for the
// reader of Events (then the undelivered event does not count for
// LastEventID), and while it waits to reconnect; goleak checks nothing stays.
func TestClose(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("case") {
		case "read":
			stream(w, hello(time.Millisecond, "c0"))
		case "deliver":
			stream(w, hello(time.Millisecond, "c0"), event("c1", "x"), event("c2", "y"))
		case "backoff":
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		srv.hang(r)
	})
	for _, c := range []string{"read", "deliver", "backoff"} {
		t.Run(c, func(t *testing.T) {
			s := Dial(context.Background(), Config{
				URL: srv.URL + "?case=" + c, HTTPClient: srv.Client(),
				MinBackoff: time.Hour,
			})
			if c == "deliver" {
				next(t, s)
			}
			time.Sleep(50 * time.Millisecond)
			done := make(chan error)
			go func() { done <- s.Close() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Close = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return")
			}
			if c == "deliver" && s.LastEventID() != "c1" {
				t.Fatalf("LastEventID %q, want c1, the last delivered", s.LastEventID())
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close = %v", err)
			}
			waitClosed(t, s)
		})
	}
}

func TestContextCancel(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		stream(w, hello(time.Millisecond, "c0"))
		srv.hang(r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	s := Dial(ctx, Config{URL: srv.URL, HTTPClient: srv.Client()})
	cancel()
	waitClosed(t, s)
	if s.Err() != nil {
		t.Fatalf("Err = %v", s.Err())
	}
	s.Close()
}

func TestIdleTimeout(t *testing.T) {
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		stream(w, hello(time.Millisecond, fmt.Sprint("c", n)))
		srv.hang(r) // silent: no heartbeat
	})
	var mu sync.Mutex
	var cause error
	s := dial(t, srv, Config{IdleTimeout: 50 * time.Millisecond, OnState: func(st State, err error) {
		if st == Disconnected {
			mu.Lock()
			cause = err
			mu.Unlock()
		}
	}})
	deadline := time.Now().Add(5 * time.Second)
	for s.Reconnects() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reconnect after idle timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(cause, errIdle) {
		t.Fatalf("cause %v", cause)
	}
}

// An unread Events channel stops the Stream reading, so the server's writes
// block once the socket buffers are full: a slow client, as tests need one.
func TestBackpressure(t *testing.T) {
	blocked := make(chan int, 1)
	srv := newServer(t, func(srv *server, n int, w http.ResponseWriter, r *http.Request) {
		stream(w, hello(time.Millisecond, "c0"))
		rc := http.NewResponseController(w)
		ev := event("c", string(make([]byte, 1024)))
		for i := 0; ; i++ {
			rc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := w.Write(ev); err != nil {
				blocked <- i
				return
			}
			if rc.Flush() != nil {
				blocked <- i
				return
			}
		}
	})
	s := dial(t, srv, Config{MinBackoff: time.Hour})
	select {
	case n := <-blocked:
		t.Logf("server blocked after %d events of 1 KiB", n)
	case <-time.After(10 * time.Second):
		t.Fatal("server writes never blocked")
	}
	s.Close()
}
