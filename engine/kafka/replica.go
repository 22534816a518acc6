package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/cockroachdb/pebble/v2"
)

// The replica is a Pebble store in the node's data dir. It is written by the
// apply loop only, without fsync (Kafka is the durable copy; a replica that
// loses its last writes in a crash reads them again from where its stored
// partition offsets say it stopped, since they are in the same batches).
//
//	"e"                                → the epoch the replica holds
//	"p" partition(BE32)                → next Kafka offset to apply (BE64), floor (BE64),
//	                                     latest record time applied (unix nanos, BE64)
//	"m" topic                          → head (BE64), trimmed (BE64), events retained (BE64)
//	"l" topic 0x00 offset(BE64)        → prev (BE64), time (unix nanos, BE64), uvarint len + type,
//	                                     uvarint len + id, data
//	"i" topic 0x00 id                  → offset (BE64), time (BE64)
//	"x" partition(BE32) time(BE64) topic 0x00 id → empty: idempotency keys by expiry
//
// Herald offsets are Kafka offsets plus one (Herald's offset 0 is "before the
// first event"). head is the topic's last offset, trimmed the Prev of its
// oldest retained event (its head when none is retained). The floor of a
// partition is the Herald offset up to which its records may be missing
// from the replica (the log start when the replica began, or where it
// resumed after records were deleted under it): a topic of the partition
// whose head is below the floor is read as head = trimmed = floor.

const (
	keyEpoch = 'e'
	keyPart  = 'p'
	keyMeta  = 'm'
	keyLog   = 'l'
	keyIdem  = 'i'
	keyExp   = 'x'
)

// partitionOf is the fixed mapping of a Herald topic to a Kafka partition:
// FNV-1a 32 of the topic modulo the partition count. Every node must agree on
// it, so it never depends on a client library's default partitioner.
func partitionOf(topic string, partitions int32) int32 {
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int32(h.Sum32() % uint32(partitions))
}

func partKey(p int32) []byte {
	return binary.BigEndian.AppendUint32([]byte{keyPart}, uint32(p))
}

func metaKey(topic string) []byte {
	return append([]byte{keyMeta}, topic...)
}

func logPrefix(topic string) []byte {
	k := make([]byte, 0, len(topic)+10)
	k = append(k, keyLog)
	k = append(k, topic...)
	return append(k, 0)
}

func logKey(topic string, off uint64) []byte {
	return binary.BigEndian.AppendUint64(logPrefix(topic), off)
}

func idemKey(topic, id string) []byte {
	k := make([]byte, 0, len(topic)+len(id)+2)
	k = append(k, keyIdem)
	k = append(k, topic...)
	k = append(k, 0)
	return append(k, id...)
}

func expKey(p int32, nanos int64, topic, id string) []byte {
	k := make([]byte, 0, 14+len(topic)+len(id))
	k = append(k, keyExp)
	k = binary.BigEndian.AppendUint32(k, uint32(p))
	k = binary.BigEndian.AppendUint64(k, uint64(nanos))
	k = append(k, topic...)
	k = append(k, 0)
	return append(k, id...)
}

// partState is what the replica knows of one partition.
type partState struct {
	next    int64  // next Kafka offset to apply
	floor   uint64 // Herald offsets up to this may be missing
	maxTime int64  // latest record time applied, unix nanos
}

func (s partState) encode() []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, uint64(s.next))
	b = binary.BigEndian.AppendUint64(b, s.floor)
	return binary.BigEndian.AppendUint64(b, uint64(s.maxTime))
}

func decodePart(b []byte) (partState, error) {
	if len(b) != 24 {
		return partState{}, fmt.Errorf("partition state of %d bytes", len(b))
	}
	return partState{
		next:    int64(binary.BigEndian.Uint64(b)),
		floor:   binary.BigEndian.Uint64(b[8:]),
		maxTime: int64(binary.BigEndian.Uint64(b[16:])),
	}, nil
}

// topicMeta is what the replica knows of one topic.
type topicMeta struct {
	head, trimmed, count uint64
}

func (m topicMeta) encode() []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, m.head)
	b = binary.BigEndian.AppendUint64(b, m.trimmed)
	return binary.BigEndian.AppendUint64(b, m.count)
}

func decodeMeta(b []byte) (topicMeta, error) {
	if len(b) != 24 {
		return topicMeta{}, fmt.Errorf("topic meta of %d bytes", len(b))
	}
	return topicMeta{
		head:    binary.BigEndian.Uint64(b),
		trimmed: binary.BigEndian.Uint64(b[8:]),
		count:   binary.BigEndian.Uint64(b[16:]),
	}, nil
}

// withFloor is the topic as readers see it: events at or below the
// partition's floor may be missing, so a topic last seen before it starts
// again at the floor.
func (m topicMeta) withFloor(floor uint64) topicMeta {
	if m.head < floor {
		m.head, m.trimmed, m.count = floor, floor, 0
	}
	return m
}

type storedEvent struct {
	prev  uint64
	nanos int64
	typ   string
	id    string
	data  []byte
}

func encodeEvent(prev uint64, nanos int64, typ, id string, data []byte) []byte {
	b := make([]byte, 0, 16+2+len(typ)+2+len(id)+len(data))
	b = binary.BigEndian.AppendUint64(b, prev)
	b = binary.BigEndian.AppendUint64(b, uint64(nanos))
	b = binary.AppendUvarint(b, uint64(len(typ)))
	b = append(b, typ...)
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	return append(b, data...)
}

var errCorrupt = errors.New("kafka: corrupt replica entry")

func decodeEvent(b []byte) (storedEvent, error) {
	if len(b) < 16 {
		return storedEvent{}, errCorrupt
	}
	ev := storedEvent{prev: binary.BigEndian.Uint64(b), nanos: int64(binary.BigEndian.Uint64(b[8:]))}
	b = b[16:]
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return storedEvent{}, errCorrupt
	}
	ev.typ = string(b[w : w+int(n)])
	b = b[w+int(n):]
	n, w = binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return storedEvent{}, errCorrupt
	}
	ev.id = string(b[w : w+int(n)])
	ev.data = append([]byte(nil), b[w+int(n):]...)
	return ev, nil
}

// getCopy reads a key from a reader (the store or an indexed batch), nil
// when absent.
func getCopy(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

func readMeta(r pebble.Reader, topic string) (topicMeta, bool, error) {
	v, err := getCopy(r, metaKey(topic))
	if err != nil || v == nil {
		return topicMeta{}, false, err
	}
	m, err := decodeMeta(v)
	return m, err == nil, err
}

// prefixEnd is the first key after every key with the prefix.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
