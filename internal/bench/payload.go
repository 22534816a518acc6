package bench

import (
	"strconv"
	"strings"
)

// The payload of every event the bench publishes is a small JSON object
// {"seq":N,"ts":T[,"pad":"..."]}: seq numbers each topic's events from 1, so a
// subscriber counts what it lost and what came twice, and ts is the publish
// time in Unix nanoseconds, so it measures latency. Receivers look the keys up
// anywhere in the data, which survives hubs that wrap the payload in an
// envelope of their own.

// appendPayload appends the payload of event seq published at ts.
func appendPayload(b []byte, seq uint64, ts int64, pad int) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	if pad > 0 {
		b = append(b, `,"pad":"`...)
		for range pad {
			b = append(b, 'x')
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// parsePayload finds seq and ts in data; ok is false when either is missing.
func parsePayload(data string) (seq uint64, ts int64, ok bool) {
	s, ok1 := numberAfter(data, `"seq":`)
	t, ok2 := numberAfter(data, `"ts":`)
	if !ok1 || !ok2 || s <= 0 {
		return 0, 0, false
	}
	return uint64(s), t, true
}

// numberAfter parses the non-negative integer that follows key in s, allowing
// spaces and a backslash-escaped quote (the payload JSON-encoded as a string).
func numberAfter(s, key string) (int64, bool) {
	i := strings.Index(s, key)
	if i < 0 {
		// An envelope that carries the payload as a JSON string escapes quotes.
		esc := strings.ReplaceAll(key, `"`, `\"`)
		if i = strings.Index(s, esc); i < 0 {
			return 0, false
		}
		key = esc
	}
	s = strings.TrimLeft(s[i+len(key):], " ")
	var n int64
	j := 0
	for ; j < len(s) && s[j] >= '0' && s[j] <= '9'; j++ {
		n = n*10 + int64(s[j]-'0')
	}
	return n, j > 0
}
