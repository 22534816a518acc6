package server

import (
	"bytes"
	"unicode/utf8"
)

// maxScanDepth bounds the nesting of a data value on the fast path. Deeper
// values are rare and take the strict path, which has encoding/json's limit.
const maxScanDepth = 64

// scanPublish is the fast path for a JSON publish body: the common shapes,
// one object or an array of objects with the keys "topic", "type", "data" and
// "id" at most once each and strings without backslash escapes, decoded
// without encoding/json's reflection into exactly what strictInputs gives.
//
// It never refuses a body. On anything else, valid or not, ok is false and
// strictInputs decides, so every error stays as it is.
func scanPublish(body []byte) (inputs []eventInput, batch, ok bool) {
	// With no escapes, valid UTF-8 throughout leaves validText nothing to
	// refuse in any field.
	if !utf8.Valid(body) {
		return nil, false, false
	}
	s := publishScanner{b: body}
	s.space()
	if s.peek() == '[' {
		batch = true
		s.i++
		s.space()
		// An empty batch is refused; that error is strictInputs' to give.
		for {
			in, ok := s.event()
			if !ok {
				return nil, false, false
			}
			inputs = append(inputs, in)
			s.space()
			if s.skip(']') {
				break
			}
			if !s.skip(',') {
				return nil, false, false
			}
			s.space()
		}
	} else {
		in, ok := s.event()
		if !ok {
			return nil, false, false
		}
		inputs = []eventInput{in}
	}
	s.space()
	if s.i != len(s.b) {
		return nil, false, false
	}
	return inputs, batch, true
}

// publishScanner reads a JSON publish body from b[i:].
type publishScanner struct {
	b []byte
	i int
}

// isSpace reports whether c is JSON whitespace, what encoding/json skips
// between tokens and json.Compact drops.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

func (s *publishScanner) space() {
	for s.i < len(s.b) && isSpace(s.b[s.i]) {
		s.i++
	}
}

// peek is the next byte, 0 at the end (0 is never valid JSON there).
func (s *publishScanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// skip consumes c if it comes next.
func (s *publishScanner) skip(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// literal consumes word if it comes next.
func (s *publishScanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// event reads one event object as publishRequest.input decodes it.
func (s *publishScanner) event() (eventInput, bool) {
	var in eventInput
	if !s.skip('{') {
		return in, false
	}
	s.space()
	if s.skip('}') {
		return in, true
	}
	var seen uint8
	for {
		key, ok := s.str()
		if !ok {
			return in, false
		}
		s.space()
		if !s.skip(':') {
			return in, false
		}
		s.space()
		var bit uint8
		switch string(key) {
		case "topic":
			bit = 1
			in.topic, ok = s.text()
		case "type":
			bit = 2
			in.typ, ok = s.text()
		case "data":
			bit = 4
			in.data, ok = s.data()
		case "id":
			bit = 8
			in.id, in.hasID, ok = s.id()
		default:
			// Unknown, or another spelling encoding/json matches without
			// regard to case.
			return in, false
		}
		// encoding/json keeps the last of duplicate keys; they are rare
		// enough to leave to it.
		if !ok || seen&bit != 0 {
			return in, false
		}
		seen |= bit
		s.space()
		if s.skip('}') {
			return in, true
		}
		if !s.skip(',') {
			return in, false
		}
		s.space()
	}
}

// str reads a string without escapes and returns its text, a slice of b.
func (s *publishScanner) str() ([]byte, bool) {
	if !s.skip('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c == '\\' || c < 0x20:
			// Escapes are left to encoding/json; raw control bytes are
			// invalid JSON.
			return nil, false
		}
	}
	return nil, false
}

// text reads a string field as jsonText decodes it: null is empty.
func (s *publishScanner) text() (string, bool) {
	if s.literal("null") {
		return "", true
	}
	b, ok := s.str()
	return string(b), ok
}

// id reads the "id" field as publishRequest.input does: null is no id.
func (s *publishScanner) id() (id string, has, ok bool) {
	if s.literal("null") {
		return "", false, true
	}
	id, ok = s.text()
	return id, true, ok
}

// data reads the data value as eventData delivers it: a string as its text,
// null as nothing, anything else as compact JSON. Each is a new slice, as
// eventData's are, so an event kept by the engine does not pin the body.
func (s *publishScanner) data() ([]byte, bool) {
	switch s.peek() {
	case 'n':
		return nil, s.literal("null")
	case '"':
		b, ok := s.str()
		return bytes.Clone(b), ok
	}
	start := s.i
	if !s.value(0) {
		return nil, false
	}
	return compact(s.b[start:s.i]), true
}

// value skips one JSON value whose strings have no escapes.
func (s *publishScanner) value(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '{':
		s.i++
		s.space()
		if s.skip('}') {
			return true
		}
		for {
			if _, ok := s.str(); !ok {
				return false
			}
			s.space()
			if !s.skip(':') {
				return false
			}
			s.space()
			if !s.value(depth + 1) {
				return false
			}
			s.space()
			if s.skip('}') {
				return true
			}
			if !s.skip(',') {
				return false
			}
			s.space()
		}
	case c == '[':
		s.i++
		s.space()
		if s.skip(']') {
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			s.space()
			if s.skip(']') {
				return true
			}
			if !s.skip(',') {
				return false
			}
			s.space()
		}
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	default:
		return s.literal("true") || s.literal("false") || s.literal("null")
	}
}

// number skips a JSON number. Its text is kept as sent, as json.Compact keeps
// it, so its value does not matter.
func (s *publishScanner) number() bool {
	s.skip('-')
	if !s.skip('0') && s.digits() == 0 {
		return false
	}
	if s.skip('.') && s.digits() == 0 {
		return false
	}
	if s.skip('e') || s.skip('E') {
		if !s.skip('+') {
			s.skip('-')
		}
		if s.digits() == 0 {
			return false
		}
	}
	return true
}

func (s *publishScanner) digits() int {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// compact is raw without the whitespace between its tokens, as json.Compact
// writes it. raw passed value, so its strings hold no backslash and every
// quote opens or closes one.
func compact(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	inString := false
	for _, c := range raw {
		if c == '"' {
			inString = !inString
		}
		if !inString && isSpace(c) {
			continue
		}
		out = append(out, c)
	}
	return out
}
