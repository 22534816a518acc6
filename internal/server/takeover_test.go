package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine/local"
	"github.com/herald-hub/herald/internal/hub"
)

// waitFor polls cond until it holds or fails the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A stream taken over from net/http still notices at once when its client goes,
// not at the next heartbeat.
func TestClientLeavingIsNoticedAtOnce(t *testing.T) {
	n := newTestNode(t, nodeOptions{hub: hub.Options{Heartbeat: time.Hour}})
	conn, err := net.Dial("tcp", n.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /v1/events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, 5*time.Second, "stream open", func() bool { return n.hub.Stats().Connections == 1 })
	conn.Close()
	waitFor(t, 2*time.Second, "stream closed after the client left", func() bool { return n.hub.Stats().Connections == 0 })
}

// HTTP/1.1 streams are chunked: a standard client reads events and, when the node
// shuts down, the retry: hint and a clean end of the body.
func TestTakenOverStreamIsValidChunkedHTTP(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	resp, err := http.Get(n.eventsURL("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	// The node closes the socket when the stream ends, so the client must
	// not pool it for its next request (which would fail as "server closed
	// idle connection").
	if !resp.Close {
		t.Fatal("stream response lacks Connection: close")
	}
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("first line %q", line)
	}
	n.publish("a", "t", "hello")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { <-ctx.Done(); resp.Body.Close() }()
	var sawEvent bool
	for !sawEvent {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		sawEvent = line == "data: hello\n"
	}
	if err := n.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br) // a clean end of the chunked body gives no error
	if err != nil {
		t.Fatalf("body did not end cleanly: %v (read %q)", err, rest)
	}
	if !strings.Contains(string(rest), "retry: ") {
		t.Fatalf("no retry: hint before the end: %q", rest)
	}
}

// An HTTP/1.0 client gets the stream as a body that lasts until the connection
// closes, without chunk framing it would not understand.
func TestHTTP10StreamHasNoChunkFraming(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	conn, err := net.Dial("tcp", n.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/events?topic=a HTTP/1.0\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) != 0 {
		t.Fatalf("transfer encoding %v for HTTP/1.0", resp.TransferEncoding)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("first body line %q, %v", line, err)
	}
}

// HTTP/2 streams cannot be taken over; they are served through net/http and
// deliver the same events.
func TestHTTP2StreamDelivers(t *testing.T) {
	eng, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(eng, hub.Options{})
	srv := httptest.NewUnstartedServer(New(h, Config{PublishKeys: []string{testKey}}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	n := &testNode{t: t, eng: eng, hub: h, srv: srv}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
		_ = eng.Close()
	})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	var proto string
	s := client.Dial(context.Background(), client.Config{
		URL: n.eventsURL("a"),
		HTTPClient: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := tr.RoundTrip(r)
			if err == nil {
				proto = resp.Proto
			}
			return resp, err
		})},
	})
	defer s.Close()
	waitFor(t, 5*time.Second, "stream open", func() bool { return h.Stats().Connections == 1 })
	n.publish("a", "t", "over h2")
	if ev := next(t, s, 5*time.Second); ev.Data != "over h2" {
		t.Fatalf("got %q", ev.Data)
	}
	if proto != "HTTP/2.0" {
		t.Fatalf("stream used %s, want HTTP/2.0", proto)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// An idle taken-over stream keeps one goroutine (the reader that notices its
// client leaving), not one per stream for writing nor net/http's.
func TestIdleStreamsHoldOneGoroutineEach(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	const streams = 200
	before := runtime.NumGoroutine()
	conns := make([]net.Conn, streams)
	for i := range conns {
		c, err := net.Dial("tcp", n.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /v1/events?topic=t%d HTTP/1.1\r\nHost: x\r\n\r\n", i%7)
		conns[i] = c
	}
	waitFor(t, 10*time.Second, "streams open", func() bool { return n.hub.Stats().Connections == streams })
	// Each stream delivers an event, then goes idle again.
	for i := range 7 {
		n.publish(fmt.Sprintf("t%d", i), "t", "x")
	}
	var extra int
	waitFor(t, 5*time.Second, "goroutines settle", func() bool {
		extra = runtime.NumGoroutine() - before
		return extra <= streams+streams/10
	})
	t.Logf("%d goroutines for %d idle streams", extra, streams)
}
