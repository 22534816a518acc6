package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Idempotency keys (engine.Event.ID) are kept in the store, in the same batch
// as the event they name, so a retry is recognised after a crash or a restart
// exactly when the event itself survived:
//
//	"i" topic 0x00 id               → offset (BE64), unix nanos of the append (BE64)
//	"x" nanos(BE64) topic 0x00 id   → empty: the keys in the order they expire
//
// The committer, the one writer, looks a key up before it assigns an offset:
// first among the keys written earlier in the same batch (not yet visible in
// the store), then in the store, which already shows the groups applied before
// (Pebble publishes a batch before its fsync; the syncer answers groups in
// order and fails every group after one whose fsync failed, so a retry is
// never answered with the position of an append that did not become durable).
// A key older than the window is ignored, and the sweeper drops expired keys
// through the committer, oldest first, a bounded chunk at a time: a range scan
// of "x" up to the cutoff, never a scan of every key. Each "i" key has exactly
// one "x" entry: an append that reuses an expired key deletes the old entry in
// the same batch.
// See docs/decisions/0011-idempotency-keys.md.

// MaxIDLen bounds engine.Event.ID: a key is stored twice with the topic, and
// anything longer is a mistake rather than an idempotency key.
const MaxIDLen = 1024

// DefaultIdempotencyWindow is how long an Event.ID dedupes when
// Options.IdempotencyWindow is 0.
const DefaultIdempotencyWindow = 2 * time.Minute

// expireChunk is the most keys one trip through the committer drops: an
// append waits behind at most this many deletes.
const expireChunk = 1024

func idemKey(topic, id string) []byte {
	k := make([]byte, 0, 2+len(topic)+len(id))
	k = append(k, 'i')
	k = append(k, topic...)
	k = append(k, 0)
	return append(k, id...)
}

func expiryKey(nanos int64, topic, id string) []byte {
	k := make([]byte, 0, 10+len(topic)+len(id))
	k = append(k, 'x')
	k = binary.BigEndian.AppendUint64(k, uint64(nanos))
	k = append(k, topic...)
	k = append(k, 0)
	return append(k, id...)
}

// expiryBound is the upper bound (exclusive) of the expiry entries of keys
// appended before nanos.
func expiryBound(nanos int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{'x'}, uint64(nanos))
}

// idemKeyOfExpiry returns the "i" key an expiry entry stands for.
func idemKeyOfExpiry(k []byte) ([]byte, bool) {
	if len(k) < 1+8+2 || k[0] != 'x' || bytes.IndexByte(k[9:], 0) < 1 {
		return nil, false
	}
	return append([]byte{'i'}, k[9:]...), true
}

// storedKey is what the store holds for an idempotency key.
type storedKey struct {
	offset uint64
	nanos  int64
	found  bool
}

// lookupKey reads an idempotency key from the store. Only the committer calls
// it, so e.db is not replaced meanwhile.
func (e *Engine) lookupKey(key []byte) (storedKey, error) {
	v, closer, err := e.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return storedKey{}, nil
	}
	if err != nil {
		return storedKey{}, err
	}
	defer closer.Close()
	if len(v) != 16 {
		return storedKey{}, fmt.Errorf("local: corrupt idempotency key %q (%d bytes)", key, len(v))
	}
	return storedKey{offset: binary.BigEndian.Uint64(v), nanos: int64(binary.BigEndian.Uint64(v[8:])), found: true}, nil
}

// live reports whether the key still dedupes at now.
func (k storedKey) live(now int64, window time.Duration) bool {
	return k.found && now-k.nanos < int64(window)
}

func encodeKeyValue(offset uint64, nanos int64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), offset), uint64(nanos))
}

// dropExpiredKeys deletes in b up to expireChunk keys that no longer dedupe at
// now, oldest first, and returns how many. It runs on the committer, before
// the group's appends, so an append of the same group that reuses such a key
// writes it after the delete.
func (e *Engine) dropExpiredKeys(b *pebble.Batch, now int64) (int, error) {
	cutoff := now - int64(e.opt.IdempotencyWindow) // live keys are newer than this
	if cutoff < 0 {
		return 0, nil
	}
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'x'}, UpperBound: expiryBound(cutoff + 1)})
	if err != nil {
		return 0, err
	}
	n := 0
	for valid := it.First(); valid && n < expireChunk; valid = it.Next() {
		if k, ok := idemKeyOfExpiry(it.Key()); ok {
			b.Delete(k, nil)
		}
		b.Delete(it.Key(), nil) // the batch copies the key
		n++
	}
	return n, it.Close()
}

// expireKeys has the committer drop every expired key, a chunk per request so
// appends go in between, and returns how many it dropped.
func (e *Engine) expireKeys() (int, error) {
	total := 0
	for {
		if e.CanWrite() != nil {
			return total, nil // a delete is a write too; the next sweep does it
		}
		r := &request{ctx: context.Background(), expireKeys: true, done: make(chan struct{})}
		if err := e.send(context.Background(), r); err != nil {
			return total, err
		}
		<-r.done
		if r.err != nil {
			return total, r.err
		}
		total += r.expired
		if r.expired < expireChunk {
			return total, nil
		}
		select {
		case <-e.sweepStop:
			return total, nil
		default:
		}
	}
}
