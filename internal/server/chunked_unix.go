//go:build unix

package server

import (
	"errors"
	"net"
	"syscall"

	"github.com/herald-hub/herald/internal/hub"
)

// tryChunkedWriter is a chunkedWriter that can also write without waiting, so
// the hub writes a fan-out to many streams from one goroutine (hub.TryWriter).
type tryChunkedWriter struct {
	*chunkedWriter
	rc syscall.RawConn
}

// newChunkedWriter returns a writer that can write without waiting for a
// plain TCP connection. Only for that type: a wrapper (TLS) still offering
// SyscallConn would be written around.
func newChunkedWriter(conn net.Conn) hub.Writer {
	cw := &chunkedWriter{conn: conn}
	if tc, ok := conn.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			return &tryChunkedWriter{cw, rc}
		}
	}
	return cw
}

// TryWrite makes one non-blocking write(2) of p's chunk and keeps what the
// socket did not take for the next Flush or Write.
func (c *tryChunkedWriter) TryWrite(p []byte) (pending bool, err error) {
	if c.broken {
		return false, hub.ErrBroken
	}
	if len(p) == 0 {
		return len(c.rest) > 0, nil
	}
	bp := frame(p)
	defer release(bp)
	b := *bp
	if len(c.rest) > 0 {
		c.rest = append(c.rest, b...)
		return true, nil
	}
	var n int
	var werr error
	// The callback runs once: the descriptor is non-blocking, and returning
	// true stops RawConn from waiting for it to become writable. RawConn holds
	// the descriptor open for the call, so a concurrent Close cannot reuse it.
	err = c.rc.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	if err == nil && errors.Is(werr, syscall.EAGAIN) {
		n, werr = 0, nil
	}
	if err == nil {
		err = werr
	}
	if err != nil {
		c.broken = true
		return false, err
	}
	if n < len(b) {
		c.rest = append(c.rest[:0], b[n:]...)
		return true, nil
	}
	return false, nil
}
