package nats

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-hub/herald/presence"
)

// Presence in a JetStream key-value bucket, <stream>_presence (KV 2.9:
// no per-key TTL), keyed by stream so that removing one never removes
// another:
//
//	u.<user>    {"<stream id>": "<member>"}                    a user's streams
//	t.<topic>   {"<stream id>": {"m": "<member>", "u": "<user>"}} a topic's streams
//	n.<member>  heartbeat, rewritten every PresenceBeat
//
// User, topic and member are base64url in keys. A member is
// "node|incarnation". Every value is changed by compare-and-set on the key's
// revision. An entry counts while its member's heartbeat is younger than
// PresenceTTL, in the server's time (the heartbeats' stored times, against
// this node's own last one); entries of dead members are dropped by the next
// write to their key. The bucket's MaxAge (24 h) removes keys nobody writes
// any more, and each node writes its streams again every 6 hours, and when
// its heartbeat finds its key gone (the bucket was lost).

// Presence defaults.
const (
	// DefaultPresenceBeat is how often a node renews its heartbeat.
	DefaultPresenceBeat = 3 * time.Second
	// DefaultPresenceTTL is how long after its last heartbeat a node's
	// streams stop counting.
	DefaultPresenceTTL = 10 * time.Second
	// presenceKeyTTL is the bucket's MaxAge: keys nobody writes any more go.
	presenceKeyTTL = 24 * time.Hour
	// presenceRewrite is how often a node writes its streams again.
	presenceRewrite = presenceKeyTTL / 4
	// presenceTimeout bounds one round of writes or a query.
	presenceTimeout = 5 * time.Second
)

// Presence implements presence.Provider: a registry shared by every engine
// on the same server and stream. The engine closes it on Close.
func (e *Engine) Presence(opt presence.Options) presence.Registry {
	var b [6]byte
	rand.Read(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	r := &registry{
		e:       e,
		opt:     opt,
		member:  opt.Node + "|" + hex.EncodeToString(b[:]),
		bucket:  e.opt.Stream + "_presence",
		conns:   map[string]presence.Conn{},
		written: map[string]presence.Conn{},
		live:    map[string]liveness{},
		wake:    make(chan struct{}, 1),
		stop:    cancel,
		done:    make(chan struct{}),
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		cancel()
		close(r.done)
		r.closed = true
		return r
	}
	e.registries = append(e.registries, r)
	e.mu.Unlock()
	go r.run(ctx)
	return r
}

type registry struct {
	e      *Engine
	opt    presence.Options
	member string
	bucket string

	mu      sync.Mutex
	closed  bool
	kv      jetstream.KeyValue       // nil until the bucket is opened
	conns   map[string]presence.Conn // this node's streams
	queue   []presenceOp             // writes not yet made
	written map[string]presence.Conn // streams whose entries are written (run only, then Close)
	rewrite bool                     // write every stream again

	liveMu   sync.Mutex
	live     map[string]liveness // member -> what its heartbeat said
	beatRev  uint64              // the revision of this node's heartbeat
	beatAt   time.Time           // the server's time of it
	beatSeen time.Time           // when this node read it (local clock)

	wake chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

type presenceOp struct {
	join bool
	c    presence.Conn
}

type liveness struct {
	alive bool
	at    time.Time // local time of the check
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func userKey(u string) string   { return "u." + b64(u) }
func topicKey(t string) string  { return "t." + b64(t) }
func memberKey(m string) string { return "n." + b64(m) }

func nodeOf(member string) string {
	if i := strings.LastIndexByte(member, '|'); i >= 0 {
		return member[:i]
	}
	return member
}

// Join implements presence.Registry: the entries are written in the
// background.
func (r *registry) Join(c presence.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if _, dup := r.conns[c.ID]; dup {
		return
	}
	r.conns[c.ID] = c
	r.queue = append(r.queue, presenceOp{join: true, c: c})
	r.signal()
}

// Leave implements presence.Registry.
func (r *registry) Leave(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	c, ok := r.conns[id]
	if !ok {
		return
	}
	delete(r.conns, id)
	r.queue = append(r.queue, presenceOp{c: c})
	r.signal()
}

func (r *registry) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *registry) warn(msg string, args ...any) {
	r.e.log.Warn("nats engine: presence: "+msg, args...)
}

// run opens the bucket, beats and writes until ctx ends.
func (r *registry) run(ctx context.Context) {
	defer close(r.done)
	beat := time.NewTicker(DefaultPresenceBeat)
	defer beat.Stop()
	rewrite := time.NewTicker(presenceRewrite)
	defer rewrite.Stop()
	for {
		if r.bucketOrNil(ctx) != nil {
			r.heartbeat(ctx)
			r.flush(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-beat.C:
		case <-rewrite.C:
			r.mu.Lock()
			r.rewrite = true
			r.mu.Unlock()
		}
	}
}

// bucketOrNil opens (or creates) the bucket once.
func (r *registry) bucketOrNil(ctx context.Context) jetstream.KeyValue {
	r.mu.Lock()
	kv := r.kv
	r.mu.Unlock()
	if kv != nil {
		return kv
	}
	cctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	kv, err := r.e.js.KeyValue(cctx, r.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = r.e.js.CreateKeyValue(cctx, jetstream.KeyValueConfig{
			Bucket:   r.bucket,
			History:  1,
			TTL:      presenceKeyTTL,
			Storage:  jetstream.FileStorage,
			Replicas: r.e.opt.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = r.e.js.KeyValue(cctx, r.bucket)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			r.warn("opening the bucket", "bucket", r.bucket, "err", err)
		}
		return nil
	}
	r.mu.Lock()
	r.kv = kv
	r.mu.Unlock()
	return kv
}

// heartbeat renews this node's key. One that finds it changed or gone (the
// bucket was lost, or purged) writes every stream again.
func (r *registry) heartbeat(ctx context.Context) {
	r.liveMu.Lock()
	rev, seen := r.beatRev, r.beatSeen
	r.liveMu.Unlock()
	if !seen.IsZero() && time.Since(seen) < DefaultPresenceBeat/2 {
		return
	}
	r.mu.Lock()
	kv := r.kv
	r.mu.Unlock()
	if kv == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	key := memberKey(r.member)
	var err error
	if rev == 0 {
		rev, err = kv.Create(cctx, key, []byte(r.member))
	} else {
		rev, err = kv.Update(cctx, key, []byte(r.member), rev)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
			r.warn("this node's heartbeat was gone: writing its streams again", "member", r.member)
			r.mu.Lock()
			r.rewrite = true
			r.mu.Unlock()
			rev, err = kv.Put(cctx, key, []byte(r.member))
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			r.warn("heartbeat", "err", err)
		}
		r.lostBucket(err)
		return
	}
	ent, err := kv.Get(cctx, key)
	if err != nil {
		return
	}
	r.liveMu.Lock()
	prev := r.beatAt
	r.beatRev, r.beatAt, r.beatSeen = rev, ent.Created(), time.Now()
	r.liveMu.Unlock()
	if !prev.IsZero() && ent.Created().Sub(prev) >= DefaultPresenceTTL {
		// This node looked dead for a while (a pause, a partition): other
		// nodes may have dropped its entries.
		r.warn("this node's heartbeat was late: writing its streams again", "member", r.member, "late", ent.Created().Sub(prev))
		r.mu.Lock()
		r.rewrite = true
		r.mu.Unlock()
	}
}

// lostBucket forgets the bucket when err says it is gone (deleted, or a
// server restarted with an empty store): the next round creates it again
// and writes every stream again.
func (r *registry) lostBucket(err error) {
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) &&
		!errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return
	}
	r.mu.Lock()
	r.kv = nil
	r.rewrite = true
	r.written = map[string]presence.Conn{}
	r.mu.Unlock()
	r.liveMu.Lock()
	r.beatRev, r.beatSeen = 0, time.Time{}
	r.liveMu.Unlock()
}

// alive reports whether member's heartbeat is recent, in the server's time,
// caching the answer for a second.
func (r *registry) alive(ctx context.Context, kv jetstream.KeyValue, member string) (bool, error) {
	if member == r.member {
		return true, nil
	}
	r.liveMu.Lock()
	l, ok := r.live[member]
	beatAt, beatSeen := r.beatAt, r.beatSeen
	r.liveMu.Unlock()
	if ok && time.Since(l.at) < time.Second {
		return l.alive, nil
	}
	ent, err := kv.Get(ctx, memberKey(member))
	alive := false
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return false, err
	case beatSeen.IsZero():
		alive = true // no time of our own yet: trust it
	default:
		serverNow := beatAt.Add(time.Since(beatSeen))
		alive = serverNow.Sub(ent.Created()) < DefaultPresenceTTL
	}
	r.liveMu.Lock()
	if len(r.live) > 4096 {
		clear(r.live)
	}
	r.live[member] = liveness{alive: alive, at: time.Now()}
	r.liveMu.Unlock()
	return alive, nil
}

// topicEntry is one stream in a topic's value.
type topicEntry struct {
	M string `json:"m"`
	U string `json:"u"`
}

// flush makes the queued writes, in order; a failed one and those after it
// stay queued for the next round.
func (r *registry) flush(ctx context.Context) {
	r.mu.Lock()
	queue := r.queue
	r.queue = nil
	if r.rewrite {
		r.rewrite = false
		for _, c := range r.conns {
			queue = append(queue, presenceOp{join: true, c: c})
		}
	}
	kv := r.kv
	if kv == nil { // lost meanwhile: the next round opens it again
		r.queue = append(queue, r.queue...)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	// A stream that joined and left within the queue is never written.
	leaving := map[string]bool{}
	for _, op := range queue {
		if !op.join {
			leaving[op.c.ID] = true
		}
	}
	for i, op := range queue {
		if op.join && leaving[op.c.ID] {
			continue
		}
		if !op.join {
			if _, ok := r.written[op.c.ID]; !ok {
				continue
			}
		}
		cctx, cancel := context.WithTimeout(ctx, presenceTimeout)
		err := r.write(cctx, kv, op, true)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.warn("writing", "err", err)
			}
			r.lostBucket(err)
			r.mu.Lock()
			r.queue = append(queue[i:len(queue):len(queue)], r.queue...)
			r.mu.Unlock()
			return
		}
		if op.join {
			r.written[op.c.ID] = op.c
		} else {
			delete(r.written, op.c.ID)
		}
	}
}

// write adds or removes one stream's entries, telling OnChange about the
// user's first stream on a topic arriving or last one leaving.
func (r *registry) write(ctx context.Context, kv jetstream.KeyValue, op presenceOp, notify bool) error {
	c := op.c
	err := r.update(ctx, kv, userKey(c.User), func(m map[string]json.RawMessage) (bool, error) {
		_, had := m[c.ID]
		if op.join {
			m[c.ID] = mustJSON(r.member)
		} else {
			delete(m, c.ID)
		}
		return op.join || had, nil
	})
	if err != nil {
		return err
	}
	for _, tp := range c.Topics {
		if !presence.Tracked(tp) {
			continue
		}
		var change *presence.Change
		err := r.update(ctx, kv, topicKey(tp), func(m map[string]json.RawMessage) (bool, error) {
			change = nil
			_, had := m[c.ID]
			if op.join {
				m[c.ID] = mustJSON(topicEntry{M: r.member, U: c.User})
			} else {
				delete(m, c.ID)
			}
			others := false
			for id, raw := range m {
				var en topicEntry
				if id == c.ID || json.Unmarshal(raw, &en) != nil || en.U != c.User {
					continue
				}
				others = true
				break
			}
			if !others && (op.join != had) {
				change = &presence.Change{Topic: tp, User: c.User, Joined: op.join}
			}
			return op.join || had, nil
		})
		if err != nil {
			return err
		}
		if change != nil && notify && r.opt.OnChange != nil {
			r.opt.OnChange(*change)
		}
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// update changes key's map by compare-and-set, dropping the entries of dead
// members on the way; change reports whether it changed the map.
func (r *registry) update(ctx context.Context, kv jetstream.KeyValue, key string, change func(map[string]json.RawMessage) (bool, error)) error {
	for attempt := 0; attempt < 100; attempt++ {
		m := map[string]json.RawMessage{}
		var rev uint64
		ent, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = ent.Revision()
			if len(ent.Value()) > 0 {
				if err := json.Unmarshal(ent.Value(), &m); err != nil {
					m = map[string]json.RawMessage{} // unreadable: start over
				}
			}
		}
		n := len(m)
		if err := r.dropDead(ctx, kv, m); err != nil {
			return err
		}
		changed, err := change(m)
		if err != nil {
			return err
		}
		if !changed && len(m) == n {
			return nil // nothing to write
		}
		val := mustJSON(m)
		if rev == 0 {
			_, err = kv.Create(ctx, key, val)
		} else {
			_, err = kv.Update(ctx, key, val, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // changed meanwhile
		}
		return err
	}
	return fmt.Errorf("%s kept changing", key)
}

// memberOf reads an entry's member from a user's or a topic's value.
func memberOf(raw json.RawMessage) string {
	var m string
	if json.Unmarshal(raw, &m) == nil {
		return m
	}
	var en topicEntry
	json.Unmarshal(raw, &en)
	return en.M
}

// dropDead removes the entries of members whose heartbeat stopped.
func (r *registry) dropDead(ctx context.Context, kv jetstream.KeyValue, m map[string]json.RawMessage) error {
	for id, raw := range m {
		ok, err := r.alive(ctx, kv, memberOf(raw))
		if err != nil {
			return err
		}
		if !ok {
			delete(m, id)
		}
	}
	return nil
}

// read returns key's live entries.
func (r *registry) read(ctx context.Context, key string) (map[string]json.RawMessage, error) {
	r.mu.Lock()
	closed, kv := r.closed, r.kv
	r.mu.Unlock()
	if closed {
		return nil, presence.ErrClosed
	}
	if kv == nil {
		if kv = r.bucketOrNil(ctx); kv == nil {
			return nil, fmt.Errorf("%w: the presence bucket is not open", presence.ErrUnavailable)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	m := map[string]json.RawMessage{}
	ent, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", presence.ErrUnavailable, err)
	}
	if err := json.Unmarshal(ent.Value(), &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", presence.ErrUnavailable, key, err)
	}
	if err := r.dropDead(ctx, kv, m); err != nil {
		return nil, fmt.Errorf("%w: %w", presence.ErrUnavailable, err)
	}
	return m, nil
}

// User implements presence.Registry.
func (r *registry) User(ctx context.Context, user string) (presence.User, error) {
	m, err := r.read(ctx, userKey(user))
	if err != nil {
		return presence.User{}, err
	}
	perNode := map[string]int{}
	for _, raw := range m {
		perNode[nodeOf(memberOf(raw))]++
	}
	return presence.User{User: user, Streams: len(m), Nodes: presence.SortedNodes(perNode)}, nil
}

// Topic implements presence.Registry.
func (r *registry) Topic(ctx context.Context, topic string, limit int) (presence.Topic, error) {
	if !presence.Tracked(topic) {
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return presence.Topic{}, presence.ErrClosed
		}
		return presence.Summarize(topic, nil, limit), nil
	}
	m, err := r.read(ctx, topicKey(topic))
	if err != nil {
		return presence.Topic{}, err
	}
	counts := map[string]int{}
	for _, raw := range m {
		var en topicEntry
		if json.Unmarshal(raw, &en) == nil {
			counts[en.U]++
		}
	}
	return presence.Summarize(topic, counts, limit), nil
}

// Close implements presence.Registry: it stops the writes and removes this
// node's entries and heartbeat, so that other nodes see its users leave at
// once.
func (r *registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.done
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.stop()
	<-r.done
	r.mu.Lock()
	kv := r.kv
	r.mu.Unlock()
	if kv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	// Every stream that may have been written, even partly: a write that
	// Close interrupted is still queued.
	all := r.written
	r.mu.Lock()
	for _, op := range r.queue {
		if op.join {
			all[op.c.ID] = op.c
		}
	}
	r.mu.Unlock()
	for _, c := range all {
		if err := r.write(ctx, kv, presenceOp{c: c}, false); err != nil {
			r.warn("removing this node's streams", "err", err)
			break
		}
	}
	r.written = map[string]presence.Conn{}
	if err := kv.Delete(ctx, memberKey(r.member)); err != nil {
		r.warn("removing this node's heartbeat", "err", err)
	}
	return nil
}
