package local

import (
	"context"
	"time"
)

// Topic states are cached in memory on first use (e.topics, e.assigned) and
// dropped again once idle, so a million topics written once each and then
// quiet cost memory only while they are in use. The store's "m" key is the
// state of a dropped topic.
//
// Passes run on the committer, every TopicIdle/2 (asked by the sweeper) and,
// while more than MaxTopics topics are cached, after a group at most every
// TopicIdle/8. A pass advances e.tick; every use stamps the entry with the
// tick (Read and Head in loadState, the syncer when a group is durable, the
// committer when it loads a topic). A pass drops the entries not used for
// three ticks (idle between TopicIdle and 1.5 × TopicIdle), or for two ticks
// above MaxTopics. That is a clock sweep: one map walk per pass, 4 bytes per
// entry, instead of an LRU list whose links would cost more than the state.
//
// The invariant that makes dropping safe: the committer drops a topic only
// when no group of it is in flight, that is when e.assigned holds no entry
// for it or one equal to the durable e.topics entry (states only grow, so an
// applied group not yet made durable always differs). Then the store's "m"
// key is durable, and stays so until the committer writes the topic again,
// which it does only after loadState has cached the durable state in e.topics
// under stMu: a reader that loads the topic meanwhile reads the store under
// stMu too, so it either comes before that write (and reads what is durable)
// or finds the cache. The committer never reloads e.assigned from the store
// while a group is in flight, since it never dropped that entry. The Head
// hand-over of Subscribe is unchanged: the state a reader loads is at least
// the one the syncer published before it queued the commit for delivery.

// evictEvery is how often the sweeper asks for a pass.
func (e *Engine) evictEvery() time.Duration { return max(e.opt.TopicIdle/2, time.Millisecond) }

// evict drops idle topic states and returns how many. Committer only.
func (e *Engine) evict() int {
	e.lastEvict = time.Now()
	e.stMu.Lock()
	defer e.stMu.Unlock()
	e.tick++
	idle := uint32(3)
	if len(e.topics) > e.opt.MaxTopics {
		idle = 2
	}
	dropped := 0
	for topic, c := range e.topics {
		if e.tick-c.used < idle {
			continue
		}
		if a, ok := e.assigned[topic]; ok && a.topicState != c.topicState {
			continue // a group of it is in flight
		}
		delete(e.topics, topic)
		delete(e.assigned, topic)
		dropped++
	}
	// A Go map keeps its buckets when entries are deleted: copy it once most
	// of it went, or a million quiet topics would cost as much as before.
	if dropped > 1024 && dropped > 2*len(e.topics) {
		e.topics = shrink(e.topics)
		e.assigned = shrink(e.assigned)
	}
	return dropped
}

// evictIdle has the committer run a pass.
func (e *Engine) evictIdle() error {
	return e.sendWait(&request{evict: true, done: make(chan struct{})})
}

// sendWait sends a request of the sweeper and waits for its answer.
func (e *Engine) sendWait(r *request) error {
	if r.ctx == nil {
		r.ctx = context.Background()
	}
	if err := e.send(r.ctx, r); err != nil {
		return err
	}
	<-r.done
	return r.err
}

// shrink copies m into a map sized for what it holds (maps.Clone may keep the
// size of m).
func shrink[V any](m map[string]V) map[string]V {
	n := make(map[string]V, len(m))
	for k, v := range m {
		n[k] = v
	}
	return n
}
