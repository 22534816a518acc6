package sse

import "unicode/utf8"

// decodeUTF8 returns b as a string with invalid UTF-8 replaced as by the
// WHATWG "UTF-8 decode" browsers use on event streams.
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(appendUTF8(nil, b))
}

// appendUTF8 appends b to dst, replacing each maximal subpart of an ill-formed
// sequence with one U+FFFD, as the WHATWG Encoding standard does. This is not
// strings.ToValidUTF8, which replaces a whole run of invalid bytes with one
// U+FFFD: "\xE2\x82\xFF" is two replacements in a browser, one there.
//
// Decoding line by line gives the same text as decoding the whole stream: the
// bytes that split lines and fields are ASCII, which always end an ill-formed
// sequence and are never part of one.
func appendUTF8(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			n = maximalSubpart(b)
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
}

// maximalSubpart returns the length of the longest prefix of b that starts a
// well-formed UTF-8 sequence, at least 1. b must not start with a complete one.
func maximalSubpart(b []byte) int {
	lo, hi := byte(0x80), byte(0xBF)
	need := 0
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) && b[n] >= lo && b[n] <= hi {
		n++
		lo, hi = 0x80, 0xBF
	}
	return n
}
