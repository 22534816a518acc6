package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// unframe pushes in to a body in the given pieces and returns the content,
// what followed the body's end, and the error.
func unframe(b *body, in string, cuts ...int) (content, after string, err error) {
	var c, a strings.Builder
	last := 0
	for _, cut := range append(cuts, len(in)) {
		p := []byte(in[last:cut])
		last = cut
		for len(p) > 0 {
			data, rest, err := b.next(p)
			if err != nil {
				return c.String(), a.String(), err
			}
			c.Write(data)
			if b.done() {
				a.Write(rest)
				break
			}
			p = rest
		}
	}
	return c.String(), a.String(), nil
}

func chunkedBody() *body { return &body{chunked: true} }

// chunked frames s as chunks of the given sizes (the rest in one more), each
// size formatted with format, and the last chunk.
func chunked(s, format string, sizes ...int) string {
	var b strings.Builder
	for _, n := range append(sizes, len(s)) {
		n = min(n, len(s))
		if n == 0 {
			break
		}
		fmt.Fprintf(&b, format+"\r\n%s\r\n", n, s[:n])
		s = s[n:]
	}
	return b.String() + "0\r\n\r\n"
}

func TestChunkedSplitAnywhere(t *testing.T) {
	const want = "data: one\n\nid: 2\ndata: two\n\n: comment\r\n\r\n"
	for name, in := range map[string]string{
		"one chunk":    fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(want), want),
		"many chunks":  chunked(want, "%x", 3, 8, 1, 1, 20),
		"upper hex":    chunked(want, "%X", 26),
		"extensions":   fmt.Sprintf("%X;name=value \r\n%s\r\n0;last\r\n\r\n", len(want), want),
		"trailers":     fmt.Sprintf("%x\r\n%s\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", len(want), want),
		"leading zero": fmt.Sprintf("000%x\r\n%s\r\n00\r\n\r\n", len(want), want),
	} {
		t.Run(name, func(t *testing.T) {
			in += "beyond"
			check := func(how string, cuts ...int) {
				t.Helper()
				b := chunkedBody()
				got, after, err := unframe(b, in, cuts...)
				if err != nil || got != want || !b.done() || after != "beyond" || b.atEOF() != nil {
					t.Fatalf("%s: got %q, after %q, done %v, %v", how, got, after, b.done(), err)
				}
			}
			check("whole")
			for i := 1; i < len(in); i++ {
				check(fmt.Sprintf("cut at %d", i), i)
				for j := i + 1; j < len(in); j++ {
					check(fmt.Sprintf("cut at %d and %d", i, j), i, j)
				}
			}
			var bytes []int
			for i := 1; i < len(in); i++ {
				bytes = append(bytes, i)
			}
			check("bytes", bytes...)
		})
	}
}

func TestChunkedMalformed(t *testing.T) {
	long := strings.Repeat("0", maxChunkLine) + "1\r\nx\r\n0\r\n\r\n"
	for name, in := range map[string]string{
		"bare LF":            "3\ndat\r\n0\r\n\r\n",
		"CR in line":         "3\r;\r\ndat\r\n0\r\n\r\n",
		"not hex":            "3g\r\ndat\r\n0\r\n\r\n",
		"empty size":         "\r\ndat\r\n0\r\n\r\n",
		"only extension":     ";x\r\ndat\r\n0\r\n\r\n",
		"leading space":      " 3\r\ndat\r\n0\r\n\r\n",
		"space before ext":   "3 ;x\r\ndat\r\n0\r\n\r\n",
		"too many digits":    "10000000000000000\r\n",
		"too large":          "8000000000000000\r\n",
		"no CRLF after data": "3\r\ndata\r\n0\r\n\r\n",
		"LF after data":      "3\r\ndat\n0\r\n\r\n",
		"long size line":     long,
		"long trailer":       "0\r\nX: " + strings.Repeat("y", maxChunkLine) + "\r\n\r\n",
		"trailer bare LF":    "0\r\nX: 1\n\r\n",
		"empty bare LF":      "\n",
	} {
		t.Run(name, func(t *testing.T) {
			for i := range len(in) {
				b := chunkedBody()
				var err error
				if i == 0 {
					_, _, err = unframe(b, in)
				} else {
					_, _, err = unframe(b, in, i)
				}
				if !errors.Is(err, errChunked) {
					t.Fatalf("cut at %d: got %v, want a chunked-encoding error", i, err)
				}
			}
		})
	}
}

func TestChunkedEndsEarly(t *testing.T) {
	for _, in := range []string{"", "5", "5\r\nab", "5\r\nabcde", "5\r\nabcde\r", "5\r\nabcde\r\n0\r\n", "0\r\nX: 1\r\n"} {
		b := chunkedBody()
		if _, _, err := unframe(b, in); err != nil || b.done() {
			t.Fatalf("%q: %v, done %v", in, err, b.done())
		}
		if err := b.atEOF(); err != io.ErrUnexpectedEOF {
			t.Errorf("%q: at EOF got %v, want unexpected EOF", in, err)
		}
	}
}

func TestIdentityBody(t *testing.T) {
	b := newBody(&http.Response{ContentLength: -1})
	got, _, err := unframe(b, "data: x\n\n", 3)
	if err != nil || got != "data: x\n\n" || b.done() || b.atEOF() != nil {
		t.Fatalf("to EOF: %q %v, done %v, at EOF %v", got, err, b.done(), b.atEOF())
	}
	b = newBody(&http.Response{ContentLength: 5})
	got, after, err := unframe(b, "abcdefg", 2)
	if err != nil || got != "abcde" || after != "fg" || !b.done() {
		t.Fatalf("with a length: %q %q %v, done %v", got, after, err, b.done())
	}
	b = newBody(&http.Response{ContentLength: 5})
	if _, _, err := unframe(b, "abc"); err != nil || b.atEOF() != io.ErrUnexpectedEOF {
		t.Fatalf("short: %v, at EOF %v", err, b.atEOF())
	}
	if b := newBody(&http.Response{TransferEncoding: []string{"chunked"}, ContentLength: -1}); !b.chunked {
		t.Fatal("chunked response without chunked body")
	}
}

// The framing is undone as net/http undoes it, however the input is cut.
func FuzzChunked(f *testing.F) {
	f.Add([]byte(chunked("data: one\n\nid: 2\ndata: two\n\n", "%x", 3, 8, 1)), []byte{5, 1, 9})
	f.Add([]byte("5;x=y \r\nabcde\r\n0\r\nX: 1\r\n\r\n"), []byte{2})
	f.Add([]byte("3\r\nabc\r\n3\r\nab"), []byte{4})
	f.Add([]byte("3\ndat\r\n0\r\n\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, in, cutBytes []byte) {
		want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in)))
		if werr != nil && strings.Contains(werr.Error(), "too much non-data") {
			t.Skip() // net/http's guard against overhead; the bench reads a known server
		}
		var cuts []int
		at := 0
		for _, c := range cutBytes {
			if at += int(c); at >= len(in) {
				break
			}
			cuts = append(cuts, at)
		}
		b := chunkedBody()
		got, _, err := unframe(b, string(in), cuts...)
		switch {
		case werr == nil: // net/http stops at the last chunk; trailers follow
			if got != string(want) || err != nil && b.state != chunkTrailer || err == nil && b.state < chunkTrailer {
				t.Fatalf("got %q, %v in state %d; net/http %q", got, err, b.state, want)
			}
		case werr == io.ErrUnexpectedEOF:
			if err != nil && strings.Contains(err.Error(), "too large") {
				return // net/http waits for more than an int64 of data
			}
			if err != nil && strings.Contains(err.Error(), "not followed by CRLF") {
				return // net/http reads both bytes before it looks
			}
			if got != string(want) || err != nil || b.done() || b.atEOF() != io.ErrUnexpectedEOF {
				t.Fatalf("got %q, %v, done %v; net/http %q then unexpected EOF", got, err, b.done(), want)
			}
		default:
			if !errors.Is(err, errChunked) {
				t.Fatalf("got %q, %v; net/http %q, %v", got, err, want, werr)
			}
		}
	})
}
