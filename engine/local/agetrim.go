package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/herald-hub/herald/engine"
)

// Age trimming reads a time index rather than every topic:
//
//	"a" bucket(BE64) topic   empty: topic was appended to in that minute
//	"sageindex"              empty: the index is complete (see below)
//
// bucket is the unix time of the append in whole minutes. The committer
// writes a topic's key once per bucket, in the batch of the append (the
// bucket is remembered with the topic's state in assigned, so a topic whose
// state was dropped writes it again: a harmless overwrite).
//
// Invariant: a topic that holds events has a key in the bucket of its oldest
// event or in an earlier one. Appends keep it; the sweeper deletes a key only
// in the batch that trims the topic up to the cutoff and writes the key of
// the bucket of its oldest event left, if any. So a sweep with cutoff c
// visits the keys of the buckets up to c's own, trims the topics they name,
// and deletes the keys of the buckets that end before c: the cost of a sweep
// is the appends that expired since the last one, not the number of topics.
// c's own bucket is kept and visited again by the next sweeps, so events are
// dropped as exactly as before.
//
// A store created without the index (before it existed, or appended to with
// NoAgeLimit, which writes no keys) lacks "sageindex": its first sweep scans
// every topic, as sweeps did before, writes the key of each topic's oldest
// event left, then writes "sageindex".

var ageIndexKey = []byte("sageindex")

const ageBucketWidth = int64(time.Minute)

func ageBucket(nanos int64) int64 { return max(nanos, 0) / ageBucketWidth }

func ageKey(bucket int64, topic string) []byte {
	k := make([]byte, 0, 9+len(topic))
	k = append(k, 'a')
	k = binary.BigEndian.AppendUint64(k, uint64(bucket))
	return append(k, topic...)
}

// sweepChunk is how many index keys (or topics) a sweep handles at a time.
const sweepChunk = 1024

// indexAge writes topic's age index key for bucket in b, unless written
// already. Committer only.
func (e *Engine) indexAge(b *pebble.Batch, topic string, bucket int64) {
	if e.opt.MaxAge <= 0 {
		return
	}
	if a, ok := e.shard(topic).assigned[topic]; ok && a.bucket == bucket {
		return
	}
	if _, ok := e.grpIndexed[topic]; ok {
		return
	}
	e.grpIndexed[topic] = struct{}{}
	b.Set(ageKey(bucket, topic), nil, nil)
}

func (e *Engine) sweeper() {
	defer close(e.sweepDone)
	t := time.NewTicker(e.opt.SweepInterval)
	defer t.Stop()
	ev := time.NewTicker(e.evictEvery())
	defer ev.Stop()
	for {
		select {
		case <-e.sweepStop:
			return
		case <-ev.C:
			if err := e.sendWait(&request{evict: 1, done: make(chan struct{})}); err != nil && !errors.Is(err, engine.ErrClosed) {
				e.log.Error("dropping idle topic states failed", "err", err)
			}
		case <-t.C:
			if _, err := e.sweep(); err != nil && !errors.Is(err, engine.ErrClosed) {
				e.log.Error("age sweep failed", "err", err)
			}
			if _, err := e.expireKeys(); err != nil && !errors.Is(err, engine.ErrClosed) {
				e.log.Error("dropping expired idempotency keys failed", "err", err)
			}
		}
	}
}

// sweepStats is what one sweep did.
type sweepStats struct {
	keys    int  // index keys read, or "m" keys for a full scan
	events  int  // events read to find the expired ones
	topics  int  // topics looked at
	trimmed int  // topics trimmed
	full    bool // it scanned every topic and built the index
}

// sweep drops events older than MaxAge and reports how many topics it trimmed.
func (e *Engine) sweep() (trimmed int, err error) {
	s, err := e.sweepOnce()
	return s.trimmed, err
}

// sweepOnce reads the store directly and sends the trims through the
// committer, so they are ordered with appends.
func (e *Engine) sweepOnce() (s sweepStats, err error) {
	if e.opt.MaxAge <= 0 || e.CanWrite() != nil {
		return s, nil // a trim is a write too; the next sweep does it
	}
	cutoff := e.now().Add(-e.opt.MaxAge)
	if !e.ageIndexed.Load() {
		return e.sweepAll(cutoff)
	}
	cb := ageBucket(cutoff.UnixNano())
	lower, upper := []byte{'a'}, ageKey(cb+1, "")
	for {
		var keys [][]byte
		err := e.readLocked(func() error {
			it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
			if err != nil {
				return err
			}
			for valid := it.First(); valid && len(keys) < sweepChunk; valid = it.Next() {
				keys = append(keys, bytes.Clone(it.Key()))
			}
			return it.Close()
		})
		if err != nil || len(keys) == 0 {
			return s, err
		}
		s.keys += len(keys)
		lower = append(bytes.Clone(keys[len(keys)-1]), 0)
		var order []string
		del := map[string][][]byte{} // by topic: its keys of buckets that ended before the cutoff
		for _, k := range keys {
			if len(k) < 10 {
				continue
			}
			topic := string(k[9:])
			if _, ok := del[topic]; !ok {
				order = append(order, topic)
				del[topic] = nil
			}
			if int64(binary.BigEndian.Uint64(k[1:9])) < cb {
				del[topic] = append(del[topic], k)
			}
		}
		if err := e.trimTopics(order, cutoff, del, &s); err != nil {
			return s, err
		}
		if len(keys) < sweepChunk {
			return s, nil
		}
	}
}

// trimTopics trims topics by age through the committer, deleting the index
// keys del names for each.
func (e *Engine) trimTopics(topics []string, cutoff time.Time, del map[string][][]byte, s *sweepStats) error {
	var reqs []*request
	for _, topic := range topics {
		r, err := e.trimRequest(topic, cutoff, del[topic], s)
		if err != nil {
			return err
		}
		if r != nil {
			reqs = append(reqs, r)
		}
	}
	return e.sendAll(reqs, s)
}

// sweepAll is the sweep of a store without the index: every topic, as the
// sweeps before the index did, writing the index as it goes.
func (e *Engine) sweepAll(cutoff time.Time) (s sweepStats, err error) {
	s.full = true
	var topics []string
	err = e.readLocked(func() error {
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte("m"), UpperBound: []byte("n")})
		if err != nil {
			return err
		}
		for valid := it.First(); valid; valid = it.Next() {
			topics = append(topics, string(it.Key()[1:]))
		}
		return it.Close()
	})
	if err != nil {
		return s, err
	}
	s.keys = len(topics)
	for len(topics) > 0 {
		chunk := topics[:min(len(topics), sweepChunk)]
		topics = topics[len(chunk):]
		if err := e.trimTopics(chunk, cutoff, nil, &s); err != nil {
			return s, err
		}
	}
	r := &request{put: [][]byte{ageIndexKey}, done: make(chan struct{})}
	if err := e.sendWait(r); err != nil {
		return s, err
	}
	e.ageIndexed.Store(true)
	return s, nil
}

// trimRequest reads topic's events up to the first one newer than cutoff and
// returns the request that trims the older ones and replaces the index keys
// del (nil for a full scan) by the key of the oldest event left; nil when
// there is nothing to do.
func (e *Engine) trimRequest(topic string, cutoff time.Time, del [][]byte, s *sweepStats) (*request, error) {
	s.topics++
	var before uint64
	var next int64 // bucket of the oldest event left, 0 when none
	err := e.readLocked(func() error {
		oldest, err := e.peekOldest(topic)
		if err != nil {
			return err
		}
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: logKey(topic, oldest), UpperBound: logEnd(topic)})
		if err != nil {
			return err
		}
		prefix := len(logPrefix(topic))
		for valid := it.First(); valid; valid = it.Next() {
			s.events++
			v, err := it.ValueAndErr()
			if err != nil {
				break
			}
			t, ok := eventTime(v)
			if ok && !t.Before(cutoff) {
				next = ageBucket(t.UnixNano())
				break
			}
			before = binary.BigEndian.Uint64(it.Key()[prefix:]) + 1
		}
		return it.Close()
	})
	if err != nil {
		return nil, err
	}
	r := &request{ctx: context.Background(), del: del, done: make(chan struct{})}
	if before > 0 {
		r.trimTopic, r.trimBefore = topic, before
	}
	if next != 0 && (del != nil || !e.ageIndexed.Load()) {
		r.put = [][]byte{ageKey(next, topic)}
	}
	if r.trimTopic == "" && r.put == nil && r.del == nil {
		return nil, nil
	}
	return r, nil
}

// peekOldest returns topic's oldest retained offset without caching its
// state: the sweeper is not a use. The store may show a state applied but
// not yet durable; its oldest is only ever higher, and what is below is
// deleted in the same batch, so the scan from it misses nothing.
func (e *Engine) peekOldest(topic string) (uint64, error) {
	sh := e.shard(topic)
	sh.mu.Lock()
	c, ok := sh.topics[topic]
	sh.mu.Unlock()
	if ok {
		return c.oldest, nil
	}
	v, err := e.get(metaKey(topic))
	if err != nil {
		return 0, err
	}
	if len(v) != 16 {
		return 1, nil // scan everything
	}
	return max(binary.BigEndian.Uint64(v[8:]), 1), nil
}

// sendAll sends the requests to the committer, which groups them, then waits
// for them all; it counts the trims.
func (e *Engine) sendAll(reqs []*request, s *sweepStats) error {
	sent := 0
	var err error
	for _, r := range reqs {
		if err = e.send(r.ctx, r); err != nil {
			break
		}
		sent++
	}
	for _, r := range reqs[:sent] {
		<-r.done
		if r.err != nil && err == nil {
			err = r.err
		}
		if r.err == nil && r.trimTopic != "" {
			s.trimmed++
		}
	}
	return err
}
