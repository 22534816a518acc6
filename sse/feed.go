package sse

import "errors"

// errNeedInput is how readLine tells AppendEvents, or a caller of Next on a
// Decoder without a Reader, that the bytes it was given end within a line.
var errNeedInput = errors.New("sse: the Decoder has no Reader; it is fed with AppendEvents")

var errHasReader = errors.New("sse: AppendEvents on a Decoder that has a Reader")

// AppendEvents is the push form of Next, for a caller that reads the stream
// itself, such as an event loop serving many streams with one buffer. It
// parses p, the next bytes of the stream, and appends the events dispatched
// in them to dst. It parses the same way Next does, through the same code.
//
// Lines are parsed where they lie in p, which is not retained: only a line
// cut off at the end of p is copied, to be completed by the next call. After
// each call LastEventID and Retry report what the blocks so far set. The
// Decoder must have been made with NewDecoder(nil). Errors (ErrTooLarge) are
// sticky; the events dispatched before one are still appended.
func (d *Decoder) AppendEvents(dst []Event, p []byte) ([]Event, error) {
	if d.err != nil {
		return dst, d.err
	}
	if d.r != nil {
		return dst, errHasReader
	}
	var err error
	// The bytes kept from earlier calls hold no line end. Complete them in
	// the Decoder's buffer with p's bytes up to its first line end, or, while
	// a BOM may still be under way, up to the three bytes that decide it.
	for len(p) > 0 && (d.start < d.end || !d.bomDone) {
		n := len(p)
		if !d.bomDone {
			n = min(n, len(bom)-(d.end-d.start))
		} else if i := lineEnd(p); i >= 0 {
			n = i + 1
		}
		d.keep(p[:n])
		p = p[n:]
		if dst, err = d.appendBlocks(dst); err != nil {
			return dst, err
		}
	}
	if len(p) == 0 {
		return dst, nil
	}
	// Nothing is pending: parse the rest of p in place, then keep its tail.
	own := d.buf
	d.buf, d.start, d.end = p, 0, len(p)
	dst, err = d.appendBlocks(dst)
	tail := d.buf[d.start:d.end]
	d.buf, d.start, d.end = own, 0, 0
	if err == nil {
		d.keep(tail)
	}
	return dst, err
}

// appendBlocks appends the events of the complete blocks in d.buf to dst.
func (d *Decoder) appendBlocks(dst []Event) ([]Event, error) {
	for {
		ev, ok, err := d.NextBlock()
		if err == errNeedInput {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
		if ok {
			dst = append(dst, ev)
		}
	}
}

// keep appends b to the unparsed bytes in the Decoder's own buffer.
func (d *Decoder) keep(b []byte) {
	if d.start > 0 {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	d.buf = append(d.buf[:d.end], b...)
	d.end = len(d.buf)
}
