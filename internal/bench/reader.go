package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/herald-hub/herald/sse"
)

// A reader delivers the events of the fleet's streams once their response
// headers are in.
type reader interface {
	// read delivers the events of s, connected by c, until the stream ends,
	// ctx ends or dropAll hangs it up. It runs on s's goroutine, which closes
	// c.nc after it returns, and returns why the stream ended: nil for its
	// end, ctx's or a drop. It sets *c.retry from the stream's retry field.
	read(ctx context.Context, f *fleet, s *stream, c *conn) error
	// close stops the reader once no stream is left to read.
	close()
}

// A conn is a stream's connection whose response headers are in.
type conn struct {
	nc    net.Conn
	br    *bufio.Reader // what ReadResponse read: it may hold the body's first bytes
	resp  *http.Response
	retry *time.Duration
}

// goroutineReader reads each stream on its own goroutine, with the pull
// decoder.
type goroutineReader struct{}

func (goroutineReader) read(ctx context.Context, f *fleet, s *stream, c *conn) error {
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer stop()
	dec := sse.NewDecoder(c.resp.Body)
	for {
		ev, ok, err := dec.NextBlock()
		if r, set := dec.Retry(); set {
			*c.retry = max(r, 10*time.Millisecond)
		}
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				err = nil
			}
			return err
		}
		s.lastID = dec.LastEventID()
		if ok {
			f.deliver(s, ev)
		}
	}
}

func (goroutineReader) close() {}

// A push reads a stream by being given the bytes read from its connection:
// it undoes the body's framing, decodes the events and delivers them.
type push struct {
	f    *fleet
	s    *stream
	body *body
	dec  *sse.Decoder
}

func newPush(f *fleet, s *stream, resp *http.Response) *push {
	return &push{f: f, s: s, body: newBody(resp), dec: sse.NewDecoder(nil)}
}

// feed delivers the events in b, the next bytes read from the connection,
// with evs as scratch space, which it returns for the next call. It returns
// io.EOF once the body has ended.
func (p *push) feed(b []byte, evs []sse.Event) ([]sse.Event, error) {
	for len(b) > 0 && !p.body.done() {
		data, rest, err := p.body.next(b)
		if err != nil {
			return evs, err
		}
		b = rest
		if len(data) == 0 {
			continue
		}
		evs, err = p.dec.AppendEvents(evs[:0], data)
		for _, ev := range evs {
			p.f.deliver(p.s, ev)
		}
		p.s.lastID = p.dec.LastEventID()
		if err != nil {
			return evs, err
		}
	}
	if p.body.done() {
		return evs, io.EOF
	}
	return evs, nil
}

// ended maps the error a push's stream ended with to read's result, and sets
// the reconnection delay from the stream's retry field.
func (p *push) ended(ctx context.Context, c *conn, err error) error {
	if r, set := p.dec.Retry(); set {
		*c.retry = max(r, 10*time.Millisecond)
	}
	if errors.Is(err, io.EOF) || ctx.Err() != nil {
		return nil
	}
	return err
}
