package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxChunkLine caps a chunk-size or trailer line, as net/http does.
const maxChunkLine = 4096

// errChunked reports malformed chunked framing.
var errChunked = errors.New("malformed chunked encoding")

// A body undoes an HTTP/1.1 response body's framing for a caller that pushes
// the bytes it reads from the connection, in pieces of any size: chunked
// transfer coding, a Content-Length, or (neither) a body that runs to the
// connection's end.
type body struct {
	chunked bool
	left    int64 // bytes left in the chunk, or in a Content-Length body; -1: up to EOF
	state   bodyState
	line    []byte // a chunk-size or trailer line cut off by the end of a piece
}

type bodyState uint8

const (
	chunkSize    bodyState = iota // reading a chunk-size line
	chunkData                     // left bytes of data to go
	chunkCR                       // the CR after a chunk's data
	chunkLF                       // and its LF
	chunkTrailer                  // trailer lines, up to an empty one
	bodyDone
)

func newBody(resp *http.Response) *body {
	// ReadResponse accepts no transfer coding but chunked.
	if len(resp.TransferEncoding) > 0 {
		return &body{chunked: true}
	}
	b := &body{left: resp.ContentLength}
	if b.left == 0 {
		b.state = bodyDone
	}
	return b
}

// next returns the body's content at the start of p and the bytes of p that
// follow it: pass rest to next again until it is empty. data is nil when p
// starts with framing only. After the end of the body rest is what the
// server sent beyond it.
func (b *body) next(p []byte) (data, rest []byte, err error) {
	if !b.chunked {
		if b.state == bodyDone {
			return nil, p, nil
		}
		if b.left < 0 {
			return p, nil, nil
		}
		n := min(b.left, int64(len(p)))
		if b.left -= n; b.left == 0 {
			b.state = bodyDone
		}
		return p[:n], p[n:], nil
	}
	for len(p) > 0 {
		switch b.state {
		case chunkData:
			n := min(b.left, int64(len(p)))
			if b.left -= n; b.left == 0 {
				b.state = chunkCR
			}
			return p[:n], p[n:], nil
		case chunkCR:
			if p[0] != '\r' {
				return nil, nil, fmt.Errorf("%w: chunk data not followed by CRLF", errChunked)
			}
			p, b.state = p[1:], chunkLF
		case chunkLF:
			if p[0] != '\n' {
				return nil, nil, fmt.Errorf("%w: chunk data not followed by CRLF", errChunked)
			}
			p, b.state = p[1:], chunkSize
		case chunkSize, chunkTrailer:
			line, after, ok, err := b.cutLine(p)
			if err != nil || !ok {
				return nil, nil, err
			}
			p = after
			if b.state == chunkTrailer {
				if len(line) == 0 {
					b.state = bodyDone
				}
				continue
			}
			size, err := parseChunkSize(line)
			if err != nil {
				return nil, nil, err
			}
			if size == 0 {
				b.state = chunkTrailer
			} else {
				b.left, b.state = size, chunkData
			}
		case bodyDone:
			return nil, p, nil
		}
	}
	return nil, nil, nil
}

// cutLine returns the line that ends in p, completing one kept from earlier
// pieces, without its CRLF; or ok false, keeping p, when p does not end it.
func (b *body) cutLine(p []byte) (line, rest []byte, ok bool, err error) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if len(b.line)+len(p) >= maxChunkLine {
			return nil, nil, false, fmt.Errorf("%w: line longer than %d bytes", errChunked, maxChunkLine)
		}
		b.line = append(b.line, p...)
		return nil, nil, false, nil
	}
	line, rest = p[:i+1], p[i+1:]
	if len(b.line) > 0 {
		b.line = append(b.line, line...)
		line = b.line
		b.line = b.line[:0]
	}
	if len(line) > maxChunkLine {
		return nil, nil, false, fmt.Errorf("%w: line longer than %d bytes", errChunked, maxChunkLine)
	}
	// A bare LF or a stray CR is an error, as in net/http (RFC 9112 errata 7633).
	if cr := bytes.IndexByte(line, '\r'); cr < 0 || cr != len(line)-2 {
		return nil, nil, false, fmt.Errorf("%w: line %q does not end in CRLF", errChunked, line)
	}
	return line[:len(line)-2], rest, true, nil
}

// parseChunkSize parses a chunk-size line without its CRLF as net/http does:
// hex digits, then extensions, which are ignored, and trailing whitespace.
func parseChunkSize(line []byte) (int64, error) {
	hex, _, _ := bytes.Cut(bytes.TrimRight(line, " \t"), []byte(";"))
	if len(hex) == 0 {
		return 0, fmt.Errorf("%w: chunk size %q", errChunked, line)
	}
	if len(hex) > 16 || len(hex) == 16 && hex[0] > '7' {
		return 0, fmt.Errorf("%w: chunk size %q too large", errChunked, line)
	}
	var n int64
	for _, c := range hex {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, fmt.Errorf("%w: chunk size %q", errChunked, line)
		}
		n = n<<4 | int64(c)
	}
	return n, nil
}

// done reports whether the body has ended.
func (b *body) done() bool { return b.state == bodyDone }

// atEOF returns the error of the connection ending here: nil when the body
// may end with it.
func (b *body) atEOF() error {
	if b.state == bodyDone || !b.chunked && b.left < 0 {
		return nil
	}
	return io.ErrUnexpectedEOF
}
