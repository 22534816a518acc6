package server

import (
	"net/http"
	"strconv"
)

// writeResult answers the publish of a single event with r: the bytes and
// headers writeJSON gives, without encoding/json's reflection.
func writeResult(w http.ResponseWriter, r publishResult) {
	// Room for the strings, the fixed text and the longest offset.
	b, ok := appendResult(make([]byte, 0, len(r.ID)+len(r.Topic)+64), r)
	if !ok {
		writeJSON(w, http.StatusOK, r)
		return
	}
	setJSONHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// appendResult appends r as json.Encoder writes it, trailing newline
// included. It reports false, and appends nothing, when a string holds a byte
// that encoding/json would escape: never for a valid topic or an event id,
// which are plain ASCII.
func appendResult(b []byte, r publishResult) ([]byte, bool) {
	if !plainJSONString(r.ID) || !plainJSONString(r.Topic) {
		return b, false
	}
	b = append(b, `{"id":"`...)
	b = append(b, r.ID...)
	b = append(b, `","topic":"`...)
	b = append(b, r.Topic...)
	b = append(b, `","offset":`...)
	b = strconv.AppendUint(b, r.Offset, 10)
	b = append(b, "}\n"...)
	return b, true
}

// plainJSONString reports whether encoding/json, escaping HTML as
// json.Encoder does by default, writes s as it is between quotes: printable
// ASCII but for ", \, <, > and &.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
