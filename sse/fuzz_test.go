package sse

import (
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

func FuzzDecoder(f *testing.F) {
	for _, tt := range decodeTests {
		f.Add([]byte(tt.in))
	}
	f.Add([]byte("id: 1\r\n\r\nevent: x\rdata: a\r\n\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		whole := decodeAll(bytes.NewReader(in))
		split := decodeAll(iotest.OneByteReader(bytes.NewReader(in)))
		if !equalEvents(whole.events, split.events) || whole.lastID != split.lastID || whole.retry != split.retry {
			t.Fatalf("result depends on read boundaries:\n%q\n%q", whole.events, split.events)
		}
		if whole.err != nil {
			t.Fatalf("unexpected error %v", whole.err)
		}
		for _, sizes := range [][]int{nil, {1}} {
			if fed := feedAll(in, sizes); !sameDecoded(fed, whole) {
				t.Fatalf("AppendEvents in pieces of %v differs from Next:\n got %q %q %v %v\nwant %q %q %v",
					sizes, fed.events, fed.lastID, fed.retry, fed.err, whole.events, whole.lastID, whole.retry)
			}
		}
		ref := reference(in)
		if !equalEvents(whole.events, ref.events) || whole.lastID != ref.lastID || whole.retry != ref.retry {
			t.Fatalf("decoder and reference differ:\n got %q %q %v\nwant %q %q %v",
				whole.events, whole.lastID, whole.retry, ref.events, ref.lastID, ref.retry)
		}
		for _, ev := range whole.events {
			// Single-line fields never hold a line break; the id never a NUL.
			for _, s := range []string{ev.ID, ev.Type, ev.Topic} {
				if strings.ContainsAny(s, "\r\n") {
					t.Fatalf("line break in a field: %+v", ev)
				}
			}
			if strings.ContainsRune(ev.ID, 0) || ev.Type == "" || strings.Contains(ev.Data, "\r") {
				t.Fatalf("bad event %+v", ev)
			}
			if !utf8.ValidString(ev.ID) || !utf8.ValidString(ev.Type) || !utf8.ValidString(ev.Data) || !utf8.ValidString(ev.Topic) {
				t.Fatalf("invalid UTF-8 in %+v", ev)
			}
		}
	})
}

// Fed to AppendEvents in any pieces, a stream decodes exactly as Next
// decodes it: the same events, last event ID and retry.
func FuzzAppendEvents(f *testing.F) {
	for _, tt := range decodeTests {
		f.Add([]byte(tt.in), []byte{3, 1, 7})
	}
	f.Add([]byte("\xEF\xBB\xBFid: 1\r\n\r\nevent: x\rdata: a\r\n\r"), []byte{1, 2, 1, 5})
	f.Add([]byte("\xEF\xBB\xBF\xEF\xBB\xBF\ndata: x\r\r\ndata: y\n\n"), []byte{2, 2, 3})
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		sizes := make([]int, len(cuts))
		for i, c := range cuts {
			sizes[i] = int(c)
		}
		want := decodeAll(bytes.NewReader(in))
		if got := feedAll(in, sizes); !sameDecoded(got, want) {
			t.Fatalf("AppendEvents in pieces of %v differs from Next:\n got %q %q %v %v\nwant %q %q %v %v",
				sizes, got.events, got.lastID, got.retry, got.err, want.events, want.lastID, want.retry, want.err)
		}
	})
}

func sameDecoded(a, b decoded) bool {
	return equalEvents(a.events, b.events) && a.lastID == b.lastID && a.retry == b.retry && a.err == b.err
}

func FuzzRoundTrip(f *testing.F) {
	f.Add("1", "note", "users/42", []byte("hello"))
	f.Add("", "", "", []byte(""))
	f.Add("\u2026", " t ", "a", []byte("x\n\nevent: evil\ndata: injected"))
	f.Add("c", "e", "t", []byte("\r\nid: 9\r"))
	f.Add(" id", "message", "", []byte(" lead\n"))
	f.Fuzz(func(t *testing.T, id, typ, topic string, data []byte) {
		if CheckField(id) != nil || CheckField(typ) != nil || CheckField(topic) != nil {
			t.Skip()
		}
		if !utf8.ValidString(id) || !utf8.ValidString(typ) || !utf8.ValidString(topic) || !utf8.Valid(data) {
			t.Skip() // decoders replace invalid UTF-8; Herald only sends UTF-8
		}
		var b []byte
		if id == "" {
			b = AppendID(b, "prev") // an empty id must reset the last event ID
			b = append(b, '\n')
		}
		b = AppendID(b, id)
		b = AppendType(b, typ)
		if topic != "" {
			b = AppendField(b, "topic", topic)
		}
		b = AppendData(b, data)
		b = append(b, '\n')

		d := NewDecoder(bytes.NewReader(b))
		ev, err := d.Next()
		if err != nil {
			t.Fatalf("Next: %v for %q", err, b)
		}
		if _, err := d.Next(); err != io.EOF {
			t.Fatalf("more than one event in %q", b)
		}
		want := Event{ID: id, Type: typ, Topic: topic, Data: normalize(string(data))}
		if want.Type == "" {
			want.Type = "message"
		}
		if ev != want {
			t.Fatalf("round trip of %q\n got %+v\nwant %+v", b, ev, want)
		}
	})
}

func normalize(s string) string {
	return strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(s)
}

// reference is a direct reading of the spec, on the whole stream at once:
// decode it, drop a BOM, split lines, process fields.
func reference(in []byte) decoded {
	s := strings.TrimPrefix(string(appendUTF8(nil, in)), "\uFEFF")
	out := decoded{retry: -1}
	var data, typ, topic, idBuf string
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return out // an unterminated line is discarded
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
		if line == "" {
			out.lastID = idBuf
			if data != "" {
				ev := Event{ID: idBuf, Type: typ, Data: strings.TrimSuffix(data, "\n"), Topic: topic}
				if ev.Type == "" {
					ev.Type = "message"
				}
				out.events = append(out.events, ev)
			}
			data, typ, topic = "", "", ""
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if ok {
			value = strings.TrimPrefix(value, " ")
		}
		switch name {
		case "event":
			typ = value
		case "data":
			data += value + "\n"
		case "id":
			if !strings.ContainsRune(value, 0) {
				idBuf = value
			}
		case "retry":
			if ms, err := strconv.ParseUint(value, 10, 63); err == nil && ms <= uint64(math.MaxInt64/int64(time.Millisecond)) {
				out.retry = time.Duration(ms) * time.Millisecond
			}
		case "topic":
			topic = value
		}
	}
}
