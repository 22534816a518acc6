package redis

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/redistest"
)

var _ engine.Metrics = (*Engine)(nil)

// silencer is a TCP proxy to a Redis whose Pub/Sub connections (those that
// have sent a SUBSCRIBE) can be silenced: they stop forwarding bytes in both
// directions and stay open, like a path that blackholes. Connections made
// after silence forward normally.
type silencer struct {
	t    *testing.T
	l    net.Listener
	to   string
	done chan struct{}

	mu    sync.Mutex
	conns []*silenced
}

type silenced struct {
	pubsub bool          // sent a SUBSCRIBE (under silencer.mu)
	quiet  chan struct{} // closed when silenced
	once   sync.Once
}

func newSilencer(t *testing.T, to string) *silencer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silencer{t: t, l: l, to: to, done: make(chan struct{})}
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

func (p *silencer) addr() string { return p.l.Addr().String() }

func (p *silencer) serve(c net.Conn) {
	defer c.Close()
	r, err := net.Dial("tcp", p.to)
	if err != nil {
		return
	}
	defer r.Close()
	s := &silenced{quiet: make(chan struct{})}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(s, r, c, true) })
	wg.Go(func() { p.pipe(s, c, r, false) })
	select {
	case <-p.done:
	case <-s.quiet:
		<-p.done // silent, yet open, until the test ends
	}
	c.Close()
	r.Close()
	wg.Wait()
}

// pipe copies from src to dst until either closes or the connection is
// silenced; fromClient marks the client's direction, sniffed for SUBSCRIBE.
func (p *silencer) pipe(s *silenced, dst io.Writer, src io.Reader, fromClient bool) {
	b := make([]byte, 32<<10)
	for {
		n, err := src.Read(b)
		if n > 0 {
			if fromClient && bytes.Contains(bytes.ToUpper(b[:n]), []byte("SUBSCRIBE")) {
				p.mu.Lock()
				s.pubsub = true
				p.mu.Unlock()
			}
			select {
			case <-s.quiet:
				return // the bytes read are dropped: nothing passes any more
			default:
			}
			if _, err := dst.Write(b[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// silence silences every Pub/Sub connection open now and reports how many.
func (p *silencer) silence() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.conns {
		if s.pubsub {
			s.once.Do(func() { close(s.quiet) })
			n++
		}
	}
	return n
}

// A Pub/Sub connection that stays open but stops receiving is found by the
// idle probe within a few intervals, redialled and resubscribed, and its
// subscribers are told to re-read: an event of a quiet topic published
// during the silence reaches them by the re-read.
func TestSilentPubSubConnectionIsFoundByTheProbe(t *testing.T) {
	r := redistest.Start(t)
	px := newSilencer(t, r.Addr())
	const probe = 200 * time.Millisecond
	opt := testOptions(t, "redis://"+px.addr()+"/0")
	opt.PubSubConns = 1
	opt.ProbeInterval = probe
	e := mustOpen(t, opt)

	sub := subscribeResumer(t, e, "silent")

	// Several quiet intervals pass with the connection healthy: the probes
	// arrive and nothing is redialled.
	time.Sleep(5 * probe)
	if sub.lostCalled() {
		t.Fatal("lost called while the connection was healthy")
	}

	if n := px.silence(); n != 1 {
		t.Fatalf("silenced %d Pub/Sub connections, want 1", n)
	}
	silenced := time.Now()
	appendOK(t, e, ev("silent", "", "only"))
	sub.awaitLostAndReread(t, "the Pub/Sub connection went silent")
	took := time.Since(silenced)
	t.Logf("silence noticed and resubscribed after %v (probe interval %v)", took, probe)
	// About two intervals to notice, up to a second for the client to
	// close the silent connection, and a redial.
	if took > 5*time.Second {
		t.Errorf("silence noticed only after %v, want within a few probe intervals of %v", took, probe)
	}
	if res, viaFn := sub.has(); res != "only" || viaFn != 0 {
		t.Fatalf("subscriber has %q (%d by fan-out), want the event published during the silence, by the re-read", res, viaFn)
	}
	// Fan-out works on the new connection.
	appendOK(t, e, ev("silent", "", "next"))
	waitFor(t, "an event by fan-out after the reconnect", func() bool { _, viaFn := sub.has(); return viaFn == 1 })
	m := metrics(e)
	if m["probes_sent"] < 2 || m["probes_failed"] != 1 || m["reconnects"] != 1 || m["lost_topics"] != 1 {
		t.Errorf("metrics %v, want several probes sent, one failed, one reconnect, one lost topic", m)
	}
}

func metrics(e *Engine) map[string]uint64 {
	m := map[string]uint64{}
	for _, c := range e.Metrics() {
		m[c.Name] = c.Value
	}
	return m
}
