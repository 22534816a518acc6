// Package blackhole is a TCP proxy for tests whose connections can be made
// to lose everything while they stay open, like a network path that
// silently drops packets: no FIN, no RST, nothing arrives.
package blackhole

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards connections to one address until told to blackhole them.
// It stops when the test ends.
type Proxy struct {
	l    net.Listener
	to   string
	mark func(fromClient []byte) bool // nil: every connection is a target
	done chan struct{}

	mu    sync.Mutex
	conns []*conn
}

type conn struct {
	target bool          // every connection, or one mark recognised (under Proxy.mu)
	dark   chan struct{} // closed when blackholed: both ways dropped
	deaf   chan struct{} // closed when deafened: the server's bytes dropped
}

// New starts a proxy to address to. With mark, only the connections whose
// client sent bytes mark recognises (for example a SUBSCRIBE) are targets of
// Blackhole and Deafen; without, every connection is.
func New(t testing.TB, to string, mark func(fromClient []byte) bool) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, to: to, mark: mark, done: make(chan struct{})}
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

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

func (p *Proxy) serve(c net.Conn) {
	defer c.Close()
	r, err := net.DialTimeout("tcp", p.to, 5*time.Second)
	if err != nil {
		return
	}
	defer r.Close()
	h := &conn{target: p.mark == nil, dark: make(chan struct{}), deaf: make(chan struct{})}
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
// blackholed (or, for the server's direction, deafened) it goes on reading
// and drops what it reads, so the peer sees an open connection that
// delivers nothing.
func (p *Proxy) pipe(h *conn, dst io.Writer, src io.Reader, fromClient bool) {
	deaf := h.deaf
	if fromClient {
		deaf = nil
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient && p.mark != nil && p.mark(buf[:n]) {
				p.mu.Lock()
				h.target = true
				p.mu.Unlock()
			}
			select {
			case <-h.dark:
			case <-deaf:
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

// Blackhole drops everything, both ways, on every target connection open
// now, and reports how many.
func (p *Proxy) Blackhole() int { return p.each(func(h *conn) chan struct{} { return h.dark }) }

// Deafen drops, from now on, what the server sends on every target
// connection open now, while what the client sends still reaches it (its
// requests are served, their answers lost), and reports how many.
func (p *Proxy) Deafen() int { return p.each(func(h *conn) chan struct{} { return h.deaf }) }

func (p *Proxy) each(ch func(*conn) chan struct{}) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, h := range p.conns {
		if !h.target {
			continue
		}
		select {
		case <-ch(h):
		default:
			close(ch(h))
		}
		n++
	}
	return n
}
