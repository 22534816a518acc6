package sse

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

type decoded struct {
	events []Event
	lastID string
	retry  time.Duration // -1 when none
	err    error
}

func decodeAll(r io.Reader) decoded {
	d := NewDecoder(r)
	var out decoded
	for {
		ev, err := d.Next()
		if err != nil {
			if err != io.EOF {
				out.err = err
			}
			break
		}
		out.events = append(out.events, ev)
	}
	out.lastID = d.LastEventID()
	out.retry = -1
	if r, ok := d.Retry(); ok {
		out.retry = r
	}
	return out
}

func msg(data string) Event { return Event{Type: "message", Data: data} }

// Cases from the WHATWG HTML spec's examples and mirroring web-platform-tests
// eventsource/format-*.any.js.
var decodeTests = []struct {
	name   string
	in     string
	want   []Event
	lastID string
	retry  time.Duration // -1: no valid retry field
}{
	{"spec stock", "data: YHOO\ndata: +2\ndata: 10\n\n", []Event{msg("YHOO\n+2\n10")}, "", -1},
	{"spec four blocks",
		": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
		[]Event{{ID: "1", Type: "message", Data: "first event"}, msg("second event"), msg(" third event")}, "", -1},
	{"spec empty data and unterminated", "data\n\ndata\ndata\n\ndata:", []Event{msg(""), msg("\n")}, "", -1},
	{"spec space optional", "data:test\n\ndata: test\n\n", []Event{msg("test"), msg("test")}, "", -1},
	{"bom", "\uFEFFdata:1\n\n\uFEFFdata:2\n\ndata:3\n\n", []Event{msg("1"), msg("3")}, "", -1},
	{"bom-2 second not stripped", "\uFEFF\uFEFFdata:1\n\ndata:2\n\ndata:3\n\n", []Event{msg("2"), msg("3")}, "", -1},
	{"partial bom", "\xEF\xBBdata:1\n\ndata:2\n\n", []Event{msg("2")}, "", -1},
	{"comments",
		"data:1\r:\x00\n:\r\ndata:2\n:" + strings.Repeat("x", 2048) + "\rdata:3\n:data:fail\r:" + strings.Repeat("x", 2048) + "\ndata:4\n\n",
		[]Event{msg("1\n2\n3\n4")}, "", -1},
	{"field parsing",
		"data:\x00\ndata:  2\rData:1\ndata\x00:2\ndata:1\r\x00data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n",
		[]Event{msg("\x00\n 2\n1\n3\n\n4")}, "", -1},
	{"field name case sensitive", "Data: x\nDATA: y\nEVENT: t\nId: 3\ndata: z\n\n", []Event{msg("z")}, "", -1},
	{"leading space", "data:\ttest\rdata: \ndata:test\n\n", []Event{msg("\ttest\n\ntest")}, "", -1},
	{"one space stripped", "data:  two\n\n", []Event{msg(" two")}, "", -1},
	{"newlines", "data:test\r\ndata\ndata:test\r\n\r\n", []Event{msg("test\n\ntest")}, "", -1},
	{"cr only", "data:a\rdata:b\r\rdata:c\r\r", []Event{msg("a\nb"), msg("c")}, "", -1},
	{"lf cr mix", "data:a\n\rdata:b\r\n\n", []Event{msg("a"), msg("b")}, "", -1},
	{"null character", "data:\x00\n\n", []Event{msg("\x00")}, "", -1},
	{"event type", "event:test\ndata:x\n\ndata:y\n\n", []Event{{Type: "test", Data: "x"}, msg("y")}, "", -1},
	{"event empty", "event: \ndata:data\n\n", []Event{msg("data")}, "", -1},
	{"type reset by block without data", "event: t\n\ndata: x\n\n", []Event{msg("x")}, "", -1},
	{"id persists", "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
		[]Event{{ID: "1", Type: "message", Data: "a"}, {ID: "1", Type: "message", Data: "b"}, msg("c")}, "", -1},
	{"id with NUL ignored", "id: x\x00\ndata: hello\n\n", []Event{msg("hello")}, "", -1},
	{"id with NUL keeps previous", "id: 1\n\nid: \x00\ndata: hello\n\n", []Event{{ID: "1", Type: "message", Data: "hello"}}, "1", -1},
	{"id only block", "id: 7\n\n", nil, "7", -1},
	{"id only block then event", "id: 7\n\n: heartbeat\n\nevent: e\ndata: x\n\n", []Event{{ID: "7", Type: "e", Data: "x"}}, "7", -1},
	{"id without blank line not taken", "id: 7\n\nid: 8\ndata: lost", nil, "7", -1},
	{"id unicode", "id: \u2026\ndata: hello\n\n", []Event{{ID: "\u2026", Type: "message", Data: "hello"}}, "\u2026", -1},
	{"retry", "retry: 1000\ndata:x\n\n", []Event{msg("x")}, "", time.Second},
	{"retry bogus", "retry:3000\nretry:1000x\ndata:x\n\n", []Event{msg("x")}, "", 3 * time.Second},
	{"retry empty", "retry\ndata:test\n\n", []Event{msg("test")}, "", -1},
	{"retry two spaces", "retry:  10\n\n", nil, "", -1},
	{"retry negative", "retry: -1\n\n", nil, "", -1},
	{"retry overflow", "retry: 99999999999999999999\n\n", nil, "", -1},
	{"retry without blank line", "retry: 5", nil, "", -1},
	{"retry line taken at once", "retry: 5\n", nil, "", 5 * time.Millisecond},
	{"unknown fields",
		"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n",
		[]Event{msg("test\n\ntest")}, "", -1},
	{"trailing event not dispatched", "data: a\n\ndata: b\n", []Event{msg("a")}, "", -1},
	{"trailing line not processed", "data: a\n\ndata: b", []Event{msg("a")}, "", -1},
	{"topic", "id: c1\nevent: note\ntopic: users/42\ndata: {}\n\ndata: x\n\n",
		[]Event{{ID: "c1", Type: "note", Topic: "users/42", Data: "{}"}, {ID: "c1", Type: "message", Data: "x"}}, "c1", -1},
	{"utf-8", "data:ok\xE2\x80\xA6\n\n", []Event{msg("ok\u2026")}, "", -1},
	{"invalid utf-8 maximal subparts", "data: \xE2\x82\xFF!\xF0\x80\xED\xA0\x80\xC0\n\n",
		[]Event{msg("\uFFFD\uFFFD!\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD")}, "", -1},
	{"truncated sequence before line end", "event: \xE2\x82\rdata: \xF0\x9F\x98\n\n",
		[]Event{{Type: "\uFFFD", Data: "\uFFFD"}}, "", -1},
}

func TestDecoder(t *testing.T) {
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data err": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, tt := range decodeTests {
		for rname, mk := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				got := decodeAll(mk(tt.in))
				if got.err != nil {
					t.Fatalf("error %v", got.err)
				}
				if !equalEvents(got.events, tt.want) {
					t.Errorf("events\n got %q\nwant %q", got.events, tt.want)
				}
				if got.lastID != tt.lastID {
					t.Errorf("LastEventID %q, want %q", got.lastID, tt.lastID)
				}
				if got.retry != tt.retry {
					t.Errorf("Retry %v, want %v", got.retry, tt.retry)
				}
			})
		}
	}
}

func equalEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A CR ends a line at once: a live stream must not wait for the next byte to
// dispatch an event ended by CR CR.
func TestDecoderCRDoesNotWait(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("data: x\r\r"))
	d := NewDecoder(pr)
	done := make(chan Event)
	go func() {
		ev, _ := d.Next()
		done <- ev
	}()
	select {
	case ev := <-done:
		if ev.Data != "x" {
			t.Fatalf("got %q", ev.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next waited for more input after CR CR")
	}
	// The LF that may follow a CR in the next read is part of that line end.
	go pw.Write([]byte("\ndata: y\n\n"))
	go func() {
		ev, _ := d.Next()
		done <- ev
	}()
	if ev := <-done; ev.Data != "y" {
		t.Fatalf("got %q", ev.Data)
	}
}

func TestDecoderNextBlock(t *testing.T) {
	d := NewDecoder(strings.NewReader("retry: 10\n: hi\nid: a\n\nid: b\ndata: x\n\n"))
	ev, ok, err := d.NextBlock()
	if err != nil || ok || d.LastEventID() != "a" {
		t.Fatalf("first block: %v %v %v, LastEventID %q", ev, ok, err, d.LastEventID())
	}
	ev, ok, err = d.NextBlock()
	if err != nil || !ok || ev.ID != "b" || ev.Data != "x" {
		t.Fatalf("second block: %v %v %v", ev, ok, err)
	}
	if _, _, err = d.NextBlock(); err != io.EOF {
		t.Fatalf("got %v, want EOF", err)
	}
}

func TestDecoderLimit(t *testing.T) {
	for name, in := range map[string]string{
		"long line":  "data: " + strings.Repeat("x", 100) + "\n\n",
		"long event": strings.Repeat("data: xxxxxxxxxx\n", 20) + "\n",
		"no newline": strings.Repeat("x", 1000),
	} {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder(strings.NewReader(in))
			d.SetLimit(64)
			if _, err := d.Next(); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			if _, err := d.Next(); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error not sticky: %v", err)
			}
		})
	}
	// Within the limit the buffer grows as needed.
	long := strings.Repeat("y", 100_000)
	got := decodeAll(strings.NewReader("data: " + long + "\n\n"))
	if got.err != nil || len(got.events) != 1 || got.events[0].Data != long {
		t.Fatalf("long line: %v", got.err)
	}
}

func TestDecoderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom))
	got := decodeAll(r)
	if !errors.Is(got.err, boom) || len(got.events) != 1 {
		t.Fatalf("got %v, %v", got.events, got.err)
	}
}

// feedAll decodes in with AppendEvents, fed in pieces of the given sizes
// (cycled; the rest in one piece when there are none).
func feedAll(in []byte, sizes []int) decoded {
	d := NewDecoder(nil)
	var out decoded
	for i := 0; len(in) > 0; i++ {
		n := len(in)
		if len(sizes) > 0 {
			n = min(n, max(sizes[i%len(sizes)], 1))
		}
		var err error
		out.events, err = d.AppendEvents(out.events, in[:n])
		in = in[n:]
		if err != nil {
			out.err = err
			break
		}
	}
	out.lastID = d.LastEventID()
	out.retry = -1
	if r, ok := d.Retry(); ok {
		out.retry = r
	}
	return out
}

// AppendEvents gives what Next gives however the stream is cut.
func TestAppendEvents(t *testing.T) {
	for _, tt := range decodeTests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			check := func(how string, got decoded) {
				t.Helper()
				if got.err != nil || !equalEvents(got.events, tt.want) || got.lastID != tt.lastID || got.retry != tt.retry {
					t.Fatalf("%s: got %q %q %v %v, want %q %q %v", how, got.events, got.lastID, got.retry, got.err,
						tt.want, tt.lastID, tt.retry)
				}
			}
			check("whole", feedAll(in, nil))
			check("bytes", feedAll(in, []int{1}))
			for i := range in {
				check(fmt.Sprintf("cut at %d", i), feedAll(in, []int{i, len(in)}))
				for j := i + 1; j < len(in) && len(in) <= 200; j++ {
					check(fmt.Sprintf("cut at %d and %d", i, j), feedAll(in, []int{i, j - i, len(in)}))
				}
			}
		})
	}
}

// A Decoder fed in place keeps only a partial line between calls.
func TestAppendEventsKeepsOnlyTheTail(t *testing.T) {
	var in []byte
	for i := range 1000 {
		in = AppendID(in, strconv.Itoa(i))
		in = AppendData(in, []byte(strings.Repeat("x", 100)))
		in = append(in, '\n')
	}
	in = append(in, "data: tail"...)
	d := NewDecoder(nil)
	evs, err := d.AppendEvents(nil, in)
	if err != nil || len(evs) != 1000 || d.LastEventID() != "999" {
		t.Fatalf("%d events, %v, LastEventID %q", len(evs), err, d.LastEventID())
	}
	if cap(d.buf) > 64 {
		t.Errorf("the Decoder holds a buffer of %d bytes after a call that left %d", cap(d.buf), len("data: tail"))
	}
	evs, err = d.AppendEvents(evs[:0], []byte("\n\n"))
	if err != nil || len(evs) != 1 || evs[0].Data != "tail" || evs[0].ID != "999" {
		t.Fatalf("tail: %q %v", evs, err)
	}
}

func TestAppendEventsLimit(t *testing.T) {
	for name, in := range map[string]string{
		"long line":      "data: " + strings.Repeat("x", 100) + "\n\n",
		"long event":     strings.Repeat("data: xxxxxxxxxx\n", 20) + "\n",
		"no newline":     strings.Repeat("x", 1000),
		"long kept line": "data: a\n\n" + strings.Repeat("x", 65),
	} {
		for _, size := range []int{1, 7, len(in)} {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				d := NewDecoder(nil)
				d.SetLimit(64)
				var err error
				for p := []byte(in); len(p) > 0 && err == nil; p = p[min(size, len(p)):] {
					_, err = d.AppendEvents(nil, p[:min(size, len(p))])
				}
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("got %v, want ErrTooLarge", err)
				}
				if _, err := d.AppendEvents(nil, []byte("data: x\n\n")); !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error not sticky: %v", err)
				}
			})
		}
	}
	if _, err := NewDecoder(strings.NewReader("")).AppendEvents(nil, []byte("data: x\n\n")); err == nil {
		t.Error("AppendEvents on a Decoder with a Reader succeeded")
	}
}
