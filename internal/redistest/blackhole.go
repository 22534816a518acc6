package redistest

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Blackhole is a TCP proxy to a Redis whose Pub/Sub connections (those whose
// client sent a SUBSCRIBE) can be blackholed: from then on the bytes read
// either way are dropped and the connections stay open, like a path that
// silently loses everything. Connections made afterwards are forwarded as
// usual. It stops when the test ends.
type Blackhole struct {
	l    net.Listener
	to   string
	done chan struct{}

	mu    sync.Mutex
	conns []*holed
}

type holed struct {
	pubsub bool          // the client sent a SUBSCRIBE (under Blackhole.mu)
	dark   chan struct{} // closed when blackholed
	once   sync.Once
}

// NewBlackhole starts a proxy to the Redis at address to.
func NewBlackhole(t testing.TB, to string) *Blackhole {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Blackhole{l: l, to: to, done: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { close(p.done); l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

// Addr is the proxy's host:port, for the client's URL.
func (p *Blackhole) Addr() string { return p.l.Addr().String() }

func (p *Blackhole) serve(c net.Conn) {
	defer c.Close()
	r, err := net.DialTimeout("tcp", p.to, 5*time.Second)
	if err != nil {
		return
	}
	defer r.Close()
	h := &holed{dark: make(chan struct{})}
	p.mu.Lock()
	p.conns = append(p.conns, h)
	p.mu.Unlock()
	ended := make(chan struct{}, 2)
	go func() { p.pipe(h, r, c, true); ended <- struct{}{} }()
	go func() { p.pipe(h, c, r, false); ended <- struct{}{} }()
	left := 2
	select {
	case <-ended: // either side closed: close both
		left--
	case <-p.done:
	}
	c.Close()
	r.Close()
	for ; left > 0; left-- {
		<-ended
	}
}

// pipe copies src to dst until either fails; once the connection is
// blackholed it goes on reading and drops what it reads, so the peer sees an
// open connection that delivers nothing. fromClient marks the client's
// direction, sniffed for SUBSCRIBE.
func (p *Blackhole) pipe(h *holed, dst io.Writer, src io.Reader, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient && bytes.Contains(bytes.ToUpper(buf[:n]), []byte("SUBSCRIBE")) {
				p.mu.Lock()
				h.pubsub = true
				p.mu.Unlock()
			}
			select {
			case <-h.dark:
			default:
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// Blackhole blackholes every Pub/Sub connection open now and reports how many.
func (p *Blackhole) Blackhole() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, h := range p.conns {
		if h.pubsub {
			h.once.Do(func() { close(h.dark) })
			n++
		}
	}
	return n
}
