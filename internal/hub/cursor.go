package hub

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/herald-hub/herald/engine"
)

// A cursor is what a connection has seen: one position per subscribed topic. It is
// written into the SSE id of every event, so the browser's Last-Event-ID brings the
// whole vector back on reconnect. Events of different topics live in different logs
// and may reach a node out of global order, so a single "last id" would skip events.
//
// Wire form (opaque to clients): base64url without padding of
//
//	version(2) | uvarint #epochs | (uvarint len, bytes) per epoch |
//	uvarint #topics | (4-byte FNV-1a of topic, uvarint epoch index, uvarint offset,
//	                   3-byte check) per topic
//
// Epochs are listed once because most topics of a node share one. Topics are named
// by a 32-bit hash: the connection knows its topics, the hash only has to tell them
// apart, and it keeps a 64-topic cursor under a kilobyte.
//
// The check is a checksum of the event at the position (EventCheck), 0 when
// unknown. A position alone does not name one event for certain: a data dir
// copied back from an older copy gives its offsets to new, different events.
// On resume the hub compares the check with the event the store holds there,
// and announces a gap when they differ. Version 1 cursors (no checks) are read
// with every check unknown.

const (
	cursorVersion   = 2
	cursorVersionV1 = 1
	// MaxCursorLen bounds the encoded cursor accepted from clients.
	MaxCursorLen = 8 << 10
)

// ErrBadCursor reports an id that is not a cursor this node can read.
var ErrBadCursor = errors.New("hub: malformed cursor")

// Cursor is a decoded cursor: positions keyed by topic hash.
type Cursor struct {
	entries []cursorEntry
}

type cursorEntry struct {
	hash  uint32
	pos   engine.Position
	check uint32
}

// EventCheck is the checksum of an event that cursors keep beside its
// position: the low 24 bits of a checksum of its time, type and data (three
// bytes keep a 64-topic cursor under a kilobyte; a different event passes for
// the one named with a chance of one in 16 million). It is never 0, which
// stands for "unknown" in a cursor.
func EventCheck(ev engine.Event) uint32 {
	// FNV-1a over the time and the type, inline so nothing escapes to the
	// heap, seeds the CRC-32C of the data. The 0 byte after the type keeps
	// type "ab" with data "c" apart from type "a" with data "bc".
	h := uint32(2166136261)
	n := uint64(ev.Time.UnixNano())
	for i := range 8 {
		h = (h ^ uint32(byte(n>>(8*i)))) * 16777619
	}
	for i := 0; i < len(ev.Type); i++ {
		h = (h ^ uint32(ev.Type[i])) * 16777619
	}
	h *= 16777619 // the 0 separator
	c := crc32.Update(h, castagnoli, ev.Data) & checkMask
	if c == 0 {
		return 1
	}
	return c
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const checkMask = 1<<24 - 1

// TopicHash is the 32-bit name of a topic inside cursors.
func TopicHash(topic string) uint32 {
	// FNV-1a, inline so it does not allocate.
	h := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		h ^= uint32(topic[i])
		h *= 16777619
	}
	return h
}

// Lookup returns the position the cursor holds for topic.
func (c Cursor) Lookup(topic string) (engine.Position, bool) {
	p, _, ok := c.LookupCheck(topic)
	return p, ok
}

// LookupCheck returns the position the cursor holds for topic and the check
// of the event there (0: unknown).
func (c Cursor) LookupCheck(topic string) (engine.Position, uint32, bool) {
	h := TopicHash(topic)
	for _, e := range c.entries {
		if e.hash == h {
			return e.pos, e.check, true
		}
	}
	return engine.Position{}, 0, false
}

// Len is the number of topics in the cursor.
func (c Cursor) Len() int { return len(c.entries) }

// AppendCursor appends the encoded cursor of topics (by hash) at positions pos,
// with the checks of the events there; checks may be nil (all unknown).
func AppendCursor(dst []byte, hashes []uint32, pos []engine.Position, checks []uint32) []byte {
	var raw [512]byte
	b := raw[:0]
	b = append(b, cursorVersion)
	// Distinct epochs, in first-seen order; nearly always one.
	var epochs [4]string
	ep := epochs[:0]
	idx := make([]int, 0, 8)
	for _, p := range pos {
		i := 0
		for i < len(ep) && ep[i] != p.Epoch {
			i++
		}
		if i == len(ep) {
			ep = append(ep, p.Epoch)
		}
		idx = append(idx, i)
	}
	b = binary.AppendUvarint(b, uint64(len(ep)))
	for _, e := range ep {
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	b = binary.AppendUvarint(b, uint64(len(pos)))
	for i, p := range pos {
		b = binary.BigEndian.AppendUint32(b, hashes[i])
		b = binary.AppendUvarint(b, uint64(idx[i]))
		b = binary.AppendUvarint(b, p.Offset)
		var check uint32
		if checks != nil {
			check = checks[i]
		}
		b = append(b, byte(check>>16), byte(check>>8), byte(check))
	}
	return base64.RawURLEncoding.AppendEncode(dst, b)
}

// EncodeCursor is AppendCursor for a single topic, as a string; check may be 0.
func EncodeCursor(topic string, pos engine.Position, check uint32) string {
	return string(AppendCursor(nil, []uint32{TopicHash(topic)}, []engine.Position{pos}, []uint32{check}))
}

// ParseCursor decodes a cursor written by AppendCursor. Any malformed input gives
// ErrBadCursor, never a panic.
func ParseCursor(s string) (Cursor, error) {
	if len(s) == 0 || len(s) > MaxCursorLen {
		return Cursor{}, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 || (b[0] != cursorVersion && b[0] != cursorVersionV1) {
		return Cursor{}, ErrBadCursor
	}
	checked := b[0] == cursorVersion
	b = b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	ne, ok := next()
	if !ok || ne > uint64(len(b)) {
		return Cursor{}, ErrBadCursor
	}
	epochs := make([]string, 0, ne)
	for range ne {
		l, ok := next()
		if !ok || l > uint64(len(b)) {
			return Cursor{}, ErrBadCursor
		}
		epochs = append(epochs, string(b[:l]))
		b = b[l:]
	}
	nt, ok := next()
	if !ok || nt > uint64(len(b)) {
		return Cursor{}, ErrBadCursor
	}
	c := Cursor{entries: make([]cursorEntry, 0, nt)}
	for range nt {
		if len(b) < 4 {
			return Cursor{}, ErrBadCursor
		}
		h := binary.BigEndian.Uint32(b)
		b = b[4:]
		ei, ok1 := next()
		off, ok2 := next()
		if !ok1 || !ok2 || ei >= uint64(len(epochs)) {
			return Cursor{}, ErrBadCursor
		}
		var check uint32
		if checked {
			if len(b) < 3 {
				return Cursor{}, ErrBadCursor
			}
			check = uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
			b = b[3:]
		}
		c.entries = append(c.entries, cursorEntry{hash: h, pos: engine.Position{Epoch: epochs[ei], Offset: off}, check: check})
	}
	if len(b) != 0 {
		return Cursor{}, ErrBadCursor
	}
	return c, nil
}
