package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-hub/herald/sse"
)

// A fleet is the bench's N subscribers. Each is a raw HTTP/1.1 connection,
// with no http.Transport (which costs two more goroutines and their buffers
// per connection), dialled by its own goroutine, which reconnects it too. Once
// the response headers are in, the reader delivers its events: on Linux a few
// epoll loops read all the streams (see reader_linux.go), elsewhere each
// stream's goroutine reads it. The load generator leaves the CPU to the server
// it measures.
type fleet struct {
	streams []*stream
	dialer  net.Dialer
	network string
	header  string // extra request header lines, each ending in CRLF
	sem     chan struct{}
	reader  reader

	// HTTP/2 mode: one transport per group of streams, and the requests'
	// extra header.
	h2       []*http.Transport
	h2Header http.Header
	dials    atomic.Int64 // TCP connections dialled for HTTP/2

	rec  atomic.Pointer[recorder]
	gate atomic.Pointer[chan struct{}] // closed while reconnecting is allowed

	// While tracking, a stream whose connection ends notes its first drop,
	// and what its topic owed (owed, accepted events) when it came back.
	tracking atomic.Bool
	owed     func(topic int) int64

	wg sync.WaitGroup
}

// stream is one subscriber. Counters are atomics because the coordinator
// reads them while the stream runs; the rest belongs to the stream's goroutine,
// or to the reader while it reads the stream.
type stream struct {
	topic int
	url   *url.URL
	src   net.IP
	conn  int // HTTP/2: the stream's group, f.h2[conn]

	mu     sync.Mutex
	hangup func() // ends the live connection; nil when there is none

	lastID string
	last   uint64 // highest sequence number seen

	up         atomic.Bool
	distinct   atomic.Int64 // events with a sequence number above every earlier one
	dups       atomic.Int64 // events whose sequence number was not above the last
	received   atomic.Int64 // every event dispatched, payload or not
	gaps       atomic.Int64 // herald.gap events
	connects   atomic.Int64 // successful connections, the first included
	bytes      atomic.Int64 // bytes read from the server, headers included
	lastRecvNS atomic.Int64

	// The first drop while the fleet tracks drops (Unix ns): when the
	// connection ended, when the stream had its response headers again, and
	// when it had every event its topic owed at that moment (owedBack).
	dropNS, backNS, resumedNS atomic.Int64
	owedBack                  atomic.Int64
}

type fleetConfig struct {
	urls        func(topic int) string
	topicOf     func(i int) int
	n           int
	sources     int // loopback source addresses 127.0.0.1..; 0 lets the kernel choose
	concurrency int // connection attempts in flight
	header      http.Header
	http2       string      // H2C or H2TLS: HTTP/2 streams; empty: HTTP/1.1
	perConn     int         // HTTP/2 streams per connection
	tls         *tls.Config // HTTP/2 over TLS
}

func newFleet(cfg fleetConfig) (*fleet, error) {
	f := &fleet{network: "tcp", sem: make(chan struct{}, max(cfg.concurrency, 1))}
	f.dialer.Timeout = 10 * time.Second
	if cfg.sources > 0 {
		// Source addresses are IPv4 loopback: dial IPv4 so "localhost" does not
		// resolve to ::1, which a 127.x source cannot reach.
		f.network = "tcp4"
	}
	var hb strings.Builder
	for k, vs := range cfg.header {
		for _, v := range vs {
			fmt.Fprintf(&hb, "%s: %s\r\n", k, v)
		}
	}
	f.header = hb.String()
	urls := map[int]*url.URL{}
	for i := range cfg.n {
		t := cfg.topicOf(i)
		u := urls[t]
		if u == nil {
			var err error
			if u, err = url.Parse(cfg.urls(t)); err != nil {
				return nil, fmt.Errorf("subscribe URL: %w", err)
			}
			if want := map[string]string{"": "http", H2C: "http", H2TLS: "https"}[cfg.http2]; u.Scheme != want {
				return nil, fmt.Errorf("subscribe URL %q: want %s:// for HTTP mode %q", u, want, cfg.http2)
			}
			urls[t] = u
		}
		s := &stream{topic: t, url: u, conn: i / max(cfg.perConn, 1)}
		if cfg.sources > 0 {
			s.src = net.IPv4(127, 0, 0, byte(1+i%min(cfg.sources, 254)))
		}
		f.streams = append(f.streams, s)
	}
	if cfg.http2 != "" {
		src := func(g int) net.IP {
			if cfg.sources <= 0 {
				return nil
			}
			return net.IPv4(127, 0, 0, byte(1+g%min(cfg.sources, 254)))
		}
		f.h2 = newH2Transports(cfg.http2, cfg.n, max(cfg.perConn, 1), cfg.tls, f.network, src, func() { f.dials.Add(1) })
		f.h2Header = cfg.header
	}
	open := make(chan struct{})
	close(open)
	f.gate.Store(&open)
	var err error
	if f.reader, err = newReader(); err != nil {
		return nil, fmt.Errorf("stream reader: %w", err)
	}
	return f, nil
}

// connectResult reports a stream's first connection.
type connectResult struct {
	took time.Duration
	err  error
}

// start runs every stream until ctx ends; each reports its first connection
// (or its failure after three attempts) on results, which must hold N.
func (f *fleet) start(ctx context.Context, results chan<- connectResult) {
	for _, s := range f.streams {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.run(ctx, s, results)
		}()
	}
}

// wait returns once every stream's goroutine has ended, and stops the
// reader.
func (f *fleet) wait() {
	f.wg.Wait()
	f.reader.close()
	f.closeH2()
}

// run connects s and reads it, reconnecting with its last event id like a
// browser would, until ctx ends. It reports the first connection on results,
// or the error after three failed attempts, exactly once.
func (f *fleet) run(ctx context.Context, s *stream, results chan<- connectResult) {
	retry := time.Second
	reported := false
	report := func(r connectResult) {
		if !reported {
			reported = true
			results <- r
		}
	}
	failures := 0
	for {
		up, err := f.connect(ctx, s, &retry, func(took time.Duration) { report(connectResult{took: took}) })
		if ctx.Err() != nil {
			report(connectResult{err: ctx.Err()})
			return
		}
		if up {
			failures = 0
		} else {
			failures++
			if failures == 3 {
				report(connectResult{err: err})
			}
			if failures == 10 {
				return // refused for good; what it misses counts as lost
			}
		}
		gate := *f.gate.Load()
		select {
		case <-gate:
		default:
			// A storm: every stream comes back the moment the gate opens.
			select {
			case <-gate:
				continue
			case <-ctx.Done():
				return
			}
		}
		d := retry/2 + rand.N(retry)
		if !up {
			d = time.Duration(failures) * 200 * time.Millisecond
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// connect makes one connection and has the reader read it until it ends. It
// calls onUp with the time to the response headers once the server answers
// with a stream, and reports whether it did.
func (f *fleet) connect(ctx context.Context, s *stream, retry *time.Duration, onUp func(time.Duration)) (up bool, err error) {
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	released := false
	release := func() {
		if !released {
			released = true
			<-f.sem
		}
	}
	defer release()
	if f.h2 != nil {
		return f.connectH2(ctx, s, retry, onUp, release)
	}
	start := time.Now()
	d := f.dialer
	if s.src != nil {
		d.LocalAddr = &net.TCPAddr{IP: s.src}
	}
	nc, err := d.DialContext(ctx, f.network, hostPort(s.url))
	if err != nil {
		return false, err
	}
	defer nc.Close()
	// Until the reader takes the stream over, the end of ctx and a drop
	// close the connection.
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	s.setHangup(func() { nc.Close() })
	defer s.setHangup(nil)

	var req strings.Builder
	req.WriteString("GET " + s.url.RequestURI() + " HTTP/1.1\r\nHost: " + s.url.Host +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: herald-bench\r\n")
	req.WriteString(f.header)
	if s.lastID != "" {
		req.WriteString("Last-Event-ID: " + s.lastID + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(nc, req.String()); err != nil {
		return false, err
	}
	br := bufio.NewReaderSize(countingReader{nc, &s.bytes}, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, err
	}
	// The body is never closed: that would read a stream to its end. The
	// connection is closed instead.
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, fmt.Errorf("Content-Type %q is not text/event-stream", resp.Header.Get("Content-Type"))
	}
	if !stop() {
		return false, ctx.Err() // ctx ended: the connection is closed
	}
	release()
	onUp(time.Since(start))
	s.connects.Add(1)
	s.up.Store(true)
	defer s.up.Store(false)
	f.back(s)
	err = f.reader.read(ctx, f, s, &conn{nc: nc, br: br, resp: resp, retry: retry})
	f.dropped(ctx, s)
	return true, err
}

// dropped notes the end of s's connection while the fleet tracks drops,
// unless ctx ended it.
func (f *fleet) dropped(ctx context.Context, s *stream) {
	if ctx.Err() == nil && f.tracking.Load() {
		s.dropNS.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// back notes s's first connection after its first tracked drop, and what
// its topic owed then: s has resumed once it has all of that.
func (f *fleet) back(s *stream) {
	if s.dropNS.Load() == 0 || s.backNS.Load() != 0 {
		return
	}
	now := time.Now().UnixNano()
	owed := f.owed(s.topic)
	s.owedBack.Store(owed)
	s.backNS.Store(now)
	if s.distinct.Load() >= owed {
		s.resumedNS.CompareAndSwap(0, now)
	}
}

// setHangup sets how dropAll ends s's connection.
func (s *stream) setHangup(hangup func()) {
	s.mu.Lock()
	s.hangup = hangup
	s.mu.Unlock()
}

// deliver accounts for one event received by s.
func (f *fleet) deliver(s *stream, ev sse.Event) {
	if ev.Type == "herald.connected" {
		return // the stream's opening block: a cursor, not an event
	}
	now := time.Now()
	s.received.Add(1)
	s.lastRecvNS.Store(now.UnixNano())
	if ev.Type == "herald.gap" {
		s.gaps.Add(1)
		return
	}
	seq, ts, ok := parsePayload(ev.Data)
	if !ok {
		return
	}
	if seq <= s.last {
		s.dups.Add(1)
		return
	}
	s.last = seq
	if d := s.distinct.Add(1); s.backNS.Load() != 0 && d >= s.owedBack.Load() {
		s.resumedNS.CompareAndSwap(0, now.UnixNano())
	}
	if r := f.rec.Load(); r != nil {
		r.record(now, (now.UnixNano()-ts)/1000)
	}
}

// holdReconnects makes streams that drop wait for releaseReconnects.
func (f *fleet) holdReconnects() {
	held := make(chan struct{})
	f.gate.Store(&held)
}

// releaseReconnects lets every waiting stream reconnect at once.
func (f *fleet) releaseReconnects() {
	close(*f.gate.Load())
}

// dropAll ends every live connection at once.
func (f *fleet) dropAll() {
	for _, s := range f.streams {
		s.mu.Lock()
		if s.hangup != nil {
			s.hangup()
		}
		s.mu.Unlock()
	}
}

// upCount returns how many streams are connected.
func (f *fleet) upCount() int {
	n := 0
	for _, s := range f.streams {
		if s.up.Load() {
			n++
		}
	}
	return n
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
