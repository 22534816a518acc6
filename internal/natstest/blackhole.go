package natstest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Blackhole is a TCP proxy to a NATS server whose connections can be
// blackholed: from then on the bytes read either way are dropped and the
// connections stay open, like a path that silently loses everything.
// Connections made afterwards are forwarded as usual. It stops when the test
// ends.
type Blackhole struct {
	l    net.Listener
	to   string
	done chan struct{}

	mu    sync.Mutex
	conns []*holed
}

type holed struct {
	dark chan struct{} // closed when blackholed: both ways dropped
	deaf chan struct{} // closed when deafened: the server's bytes dropped
}

// NewBlackhole starts a proxy to the server at address to (host:port).
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

// URL is the proxy's nats:// URL.
func (p *Blackhole) URL() string { return "nats://" + p.l.Addr().String() }

func (p *Blackhole) serve(c net.Conn) {
	defer c.Close()
	r, err := net.DialTimeout("tcp", p.to, 5*time.Second)
	if err != nil {
		return
	}
	defer r.Close()
	h := &holed{dark: make(chan struct{}), deaf: make(chan struct{})}
	p.mu.Lock()
	p.conns = append(p.conns, h)
	p.mu.Unlock()
	ended := make(chan struct{}, 2)
	go func() { pipe(h.dark, nil, r, c); ended <- struct{}{} }()
	go func() { pipe(h.dark, h.deaf, c, r); ended <- struct{}{} }()
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

// pipe copies src to dst until either fails; once dark (or deaf, when not
// nil) is closed it goes on reading and drops what it reads.
func pipe(dark, deaf chan struct{}, dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-dark:
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

// Blackhole blackholes every connection open now and reports how many.
func (p *Blackhole) Blackhole() int {
	return p.each(func(h *holed) chan struct{} { return h.dark })
}

// Deafen drops, from now on, what the server sends on every connection
// open now, while what the client sends still reaches it (its requests are
// served, their answers lost), and reports how many.
func (p *Blackhole) Deafen() int {
	return p.each(func(h *holed) chan struct{} { return h.deaf })
}

func (p *Blackhole) each(ch func(*holed) chan struct{}) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.conns {
		select {
		case <-ch(h):
		default:
			close(ch(h))
		}
	}
	n := len(p.conns)
	p.conns = nil
	return n
}
