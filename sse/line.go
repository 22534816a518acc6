package sse

import (
	"bytes"
	"io"
)

const initialBuffer = 4 << 10

var bom = []byte("\xEF\xBB\xBF")

// readLine returns the next line without its line end. The line is valid until
// the next call. A CR ends a line at once, so a live stream is never held back
// waiting to see whether a LF follows; the LF is skipped when it comes.
func (d *Decoder) readLine() ([]byte, error) {
	scanned := 0 // bytes of buf[start:end] known to hold no line end
	for {
		if !d.bomDone && (d.end-d.start >= len(bom) || d.rerr != nil) {
			if bytes.HasPrefix(d.buf[d.start:d.end], bom) {
				d.start += len(bom)
			}
			d.bomDone = true
		}
		if d.bomDone {
			if d.skipLF && d.start < d.end {
				if d.buf[d.start] == '\n' {
					d.start++
				}
				d.skipLF = false
			}
			if i := lineEnd(d.buf[d.start+scanned : d.end]); i >= 0 {
				i += d.start + scanned
				if i-d.start > d.limit {
					// Only AppendEvents, which parses lines where they lie
					// in its input, gets here: fill never holds a longer one.
					return nil, ErrTooLarge
				}
				line := d.buf[d.start:i]
				d.skipLF = d.buf[i] == '\r'
				d.start = i + 1
				return line, nil
			}
			scanned = d.end - d.start
			if scanned > d.limit {
				return nil, ErrTooLarge
			}
		}
		if d.rerr != nil {
			// At the end of the stream a pending line is discarded.
			return nil, d.rerr
		}
		if d.r == nil {
			return nil, errNeedInput
		}
		d.fill()
	}
}

// lineEnd returns the index of the first CR or LF in b, or -1.
func lineEnd(b []byte) int {
	lf := bytes.IndexByte(b, '\n')
	if lf >= 0 {
		b = b[:lf]
	}
	if cr := bytes.IndexByte(b, '\r'); cr >= 0 {
		return cr
	}
	return lf
}

// fill reads more into buf, making room by moving unparsed bytes to the front
// or growing buf up to just over the limit.
func (d *Decoder) fill() {
	if d.start > 0 {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	if d.end == len(d.buf) {
		n := min(max(2*len(d.buf), initialBuffer), d.limit+1)
		if n <= len(d.buf) {
			// Unreachable: readLine fails with ErrTooLarge first.
			d.rerr = ErrTooLarge
			return
		}
		buf := make([]byte, n)
		copy(buf, d.buf[:d.end])
		d.buf = buf
	}
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err != nil {
			d.rerr = err
			return
		}
		if n > 0 {
			return
		}
	}
	d.rerr = io.ErrNoProgress
}
