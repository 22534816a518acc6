package local

import (
	"context"
	"hash/maphash"
	"time"
)

// Topic states are cached in memory on first use (a shard's topics and
// assigned) and dropped again once idle, so a million topics written once
// each and then quiet cost memory only while they are in use. The store's "m"
// key is the state of a dropped topic.
//
// A clock sweep, one shard at a time: the states are split into stateShards
// shards by the hash of the topic, and an eviction step visits the next
// shard, on the committer. Steps run every TopicIdle/2/stateShards (asked by
// the sweeper), so every shard is visited every TopicIdle/2, and, while
// e.assigned holds more than MaxTopics topics, after a group at most every
// TopicIdle/8/stateShards. A visit advances the shard's tick; every use
// stamps the entry with it (Read and Head in loadState, the syncer when a
// group is durable, the committer when it loads a topic). A visit drops the
// entries not used for three ticks (idle between TopicIdle and 1.5 ×
// TopicIdle), or for two above MaxTopics. One step holds one shard's lock and
// stalls the committer for one shard's walk, not for the whole map; and a
// stamp is 4 bytes, where an LRU list would cost two pointers and a lock per
// Read to move a node.
//
// The invariant that makes dropping safe: the committer drops a topic only
// when no group of it is in flight, that is when assigned holds no entry for
// it or one equal to the durable entry in topics (states only grow, so an
// applied group not yet made durable always differs). Then the store's "m"
// key is durable, and stays so until the committer writes the topic again,
// which it does only after loadState has cached the durable state in topics
// under the shard's mu: a reader that loads the topic meanwhile reads the
// store under that mu too, so it either comes before that write (and reads
// what is durable) or finds the cache. The committer never reloads a topic
// from the store while a group of it is in flight, since it never dropped it.
// The Head hand-over of Subscribe is unchanged: the state a reader loads is
// at least the one the syncer published before it queued the commit for
// delivery.

// stateShards is the number of shards of the topic states.
const stateShards = 64

func (e *Engine) shard(topic string) *stateShard {
	return &e.states[maphash.String(e.stateSeed, topic)%stateShards]
}

// evictEvery is how often the sweeper asks for a step.
func (e *Engine) evictEvery() time.Duration {
	return max(e.opt.TopicIdle/2/stateShards, time.Millisecond)
}

// evict runs steps eviction steps (stateShards: a pass over every shard) and
// returns how many states it dropped. Committer only.
func (e *Engine) evict(steps int) int {
	e.lastEvict = time.Now()
	dropped := 0
	for range steps {
		dropped += e.evictShard(&e.states[e.evictNext])
		e.evictNext = (e.evictNext + 1) % stateShards
	}
	return dropped
}

func (e *Engine) evictShard(sh *stateShard) int {
	idle := uint32(3)
	if e.nAssigned > e.opt.MaxTopics {
		idle = 2
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.tick++
	dropped := 0
	for topic, c := range sh.topics {
		if sh.tick-c.used < idle {
			continue
		}
		a, ok := sh.assigned[topic]
		if ok && a.topicState != c.topicState {
			continue // a group of it is in flight
		}
		if ok {
			delete(sh.assigned, topic)
			e.nAssigned--
		}
		delete(sh.topics, topic)
		dropped++
	}
	// A Go map keeps its buckets when entries are deleted: copy it once most
	// of it went, or a million quiet topics would cost as much as before.
	if dropped > 64 && dropped > 2*len(sh.topics) {
		sh.topics = shrink(sh.topics)
		sh.assigned = shrink(sh.assigned)
	}
	return dropped
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

// evictIdle has the committer run a pass over every shard.
func (e *Engine) evictIdle() error {
	return e.sendWait(&request{evict: stateShards, done: make(chan struct{})})
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
