package sse

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckField(t *testing.T) {
	for _, s := range []string{"", "a", "users/42", "\u2026", " x "} {
		if err := CheckField(s); err != nil {
			t.Errorf("CheckField(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"a\nb", "\r", "x\r\n", "a\x00"} {
		if err := CheckField(s); !errors.Is(err, ErrInvalidField) {
			t.Errorf("CheckField(%q) = %v, want ErrInvalidField", s, err)
		}
	}
}

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"id", AppendID(nil, "abc"), "id: abc\n"},
		{"type", AppendType(nil, "note"), "event: note\n"},
		{"empty type", AppendType(nil, ""), ""},
		{"field", AppendField(nil, "topic", "rooms/7"), "topic: rooms/7\n"},
		{"field sanitized", AppendField(nil, "id", "1\nevent: x\r\x00"), "id: 1\uFFFDevent: x\uFFFD\uFFFD\n"},
		{"data", AppendData(nil, []byte("a")), "data: a\n"},
		{"empty data", AppendData(nil, nil), "data: \n"},
		{"data lines", AppendData(nil, []byte("a\nb\r\nc\rd")), "data: a\ndata: b\ndata: c\ndata: d\n"},
		{"data trailing newline", AppendData(nil, []byte("a\n")), "data: a\ndata: \n"},
		{"data leading space", AppendData(nil, []byte(" a")), "data:  a\n"},
		{"data cr cr", AppendData(nil, []byte("\r\r")), "data: \ndata: \ndata: \n"},
		{"event", AppendEvent(nil, "7", "note", []byte("{}")), "id: 7\nevent: note\ndata: {}\n\n"},
		{"event no id no type", AppendEvent(nil, "", "", []byte("x")), "data: x\n\n"},
		{"retry", AppendRetry(nil, 1500*time.Millisecond), "retry: 1500\n"},
		{"retry negative", AppendRetry(nil, -time.Second), "retry: 0\n"},
		{"comment", AppendComment(nil, "heartbeat"), ": heartbeat\n"},
		{"comment lines", AppendComment(nil, "a\r\nb"), ": a\n: b\n"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// Guarantee 6: nothing in data, or in a comment, can start another field or
// event, whatever line breaks it holds.
func TestDataInjection(t *testing.T) {
	hostile := []string{
		"x\n\nevent: evil\ndata: injected",
		"\r\nid: 9",
		"\r",
		"\n",
		"\r\n\r\n",
		"a\r\rretry: 1\r\r",
		"\n\nid: 1\n\ndata: x\n\n",
		": comment\ndata: y",
		"topic: users/1",
		"\ruser\rid\r",
	}
	for _, payload := range hostile {
		b := AppendEvent(nil, "good", "ok", []byte(payload))
		b = AppendComment(b, payload)
		b = append(b, '\n')
		got := decodeAll(strings.NewReader(string(b)))
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(payload)
		if got.err != nil || len(got.events) != 1 {
			t.Errorf("%q: got %d events (%v), want 1: %q", payload, len(got.events), got.err, b)
			continue
		}
		ev := got.events[0]
		if ev != (Event{ID: "good", Type: "ok", Data: want}) {
			t.Errorf("%q: got %+v", payload, ev)
		}
		if got.lastID != "good" || got.retry != -1 {
			t.Errorf("%q: LastEventID %q, retry %v", payload, got.lastID, got.retry)
		}
	}
}

func TestAppendNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 1024)
	data := []byte(`{"a":1}` + "\n" + `{"b":2}`)
	n := testing.AllocsPerRun(100, func() {
		b := AppendRetry(buf[:0], time.Second)
		b = AppendComment(b, "heartbeat")
		b = AppendEvent(b, "cursor", "note", data)
		_ = AppendField(b, "topic", "users/42")
	})
	if n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}
