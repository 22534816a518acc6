package hub

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/herald-hub/herald/engine"
)

func TestCursorRoundTripAcrossTopicsAndEpochs(t *testing.T) {
	topics := []string{"users/42", "rooms/7", "announcements"}
	pos := []engine.Position{{Epoch: "e1", Offset: 10}, {Epoch: "e2"}, {Epoch: "e1", Offset: 1 << 40}}
	hashes := make([]uint32, len(topics))
	for i, tp := range topics {
		hashes[i] = TopicHash(tp)
	}
	s := string(AppendCursor(nil, hashes, pos))
	c, err := ParseCursor(s)
	if err != nil {
		t.Fatal(err)
	}
	for i, tp := range topics {
		if p, ok := c.Lookup(tp); !ok || p != pos[i] {
			t.Errorf("%s: %v %v, want %v", tp, p, ok, pos[i])
		}
	}
	if _, ok := c.Lookup("other"); ok {
		t.Error("a topic not in the cursor was found")
	}
}

func TestCursorOf64TopicsStaysCompact(t *testing.T) {
	hashes := make([]uint32, 64)
	pos := make([]engine.Position, 64)
	for i := range pos {
		hashes[i] = TopicHash(string(rune('a' + i)))
		pos[i] = engine.Position{Epoch: "0123456789abcdef", Offset: 1_000_000 + uint64(i)}
	}
	if n := len(AppendCursor(nil, hashes, pos)); n > 1024 {
		t.Fatalf("64-topic cursor is %d bytes", n)
	}
}

func TestMalformedCursorsAreRefused(t *testing.T) {
	good := EncodeCursor("a", engine.Position{Epoch: "e", Offset: 3})
	for _, s := range []string{"", "!!!", "AA", good[:len(good)-1], good[:len(good)-3], good + "AAAA", "AgEB", string(make([]byte, MaxCursorLen+1))} {
		if _, err := ParseCursor(s); err == nil {
			t.Errorf("ParseCursor(%q) accepted", s)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(EncodeCursor("a", engine.Position{Epoch: "e", Offset: 3}))
	f.Add("AQEBZQIAAAAAAAEB")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to a cursor that parses to the same positions.
		hashes := make([]uint32, len(c.entries))
		pos := make([]engine.Position, len(c.entries))
		for i, e := range c.entries {
			hashes[i], pos[i] = e.hash, e.pos
		}
		c2, err := ParseCursor(string(AppendCursor(nil, hashes, pos)))
		if err != nil || len(c2.entries) != len(c.entries) {
			t.Fatalf("re-encoded cursor does not parse: %v", err)
		}
		for i := range c.entries {
			if c2.entries[i] != c.entries[i] {
				t.Fatalf("entry %d: %v != %v", i, c2.entries[i], c.entries[i])
			}
		}
	})
}

func BenchmarkCursorEncode(b *testing.B) {
	hashes := []uint32{TopicHash("users/42")}
	pos := []engine.Position{{Epoch: "0123456789abcdef", Offset: 123456}}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendCursor(buf[:0], hashes, pos)
	}
}

func BenchmarkCursorParse(b *testing.B) {
	s := EncodeCursor("users/42", engine.Position{Epoch: "0123456789abcdef", Offset: 123456})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCursor(s); err != nil {
			b.Fatal(err)
		}
	}
}

// collidingTopics finds two valid topics with the same cursor hash.
func collidingTopics(t *testing.T) (string, string) {
	t.Helper()
	seen := map[uint32]string{}
	for i := range 1 << 22 {
		topic := fmt.Sprintf("t/%d", i)
		h := TopicHash(topic)
		if other, ok := seen[h]; ok {
			return other, topic
		}
		seen[h] = topic
	}
	t.Fatal("no collision found")
	return "", ""
}

// A stream's cursor names topics by hash, so two topics whose hashes collide
// cannot share a stream: it is refused rather than resumed wrongly.
func TestCollidingTopicsCannotShareAStream(t *testing.T) {
	a, b := collidingTopics(t)
	h := New(openEngine(t), Options{})
	_, err := h.Subscribe(context.Background(), []string{a, b}, "")
	var ce *CollisionError
	if !errors.As(err, &ce) || ce.Topics != [2]string{a, b} {
		t.Fatalf("Subscribe(%q, %q) = %v, want a CollisionError", a, b, err)
	}
	if h.stats.connections.Load() != 0 {
		t.Fatal("a refused stream was registered")
	}
}
