package hub

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

func TestCursorRoundTripAcrossTopicsAndEpochs(t *testing.T) {
	topics := []string{"users/42", "rooms/7", "announcements"}
	pos := []engine.Position{{Epoch: "e1", Offset: 10}, {Epoch: "e2"}, {Epoch: "e1", Offset: 1 << 40}}
	hashes := make([]uint32, len(topics))
	for i, tp := range topics {
		hashes[i] = TopicHash(tp)
	}
	s := string(AppendCursor(nil, hashes, pos, nil))
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

func TestCursorKeepsTheCheckOfEachEvent(t *testing.T) {
	hashes := []uint32{TopicHash("a"), TopicHash("b")}
	pos := []engine.Position{{Epoch: "e", Offset: 7}, {Epoch: "e", Offset: 9}}
	c, err := ParseCursor(string(AppendCursor(nil, hashes, pos, []uint32{0xbeef01, 0})))
	if err != nil {
		t.Fatal(err)
	}
	if p, check, ok := c.LookupCheck("a"); !ok || p != pos[0] || check != 0xbeef01 {
		t.Fatalf("a: %v %x %v", p, check, ok)
	}
	if _, check, _ := c.LookupCheck("b"); check != 0 {
		t.Fatalf("b: check %x, want 0 (unknown)", check)
	}
	// A cursor of the first version, from before checks, still reads, with
	// every check unknown: clients holding one resume across an upgrade.
	raw := []byte{1, 1, 1, 'e', 2}
	raw = append(binary.BigEndian.AppendUint32(raw, TopicHash("a")), 0, 1)
	raw = append(binary.BigEndian.AppendUint32(raw, TopicHash("b")), 0, 9)
	v1, err := ParseCursor(base64.RawURLEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	if p, check, ok := v1.LookupCheck("b"); !ok || check != 0 || p != (engine.Position{Epoch: "e", Offset: 9}) {
		t.Fatalf("version 1 cursor read as %+v", v1.entries)
	}
}

func TestEventCheckTellsEventsApart(t *testing.T) {
	base := engine.Event{Type: "ab", Data: []byte("c"), Time: time.Unix(100, 5)}
	seen := map[uint32]string{EventCheck(base): "base"}
	for name, ev := range map[string]engine.Event{
		"time":  {Type: "ab", Data: []byte("c"), Time: time.Unix(100, 6)},
		"type":  {Type: "ax", Data: []byte("c"), Time: time.Unix(100, 5)},
		"data":  {Type: "ab", Data: []byte("d"), Time: time.Unix(100, 5)},
		"split": {Type: "a", Data: []byte("bc"), Time: time.Unix(100, 5)},
	} {
		c := EventCheck(ev)
		if c == 0 {
			t.Fatalf("%s: check 0, which means unknown", name)
		}
		if other, dup := seen[c]; dup {
			t.Fatalf("%s has the check of %s", name, other)
		}
		seen[c] = name
	}
}

func TestCursorOf64TopicsStaysCompact(t *testing.T) {
	hashes := make([]uint32, 64)
	pos := make([]engine.Position, 64)
	for i := range pos {
		hashes[i] = TopicHash(string(rune('a' + i)))
		pos[i] = engine.Position{Epoch: "0123456789abcdef", Offset: 1_000_000 + uint64(i)}
	}
	if n := len(AppendCursor(nil, hashes, pos, nil)); n > 1024 {
		t.Fatalf("64-topic cursor is %d bytes", n)
	}
}

func TestMalformedCursorsAreRefused(t *testing.T) {
	good := EncodeCursor("a", engine.Position{Epoch: "e", Offset: 3}, 0)
	for _, s := range []string{"", "!!!", "AA", good[:len(good)-1], good[:len(good)-3], good + "AAAA", "AgEB", string(make([]byte, MaxCursorLen+1))} {
		if _, err := ParseCursor(s); err == nil {
			t.Errorf("ParseCursor(%q) accepted", s)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(EncodeCursor("a", engine.Position{Epoch: "e", Offset: 3}, 0))
	f.Add("AQEBZQIAAAAAAAEB")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to a cursor that parses to the same positions.
		hashes := make([]uint32, len(c.entries))
		pos := make([]engine.Position, len(c.entries))
		checks := make([]uint32, len(c.entries))
		for i, e := range c.entries {
			hashes[i], pos[i], checks[i] = e.hash, e.pos, e.check
		}
		c2, err := ParseCursor(string(AppendCursor(nil, hashes, pos, checks)))
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
		buf = AppendCursor(buf[:0], hashes, pos, nil)
	}
}

func BenchmarkCursorParse(b *testing.B) {
	s := EncodeCursor("users/42", engine.Position{Epoch: "0123456789abcdef", Offset: 123456}, 0)
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
