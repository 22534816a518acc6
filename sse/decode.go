package sse

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// DefaultLimit is the default cap on one line and on one event's data.
const DefaultLimit = 1 << 20

// ErrTooLarge is returned by the Decoder when a line or the data of one event
// grows beyond its limit: a stream that never ends a line must not grow
// memory without bound.
var ErrTooLarge = errors.New("sse: line or event data larger than the decoder's limit")

// Event is one dispatched event.
type Event struct {
	ID    string // the last event ID when the event was dispatched; it persists across events
	Type  string // "message" when the stream gave none, as browsers dispatch it
	Data  string // the data lines joined with "\n"
	Topic string // Herald's "topic" extension field; "" when absent
}

// Decoder reads events from a stream following the WHATWG HTML "event stream
// interpretation": a leading UTF-8 BOM is dropped, lines end with CRLF, LF or
// CR, invalid UTF-8 becomes U+FFFD as in browsers, and an event is dispatched
// by a blank line only (a trailing event without one is discarded).
type Decoder struct {
	r     io.Reader
	buf   []byte // buf[start:end] is read but not yet parsed
	start int
	end   int
	limit int
	rerr  error // error from r, returned once buf is drained
	err   error // sticky error returned by every later call

	bomDone bool
	skipLF  bool // the last line ended with CR: a LF that follows is part of that line end

	// The spec's buffers.
	data   []byte
	typ    string
	topic  string
	idBuf  string // last event ID buffer
	lastID string // last event ID string, set from idBuf at each blank line

	retry    time.Duration
	hasRetry bool

	// The previous type and topic, reused to save an allocation per event.
	prevTyp, prevTopic string
}

// NewDecoder returns a Decoder reading from r, with a limit of DefaultLimit.
// A Decoder made with a nil r reads nothing itself: it is fed with
// AppendEvents.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: r, limit: DefaultLimit}
}

// SetLimit sets the largest line and the largest event data, in bytes, the
// Decoder accepts before failing with ErrTooLarge. Set it before the first
// call to Next, NextBlock or AppendEvents.
func (d *Decoder) SetLimit(n int) {
	d.limit = max(n, 1)
}

// Next returns the next dispatched event, io.EOF at the end of the stream, or
// the error that stopped reading. Errors are sticky.
func (d *Decoder) Next() (Event, error) {
	for {
		ev, ok, err := d.NextBlock()
		if err != nil || ok {
			return ev, err
		}
	}
}

// NextBlock reads up to the next blank line, where the spec runs its dispatch
// step, and reports whether that dispatched an event. A block without data
// (an id-only block, a comment, an extra blank line) returns ok false; only
// LastEventID may have changed. It lets a caller learn a new last event ID at
// once instead of when the next event arrives.
func (d *Decoder) NextBlock() (ev Event, ok bool, err error) {
	if d.err != nil {
		return Event{}, false, d.err
	}
	for {
		line, err := d.readLine()
		if err != nil {
			if err != errNeedInput {
				d.err = err
			}
			return Event{}, false, err
		}
		if len(line) == 0 {
			ev, ok := d.dispatch()
			return ev, ok, nil
		}
		if err := d.field(line); err != nil {
			d.err = err
			return Event{}, false, err
		}
	}
}

// LastEventID returns the last event ID string: the value a client sends as
// Last-Event-ID when it reconnects. As in browsers it is taken from the id
// buffer at each blank line, so an id-only block sets it without dispatching
// an event, and an id whose block was cut off by the end of the stream does
// not: resuming from it would skip that event.
func (d *Decoder) LastEventID() string { return d.lastID }

// Retry returns the last valid reconnection time the stream set.
func (d *Decoder) Retry() (time.Duration, bool) { return d.retry, d.hasRetry }

// field processes one non-empty line.
func (d *Decoder) field(line []byte) error {
	if line[0] == ':' {
		return nil // comment
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "event":
		d.typ = reuse(&d.prevTyp, value)
	case "data":
		if len(d.data)+len(value)+1 > d.limit {
			return ErrTooLarge
		}
		d.data = appendUTF8(d.data, value)
		d.data = append(d.data, '\n')
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.idBuf = decodeUTF8(value)
		}
	case "retry":
		if ms, ok := parseDigits(value); ok {
			d.retry, d.hasRetry = time.Duration(ms)*time.Millisecond, true
		}
	case "topic":
		d.topic = reuse(&d.prevTopic, value)
	}
	return nil
}

// dispatch runs the spec's dispatch step at a blank line.
func (d *Decoder) dispatch() (Event, bool) {
	d.lastID = d.idBuf
	if len(d.data) == 0 {
		d.typ, d.topic = "", ""
		return Event{}, false
	}
	ev := Event{
		ID:    d.lastID,
		Type:  d.typ,
		Data:  string(d.data[:len(d.data)-1]),
		Topic: d.topic,
	}
	if ev.Type == "" {
		ev.Type = "message"
	}
	d.data, d.typ, d.topic = d.data[:0], "", ""
	return ev, true
}

// reuse returns value as a string, reusing *prev when equal: types and
// topics repeat from event to event.
func reuse(prev *string, value []byte) string {
	if string(value) != *prev {
		*prev = decodeUTF8(value)
	}
	return *prev
}

// parseDigits parses a non-empty run of ASCII digits as milliseconds that fit
// in a time.Duration.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || ms > int64(1<<63-1)/int64(time.Millisecond) {
		return 0, false
	}
	return ms, true
}
