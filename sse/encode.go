package sse

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrInvalidField is returned by CheckField for values that cannot be written
// on a single SSE line.
var ErrInvalidField = errors.New("sse: invalid field")

// CheckField reports whether s can be used as an event id or type: it must
// not contain CR or LF (which would end the line and start a new field or
// event) nor NUL (with which browsers ignore an id).
func CheckField(s string) error {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r':
			return fmt.Errorf("%w: %q contains a carriage return (CR)", ErrInvalidField, s)
		case '\n':
			return fmt.Errorf("%w: %q contains a line feed (LF)", ErrInvalidField, s)
		case 0:
			return fmt.Errorf("%w: %q contains a NUL character", ErrInvalidField, s)
		}
	}
	return nil
}

// AppendID appends "id: <id>\n". id should pass CheckField.
func AppendID(dst []byte, id string) []byte {
	return AppendField(dst, "id", id)
}

// AppendType appends "event: <typ>\n", or nothing when typ is empty (the
// client then dispatches a "message" event). typ should pass CheckField.
func AppendType(dst []byte, typ string) []byte {
	if typ == "" {
		return dst
	}
	return AppendField(dst, "event", typ)
}

// AppendField appends "<name>: <value>\n". name must be a constant field name
// without ':' or line breaks. value should pass CheckField; as a last line of
// defence, CR, LF and NUL in value are written as U+FFFD so that a missed
// check can never start a new field or event.
func AppendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = appendLine(dst, value)
	return append(dst, '\n')
}

func appendLine(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			dst = append(dst, s[:i]...)
			dst = append(dst, "\uFFFD"...)
			s = s[i+1:]
			i = -1
		}
	}
	return append(dst, s...)
}

// AppendData appends data as "data: " lines, one per line of data; CR, LF
// and CRLF all end a line, so no byte of data can start another field or
// event. The space after the colon is always written because decoders strip
// exactly one, so a line that itself starts with a space survives.
//
// Empty data gives "data: \n": the data buffer of a WHATWG decoder then
// holds "\n", so the event is dispatched, with data "". Likewise a trailing
// line break in data gives a last, empty "data: " line and survives decoding.
func AppendData(dst []byte, data []byte) []byte {
	return appendLines(dst, "data: ", data)
}

// AppendComment appends text as comment lines, ": " and one line of text
// each. Decoders ignore them; servers use them as heartbeats.
func AppendComment(dst []byte, text string) []byte {
	return appendLines(dst, ": ", text)
}

func appendLines[T string | []byte](dst []byte, prefix string, text T) []byte {
	for {
		i := 0
		for i < len(text) && text[i] != '\n' && text[i] != '\r' {
			i++
		}
		dst = append(dst, prefix...)
		dst = append(dst, text[:i]...)
		dst = append(dst, '\n')
		if i == len(text) {
			return dst
		}
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++ // CRLF is one line end
		}
		text = text[i+1:]
	}
}

// AppendEvent appends a whole event: its id (when not empty: an empty id
// field would reset the client's last event ID), its type, its data and the
// blank line that dispatches it.
func AppendEvent(dst []byte, id, typ string, data []byte) []byte {
	if id != "" {
		dst = AppendID(dst, id)
	}
	dst = AppendType(dst, typ)
	dst = AppendData(dst, data)
	return append(dst, '\n')
}

// AppendRetry appends "retry: <milliseconds>\n", the delay the client waits
// before reconnecting. Negative durations are written as 0.
func AppendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, max(d.Milliseconds(), 0), 10)
	return append(dst, '\n')
}
