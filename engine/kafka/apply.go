package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-hub/herald/engine"
)

// applyLoop reads every partition and applies what it fetches to the
// replica, then delivers it to the node's subscribers.
func (e *Engine) applyLoop() {
	defer e.loops.Done()
	for {
		fetches := e.cons.PollFetches(e.ctx)
		if e.ctx.Err() != nil {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			e.fetchErrs.Add(1)
			switch {
			case errors.Is(err, kerr.OffsetOutOfRange):
				e.outOfRange(p)
			default:
				var loss *kgo.ErrDataLoss
				if errors.As(err, &loss) {
					e.setFatal(p, fmt.Errorf("Kafka reports data loss (the log was truncated below the replica, an unclean leader election?): %v", err))
					return
				}
				e.log.Warn("reading Kafka", "partition", p, "err", err)
				e.maybeCheckTopicID()
			}
		})
		if err := e.apply(fetches); err != nil {
			e.log.Error("writing the replica failed: the engine stops applying the Kafka log", "err", err)
			for p := range e.parts {
				e.setFatal(p, fmt.Errorf("replica: %v", err))
			}
		}
	}
}

// setFatal records that the reader gave up on partition p: appends to it,
// and reads of it, fail with ErrUnavailable, and readiness fails.
func (e *Engine) setFatal(p int32, err error) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	if e.fatal[p] != nil {
		return
	}
	e.log.Error("the reader gave up on a partition", "partition", p, "err", err)
	e.fatal[p] = err
	close(e.changed)
	e.changed = make(chan struct{})
}

// topicIDCheckInterval is how often the engine checks, besides after
// errors, that its Kafka topic is still the one of its epoch: one Metadata
// request.
const topicIDCheckInterval = 5 * time.Second

// maybeCheckTopicID runs checkTopicID unless one ran within a second.
func (e *Engine) maybeCheckTopicID() {
	now := time.Now().UnixNano()
	last := e.lastIDCheck.Load()
	if now-last < int64(time.Second) || !e.lastIDCheck.CompareAndSwap(last, now) {
		return
	}
	e.checkTopicID()
}

// checkTopicID compares the topic's ID with the epoch's: a topic deleted
// (and maybe recreated) under the engine fails every partition, since its
// positions are of an epoch that is gone. A restart rebuilds the replica in
// the new epoch.
func (e *Engine) checkTopicID() {
	ctx, cancel := context.WithTimeout(e.ctx, e.opt.RequestTimeout)
	defer cancel()
	tds, err := e.adm.ListTopics(ctx, e.opt.Topic)
	if err != nil {
		return
	}
	td, ok := tds[e.opt.Topic]
	var why error
	switch {
	case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		why = fmt.Errorf("the Kafka topic %s was deleted", e.opt.Topic)
	case td.Err != nil:
		return
	case td.ID != e.topicID || int32(len(td.Partitions)) != e.parts:
		why = fmt.Errorf("the Kafka topic %s was recreated or repartitioned (a new epoch): restart the node to rebuild its replica", e.opt.Topic)
	default:
		return
	}
	for p := range e.parts {
		e.setFatal(p, why)
	}
}

// outOfRange handles an OffsetOutOfRange from partition p (the reader never
// moves by itself: ConsumeResetOffset(NoResetOffset())). Below the log
// start, records the replica had not applied were deleted: the partition's
// floor moves to the log start, so that readers before it get a gap, and
// its subscribers' lost is called. Past the log end, the log was truncated
// or recreated: the partition fails.
func (e *Engine) outOfRange(p int32) {
	e.stateMu.Lock()
	failed := e.fatal[p] != nil
	e.stateMu.Unlock()
	if failed {
		return // the client repeats the error of a partition it stopped
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.opt.RequestTimeout)
	defer cancel()
	starts, err := e.adm.ListStartOffsets(ctx, e.opt.Topic)
	if err != nil {
		e.log.Warn("listing the log start after an out-of-range fetch", "partition", p, "err", err)
		return
	}
	so, ok := starts.Lookup(e.opt.Topic, p)
	if !ok || so.Err != nil {
		e.checkTopicID()
		return
	}
	e.writeMu.Lock()
	e.stateMu.Lock()
	st := e.pstate[p]
	e.stateMu.Unlock()
	if st.next >= so.Offset {
		e.writeMu.Unlock()
		e.checkTopicID()
		e.setFatal(p, fmt.Errorf("the log ends before offset %d that the replica applied: it was truncated (an unclean leader election?) or recreated", st.next))
		return
	}
	e.log.Warn("records the replica had not applied were deleted from Kafka: readers behind them get a gap", "partition", p, "applied_to", st.next, "log_start", so.Offset)
	st.next, st.floor = so.Offset, uint64(so.Offset)
	err = e.db.Set(partKey(p), st.encode(), pebble.Sync)
	if err != nil {
		e.writeMu.Unlock()
		e.setFatal(p, fmt.Errorf("replica: %v", err))
		return
	}
	e.resets.Add(1)
	e.stateMu.Lock()
	e.pstate[p] = st
	for topic, subs := range e.subs {
		if partitionOf(topic, e.parts) != p {
			continue
		}
		e.lostTopics.Add(1)
		for _, s := range subs {
			if s.lost != nil {
				s.lost()
			}
		}
	}
	close(e.changed)
	e.changed = make(chan struct{})
	e.stateMu.Unlock()
	e.writeMu.Unlock()
	e.cons.SetOffsets(map[string]map[int32]kgo.EpochOffset{e.opt.Topic: {p: {Epoch: -1, Offset: so.Offset}}})
}

// apply writes the fetched records to the replica in one batch (without
// fsync: Kafka is the durable copy) and delivers them, in the same critical
// section, so a Subscribe sees every event committed after it registered.
func (e *Engine) apply(fetches kgo.Fetches) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.stateMu.Lock()
	states := slices.Clone(e.pstate)
	e.stateMu.Unlock()
	hws := map[int32]int64{}
	b := e.db.NewIndexedBatch()
	defer b.Close()
	var out []engine.Event
	var err error
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic != e.opt.Topic || fp.Partition < 0 || fp.Partition >= e.parts || err != nil {
			return
		}
		p := fp.Partition
		if fp.Err == nil {
			hws[p] = fp.HighWatermark
		}
		if len(fp.Records) == 0 {
			return
		}
		for _, r := range fp.Records {
			if err = e.applyRecord(b, &states[p], p, r, &out); err != nil {
				return
			}
		}
		err = b.Set(partKey(p), states[p].encode(), nil)
	})
	if err != nil {
		return err
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	for p, hw := range hws {
		e.hw[p] = hw
	}
	if b.Empty() {
		e.checkCaughtUp()
		return nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	copy(e.pstate, states)
	for _, ev := range out {
		for _, s := range e.subs[ev.Topic] {
			s.fn(ev)
		}
	}
	close(e.changed)
	e.changed = make(chan struct{})
	e.checkCaughtUp()
	return nil
}

// applyRecord adds one record to the batch. A record repeating an Event.ID
// of its topic within the window is skipped, on every node alike: the
// decision depends only on the log (record times, not the node's clock).
func (e *Engine) applyRecord(b *pebble.Batch, st *partState, p int32, r *kgo.Record, out *[]engine.Event) error {
	if r.Offset < st.next {
		return nil
	}
	st.next = r.Offset + 1
	e.applied.Add(1)
	topic := string(r.Key)
	var typ, id string
	var nanos int64
	haveTime := false
	for _, h := range r.Headers {
		switch h.Key {
		case hdrType:
			typ = string(h.Value)
		case hdrID:
			id = string(h.Value)
		case hdrTime:
			if len(h.Value) == 8 {
				nanos, haveTime = int64(binary.BigEndian.Uint64(h.Value)), true
			}
		}
	}
	if !haveTime || engine.ValidateTopic(topic) != nil || partitionOf(topic, e.parts) != p {
		e.foreign.Add(1)
		return nil
	}
	latest := st.maxTime
	st.maxTime = max(st.maxTime, nanos)
	off := uint64(r.Offset) + 1
	m, found, err := readMeta(b, topic)
	if err != nil {
		return err
	}
	if found && m.head < st.floor && m.count > 0 {
		// Records of the topic may be missing before the floor: what is
		// kept before it is no longer vouched for.
		if err := b.DeleteRange(logPrefix(topic), prefixEnd(logPrefix(topic)), nil); err != nil {
			return err
		}
	}
	m = m.withFloor(st.floor)
	if id != "" {
		window := int64(e.opt.IdempotencyWindow)
		ik := idemKey(topic, id)
		v, err := getCopy(b, ik)
		if err != nil {
			return err
		}
		if len(v) == 16 {
			first := int64(binary.BigEndian.Uint64(v[8:]))
			if first >= latest-window && nanos-first < window {
				e.dups.Add(1)
				return nil
			}
			if err := b.Delete(expKey(p, first, topic, id), nil); err != nil {
				return err
			}
		}
		iv := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, off), uint64(nanos))
		if err := b.Set(ik, iv, nil); err != nil {
			return err
		}
		if err := b.Set(expKey(p, nanos, topic, id), nil, nil); err != nil {
			return err
		}
	}
	prev := m.head
	if err := b.Set(logKey(topic, off), encodeEvent(prev, nanos, typ, id, r.Value), nil); err != nil {
		return err
	}
	m.head = off
	m.count++
	if m.count > uint64(e.opt.MaxLen) {
		drop := int(m.count - uint64(e.opt.MaxLen))
		last, n, err := e.dropOldest(b, b, topic, drop, 0)
		if err != nil {
			return err
		}
		if n > 0 {
			m.trimmed = last
			m.count -= uint64(n)
		}
	}
	if err := b.Set(metaKey(topic), m.encode(), nil); err != nil {
		return err
	}
	*out = append(*out, engine.Event{
		Topic: topic, Type: typ, Data: r.Value, ID: id,
		Pos:  engine.Position{Epoch: e.epoch, Offset: off},
		Prev: prev,
		Time: time.Unix(0, nanos),
	})
	return nil
}

type iterable interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

// dropOldest deletes up to n of the topic's oldest events from r into b, or
// when olderThan is not 0, those of them stamped before it. It returns the
// offset of the last one deleted and how many were.
func (e *Engine) dropOldest(r iterable, b *pebble.Batch, topic string, n int, olderThan int64) (uint64, int, error) {
	prefix := logPrefix(topic)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, 0, err
	}
	var keys [][]byte
	var last uint64
	for ok := it.First(); ok && len(keys) < n; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefix)+8 {
			continue
		}
		if olderThan != 0 {
			v := it.Value()
			if len(v) < 16 || int64(binary.BigEndian.Uint64(v[8:])) >= olderThan {
				break
			}
		}
		keys = append(keys, slices.Clone(k))
		last = binary.BigEndian.Uint64(k[len(prefix):])
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, err
	}
	for _, k := range keys {
		if err := b.Delete(k, nil); err != nil {
			return 0, 0, err
		}
	}
	return last, len(keys), nil
}

func (e *Engine) trimLoop() {
	defer e.loops.Done()
	t := time.NewTicker(e.opt.TrimInterval)
	defer t.Stop()
	check := time.NewTicker(topicIDCheckInterval)
	defer check.Stop()
	for {
		select {
		case <-t.C:
			if err := e.trim(); err != nil {
				e.log.Error("trimming the replica", "err", err)
			}
		case <-check.C:
			e.maybeCheckTopicID()
		case <-e.ctx.Done():
			return
		}
	}
}

// trim drops the replica's events older than MaxAge (on the engine's
// clock) and the idempotency keys that can no longer match. It scans the
// meta of every topic: its cost grows with the topics retained.
func (e *Engine) trim() error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	b := e.db.NewBatch()
	defer b.Close()
	if e.opt.MaxAge > 0 {
		cutoff := e.now().Add(-e.opt.MaxAge).UnixNano()
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyMeta}, UpperBound: []byte{keyMeta + 1}})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			m, err := decodeMeta(it.Value())
			if err != nil || m.count == 0 {
				continue
			}
			topic := string(it.Key()[1:])
			last, n, err := e.dropOldest(e.db, b, topic, int(m.count), cutoff)
			if err != nil {
				it.Close()
				return err
			}
			if n == 0 {
				continue
			}
			m.trimmed, m.count = last, m.count-uint64(n)
			if m.count == 0 {
				m.trimmed = m.head
			}
			if err := b.Set(metaKey(topic), m.encode(), nil); err != nil {
				it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	e.stateMu.Lock()
	latest := make([]int64, e.parts)
	for p := range e.parts {
		latest[p] = e.pstate[p].maxTime
	}
	e.stateMu.Unlock()
	window := int64(e.opt.IdempotencyWindow)
	for p := range e.parts {
		lo := expKey(p, 0, "", "")[:5]
		hi := expKey(p, latest[p]-window, "", "")[:13]
		if latest[p]-window <= 0 {
			continue
		}
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			k := it.Key()
			rest := k[13:]
			i := slices.Index(rest, 0)
			if i < 0 {
				continue
			}
			nanos := int64(binary.BigEndian.Uint64(k[5:13]))
			ik := idemKey(string(rest[:i]), string(rest[i+1:]))
			if v, err := getCopy(e.db, ik); err == nil && len(v) == 16 && int64(binary.BigEndian.Uint64(v[8:])) == nanos {
				if err := b.Delete(ik, nil); err != nil {
					it.Close()
					return err
				}
			}
			if err := b.Delete(slices.Clone(k), nil); err != nil {
				it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	if b.Empty() {
		return nil
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	return b.Commit(pebble.NoSync)
}
