package server

import (
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/herald-hub/herald/internal/hub"
)

// chunkedWriter frames each Write as one HTTP/1.1 chunk, sent with one write
// (after what a TryWrite left pending, if anything) from a pooled buffer: a
// copy of a few hundred bytes costs less than the vectored write it saves, and
// an idle stream keeps no buffer.
//
// After a failed write it writes nothing more: the failed chunk may have gone
// out in part, and any later bytes, the last chunk included, would be read as
// its rest.
type chunkedWriter struct {
	conn   net.Conn
	rest   []byte // what a TryWrite could not send yet; goes out before anything else
	broken bool
}

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// frame returns p as one chunk in a pooled buffer; give it back with release.
func frame(p []byte) *[]byte {
	bp := chunkBufs.Get().(*[]byte)
	b := strconv.AppendInt((*bp)[:0], int64(len(p)), 16)
	b = append(b, '\r', '\n')
	b = append(b, p...)
	*bp = append(b, '\r', '\n')
	return bp
}

func release(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		*bp = (*bp)[:0]
		chunkBufs.Put(bp)
	}
}

func (c *chunkedWriter) Write(p []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil // an empty chunk would end the body
	}
	bp := frame(p)
	_, err := c.conn.Write(*bp)
	release(bp)
	if err != nil {
		c.broken = true
		return 0, err
	}
	return len(p), nil
}

// Flush writes what a TryWrite left pending.
func (c *chunkedWriter) Flush() error {
	if c.broken {
		return hub.ErrBroken
	}
	if len(c.rest) == 0 {
		return nil
	}
	_, err := c.conn.Write(c.rest)
	c.rest = nil
	if err != nil {
		c.broken = true
	}
	return err
}

// end writes the last chunk, ending the body, unless a write failed.
func (c *chunkedWriter) end() {
	_ = c.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if c.Flush() != nil {
		return
	}
	_, _ = c.conn.Write([]byte("0\r\n\r\n"))
}

func (c *chunkedWriter) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
