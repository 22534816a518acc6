package server

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/herald-hub/herald/internal/hub"
)

// serveStream sends the response headers and streams sub: through net/http
// until it ends (HTTP/2), or, for HTTP/1.x, on the socket taken over from
// net/http once the headers are out, returning as soon as the stream's start
// (history replay included) is written.
//
// Taking the socket over releases net/http's per-connection goroutine and its
// read and write buffers (about 10 KiB): an idle stream then keeps only the
// socket, its hub state and a small reader goroutine that notices the client
// leaving. The hub runs its writes (see hub.Subscriber); Hub.Shutdown ends every
// stream and waits for it.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, sub *hub.Subscriber, scope streamScope) error {
	handedOff := false
	defer func() {
		if !handedOff {
			scope.release()
		}
	}()
	if r.ProtoMajor == 1 {
		// The stream ends by closing its connection; a client must not
		// put it back in its keep-alive pool and send the next request
		// on a socket that is about to close.
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		// Headers first, through net/http, so everything set on w (CORS, the
		// chunked framing decision) is written by it; then take the socket.
		if err := rc.Flush(); err != nil {
			sub.Close()
			return err
		}
		conn, brw, err := rc.Hijack()
		if err == nil {
			// Anything the client sent after its request is not ours to read.
			_ = brw
			handedOff = true
			s.serveTakenOver(sub, conn, r.ProtoAtLeast(1, 1), scope)
			return nil
		}
		if !errors.Is(err, http.ErrNotSupported) {
			sub.Close()
			return err
		}
	}
	_ = rc.SetReadDeadline(time.Time{}) // a stream outlives the server's read timeout
	ctx, cancel := scope.bound(r.Context())
	defer cancel()
	return sub.Serve(ctx, streamWriter{w, rc})
}

// serveTakenOver writes the start of sub's stream (history replay included) on
// the calling goroutine and returns; from then on the stream has no goroutine
// while it is idle (see hub.Subscriber). A reader goroutine, with a buffer of a
// few bytes, notices the client leaving; the stream's end closes the socket,
// which ends the reader.
//
// A token's expiry ends the stream with a retry: hint, so the client comes
// back with a fresh token and resumes.
func (s *Server) serveTakenOver(sub *hub.Subscriber, conn net.Conn, chunked bool, scope streamScope) {
	_ = conn.SetDeadline(time.Time{})
	var w hub.Writer = rawWriter{conn}
	if chunked {
		w = newChunkedWriter(conn)
	}
	var expiry *time.Timer
	if !scope.expires.IsZero() {
		expiry = time.AfterFunc(time.Until(scope.expires), sub.End)
	}
	sub.OnEnd(func(err error) {
		if expiry != nil {
			expiry.Stop()
		}
		if cw, ok := w.(interface{ end() }); ok && !errors.Is(err, hub.ErrClientGone) {
			cw.end()
		}
		_ = conn.Close()
		scope.release()
		if err != nil && !errors.Is(err, hub.ErrSlow) && !errors.Is(err, hub.ErrClientGone) {
			s.log.Debug("stream ended", "err", err)
		}
	})
	go func() {
		// A client never sends anything on an event stream: a read returns only
		// when it goes (EOF, reset) or when the stream's end closes conn.
		var b [16]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				break
			}
		}
		sub.Stop()
	}()
	if sub.Start(w) == nil {
		sub.Live()
	}
}

// rawWriter is an HTTP/1.0 body: bytes until the connection closes.
type rawWriter struct{ conn net.Conn }

func (w rawWriter) Write(p []byte) (int, error)        { return w.conn.Write(p) }
func (w rawWriter) Flush() error                       { return nil }
func (w rawWriter) SetWriteDeadline(t time.Time) error { return w.conn.SetWriteDeadline(t) }

// streamWriter serves a stream through net/http (HTTP/2, or takeover disabled).
type streamWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (sw streamWriter) Flush() error                       { return sw.rc.Flush() }
func (sw streamWriter) SetWriteDeadline(t time.Time) error { return sw.rc.SetWriteDeadline(t) }
