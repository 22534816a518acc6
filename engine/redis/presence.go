package redis

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/presence"
)

// Presence in Redis, keyed by stream so that removing one never removes
// another (see presence.lua):
//
//	<prefix>presence:u:{user}    HASH stream -> member
//	<prefix>presence:t:{topic}   HASH stream -> member "\n" user
//	<prefix>presence:t:{topic}:n HASH user -> streams, for join and leave changes
//	<prefix>presence:n:{member}  HASH stream -> {user, topics}, to clean up after a crash
//	<prefix>presence:nodes       ZSET member -> last heartbeat (Redis time, ms)
//
// A member is "node|incarnation": a node restarted under the same id is a
// new member, so the old incarnation's entries are told apart and removed.
// Entries of members whose heartbeat is older than the node TTL are not
// counted, and one node at a time (a lock) removes them by compare-and-delete.
// A heartbeat that finds its member missing means Redis lost the registry
// (a flush, a restart) or judged the node dead: the node writes all its
// streams again.

var (
	//go:embed presence.lua
	presenceSrc string
	//go:embed presence_beat.lua
	beatSrc string

	presenceScript = rueidis.NewLuaScript(presenceSrc)
	beatScript     = rueidis.NewLuaScript(beatSrc)
)

// Presence defaults, applied to zero Options fields.
const (
	// DefaultPresenceBeat is how often a node renews its heartbeat.
	DefaultPresenceBeat = 3 * time.Second
	// DefaultPresenceTTL is how long after its last heartbeat a node's
	// streams stop counting: a killed node's users are offline within
	// DefaultPresenceTTL plus DefaultPresenceBeat (13 s).
	DefaultPresenceTTL = 10 * time.Second
	// presenceKeyTTL collects hashes that no live node refreshes any more.
	presenceKeyTTL = 24 * time.Hour
	// presenceTimeout bounds one round of writes or a query.
	presenceTimeout = 5 * time.Second
	// presenceBatch is the most script calls of one pipeline.
	presenceBatch = 2000
)

// Presence implements presence.Provider: a registry shared by every engine
// on the same Redis and prefix. The engine closes it on Close.
func (e *Engine) Presence(opt presence.Options) presence.Registry {
	ctx, cancel := context.WithCancel(context.Background())
	r := &registry{
		e:       e,
		opt:     opt,
		beat:    e.opt.PresenceBeat,
		ttl:     e.opt.PresenceTTL,
		conns:   map[string]presence.Conn{},
		pending: map[string]int{},
		retry:   map[string]presence.Conn{},
		scores:  map[string]int64{},
		wake:    make(chan struct{}, 1),
		stop:    cancel,
		done:    make(chan struct{}),
	}
	r.member = opt.Node + "|" + newEpoch()
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
	e    *Engine
	opt  presence.Options
	beat time.Duration
	ttl  time.Duration

	mu      sync.Mutex
	closed  bool
	conns   map[string]presence.Conn // this node's streams
	queue   []presenceOp             // writes not yet sent
	pending map[string]int           // stream id -> index of its join in queue
	retry   map[string]presence.Conn // leaves that failed, sent again
	dirty   bool                     // a write failed or Redis lost them: write every stream again

	liveMu     sync.Mutex
	member     string           // node|incarnation; changes when Redis lost it
	scores     map[string]int64 // member -> last heartbeat, Redis ms
	redisNow   int64            // Redis's time at the last heartbeat, ms
	beatAt     time.Time        // when that heartbeat answered
	beats      int              // heartbeats answered
	beatMember string           // the member of the last one

	wake chan struct{}
	stop context.CancelFunc
	done chan struct{} // closed when run has returned
}

type presenceOp struct {
	join bool
	c    presence.Conn
	skip bool // a join whose stream left before it was written
}

func (r *registry) userKey(u string) string  { return r.e.opt.Prefix + "presence:u:{" + u + "}" }
func (r *registry) topicKey(t string) string { return r.e.opt.Prefix + "presence:t:{" + t + "}" }
func (r *registry) nodeKey(m string) string  { return r.e.opt.Prefix + "presence:n:{" + m + "}" }
func (r *registry) nodesKey() string         { return r.e.opt.Prefix + "presence:nodes" }
func (r *registry) lockKey() string          { return r.e.opt.Prefix + "presence:janitor" }

func (r *registry) currentMember() string {
	r.liveMu.Lock()
	defer r.liveMu.Unlock()
	return r.member
}

// nodeOf is the node id of a member.
func nodeOf(member string) string {
	if i := strings.LastIndexByte(member, '|'); i >= 0 {
		return member[:i]
	}
	return member
}

// Join implements presence.Registry.
func (r *registry) Join(c presence.Conn) {
	r.mu.Lock()
	if _, dup := r.conns[c.ID]; dup || r.closed {
		r.mu.Unlock()
		return
	}
	r.conns[c.ID] = c
	r.pending[c.ID] = len(r.queue)
	r.queue = append(r.queue, presenceOp{join: true, c: c})
	r.mu.Unlock()
	r.signal()
}

// Leave implements presence.Registry.
func (r *registry) Leave(id string) {
	r.mu.Lock()
	c, ok := r.conns[id]
	if !ok {
		r.mu.Unlock()
		return
	}
	delete(r.conns, id)
	if i, ok := r.pending[id]; ok { // never written: nothing to remove
		r.queue[i].skip = true
		delete(r.pending, id)
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, presenceOp{c: c})
	r.mu.Unlock()
	r.signal()
}

func (r *registry) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run writes joins and leaves as they come, batched, and beats.
func (r *registry) run(ctx context.Context) {
	defer close(r.done)
	r.heartbeat(ctx)
	tick := time.NewTicker(r.beat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			r.flush(ctx)
		case <-tick.C:
			r.heartbeat(ctx)
		}
	}
}

// write is one script call and what its answer means.
type write struct {
	exec  rueidis.LuaExec
	join  bool
	c     presence.Conn
	topic string // "" for a user's or a node's hash
}

// writes appends the script calls that add or remove c, as member.
func (r *registry) writes(ws []write, join bool, c presence.Conn, member string) []write {
	op := "leave"
	if join {
		op = "join"
	}
	ttl := ms(presenceKeyTTL)
	add := func(topic string, value string, keys ...string) {
		ws = append(ws, write{exec: rueidis.LuaExec{Keys: keys, Args: []string{op, c.ID, value, c.User, ttl}}, join: join, c: c, topic: topic})
	}
	add("", member, r.userKey(c.User))
	for _, t := range c.Topics {
		if presence.Tracked(t) {
			k := r.topicKey(t)
			add(t, member+"\n"+c.User, k, k+":n")
		}
	}
	record, _ := json.Marshal(nodeRecord{User: c.User, Topics: c.Topics})
	add("", string(record), r.nodeKey(member))
	return ws
}

// nodeRecord is a stream as kept in its node's hash.
type nodeRecord struct {
	User   string   `json:"u"`
	Topics []string `json:"t"`
}

// send runs ws and reports the changes they made. A failed join marks the
// registry dirty, a failed leave is kept for the next round; it returns
// false when anything failed.
func (r *registry) send(ctx context.Context, ws []write) bool {
	ok := true
	for len(ws) > 0 {
		n := min(len(ws), presenceBatch)
		batch := ws[:n]
		ws = ws[n:]
		execs := make([]rueidis.LuaExec, len(batch))
		for i, w := range batch {
			execs[i] = w.exec
		}
		cctx, cancel := context.WithTimeout(ctx, presenceTimeout)
		res := presenceScript.ExecMulti(cctx, r.e.client, execs...)
		cancel()
		for i, w := range batch {
			n, err := res[i].AsInt64()
			if err != nil {
				ok = false
				r.mu.Lock()
				if w.join {
					r.dirty = true
				} else {
					r.retry[w.c.ID] = w.c
				}
				r.mu.Unlock()
				continue
			}
			if w.topic == "" || r.opt.OnChange == nil {
				continue
			}
			if w.join && n == 1 || !w.join && n == 0 {
				r.opt.OnChange(presence.Change{Topic: w.topic, User: w.c.User, Joined: w.join})
			}
		}
	}
	if !ok && ctx.Err() == nil { // not when Close cut a round short: it sends what is left
		r.e.presenceFailed.Add(1)
		r.warn("presence: writing to Redis failed; retrying", "node", r.opt.Node)
	}
	return ok
}

func (r *registry) warn(msg string, args ...any) {
	if held, ok := r.e.warnings.Allow(msg); ok {
		r.e.log.Warn(msg, append(args, "repeats_held", held)...)
	}
}

// flush sends the queued joins and leaves, and the leaves to retry.
func (r *registry) flush(ctx context.Context) {
	r.mu.Lock()
	ops := r.queue
	r.queue = nil
	clear(r.pending)
	retry := r.retry
	r.retry = map[string]presence.Conn{}
	r.mu.Unlock()
	member := r.currentMember()
	var ws []write
	for _, op := range ops {
		if !op.skip {
			ws = r.writes(ws, op.join, op.c, member)
		}
	}
	for _, c := range retry {
		ws = r.writes(ws, false, c, member)
	}
	if len(ws) > 0 {
		r.send(ctx, ws)
	}
}

// heartbeat renews this node's member, writes everything again when Redis
// lost it, and removes dead members' entries.
func (r *registry) heartbeat(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	member := r.currentMember()
	res, err := beatScript.Exec(cctx, r.e.client, []string{r.nodesKey()}, []string{member}).ToArray()
	cancel()
	var added, now int64
	if err == nil && len(res) >= 2 {
		added, err = res[0].AsInt64()
		if err == nil {
			now, err = res[1].AsInt64()
		}
	}
	if err != nil {
		r.mu.Lock()
		r.dirty = true // Redis may come back empty
		r.mu.Unlock()
		r.warn("presence: heartbeat failed", "node", r.opt.Node, "err", err)
		return
	}
	scores := make(map[string]int64, len(res)/2)
	for i := 2; i+1 < len(res); i += 2 {
		m, _ := res[i].ToString()
		s, _ := res[i+1].ToString()
		f, _ := strconv.ParseFloat(s, 64)
		scores[m] = int64(f)
	}
	var dead []string
	for m, s := range scores {
		if m != member && s < now-r.ttl.Milliseconds() {
			dead = append(dead, m)
		}
	}
	r.liveMu.Lock() // scores is the queries' from here on
	r.scores, r.redisNow, r.beatAt = scores, now, time.Now()
	first := r.beatMember != member // a member's first heartbeat adds it
	r.beatMember = member
	r.beats++
	r.liveMu.Unlock()

	if added == 1 && !first {
		// Redis lost this member, or another node judged it dead and may be
		// removing its entries right now. Its streams are written again under
		// a new incarnation, which that removal cannot touch (it compares
		// values); the old one is marked dead so that it is removed in full.
		r.e.presenceLost.Add(1)
		r.e.log.Warn("presence: Redis lost this node's registration (flushed, restarted, or the node was cut off longer than the TTL); registering its streams again", "node", r.opt.Node)
		old := r.currentMember()
		r.liveMu.Lock()
		r.member = r.opt.Node + "|" + newEpoch()
		r.liveMu.Unlock()
		c := r.e.client
		cctx, cancel := context.WithTimeout(ctx, presenceTimeout)
		c.Do(cctx, c.B().Zadd().Key(r.nodesKey()).ScoreMember().ScoreMember(0, old).Build())
		cancel()
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		r.heartbeat(ctx) // the new member; it rewrites every stream
		return
	}
	r.mu.Lock()
	dirty := r.dirty
	r.dirty = false
	r.mu.Unlock()
	if dirty {
		r.rewrite(ctx)
	}
	if len(dead) > 0 {
		r.reap(ctx, dead)
	}
}

// rewrite writes every stream of this node again, and the leaves to retry.
func (r *registry) rewrite(ctx context.Context) {
	r.mu.Lock()
	conns := make([]presence.Conn, 0, len(r.conns))
	for _, c := range r.conns {
		conns = append(conns, c)
	}
	retry := r.retry
	r.retry = map[string]presence.Conn{}
	r.mu.Unlock()
	member := r.currentMember()
	ws := make([]write, 0, len(conns)*3)
	for _, c := range conns {
		ws = r.writes(ws, true, c, member)
	}
	for _, c := range retry {
		ws = r.writes(ws, false, c, member)
	}
	r.send(ctx, ws)
}

// reap removes the entries of dead members, one node at a time.
func (r *registry) reap(ctx context.Context, dead []string) {
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	c := r.e.client
	got, err := c.Do(ctx, c.B().Set().Key(r.lockKey()).Value(r.currentMember()).Nx().Px(r.ttl).Build()).ToString()
	if err != nil || got != "OK" {
		return // another node reaps, or Redis fails: the next beat tries again
	}
	for _, m := range dead {
		entries, err := c.Do(ctx, c.B().Hgetall().Key(r.nodeKey(m)).Build()).AsStrMap()
		if err != nil {
			return
		}
		var ws []write
		for id, v := range entries {
			var rec nodeRecord
			if json.Unmarshal([]byte(v), &rec) != nil {
				continue
			}
			ws = r.writes(ws, false, presence.Conn{ID: id, User: rec.User, Topics: rec.Topics}, m)
		}
		if !r.send(ctx, ws) {
			return
		}
		for _, res := range c.DoMulti(ctx,
			c.B().Del().Key(r.nodeKey(m)).Build(),
			c.B().Zrem().Key(r.nodesKey()).Member(m).Build()) {
			if res.Error() != nil {
				return
			}
		}
		r.e.presenceReaped.Add(uint64(len(entries)))
		r.e.log.Info("presence: removed a dead node's streams", "dead", nodeOf(m), "streams", len(entries), "node", r.opt.Node)
	}
}

// liveness returns a test of members' liveness, reading the heartbeats of
// members this node has not seen yet.
func (r *registry) liveness(ctx context.Context, members map[string]bool) (func(string) bool, error) {
	r.liveMu.Lock()
	beats := r.beats
	var unknown []string
	for m := range members {
		if _, ok := r.scores[m]; !ok && m != r.member {
			unknown = append(unknown, m)
		}
	}
	r.liveMu.Unlock()
	if beats == 0 {
		return func(string) bool { return true }, nil // nothing to judge by yet
	}
	if len(unknown) > 0 {
		c := r.e.client
		cmds := make(rueidis.Commands, len(unknown))
		for i, m := range unknown {
			cmds[i] = c.B().Zscore().Key(r.nodesKey()).Member(m).Build()
		}
		res := c.DoMulti(ctx, cmds...)
		r.liveMu.Lock()
		for i, m := range unknown {
			s, err := res[i].AsFloat64()
			if rueidis.IsRedisNil(err) {
				s, err = 0, nil // not a member: dead, and reaped
			}
			if err != nil {
				r.liveMu.Unlock()
				return nil, err
			}
			r.scores[m] = int64(s)
		}
		r.liveMu.Unlock()
	}
	r.liveMu.Lock()
	defer r.liveMu.Unlock()
	since := r.redisNow + time.Since(r.beatAt).Milliseconds() - r.ttl.Milliseconds()
	live := make(map[string]bool, len(members))
	for m := range members {
		live[m] = m == r.member || r.scores[m] >= since
	}
	return func(m string) bool { return live[m] }, nil
}

func (r *registry) query(ctx context.Context, key string) (map[string]string, func(string) bool, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, nil, presence.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	entries, err := r.e.client.Do(ctx, r.e.client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", presence.ErrUnavailable, err)
	}
	members := map[string]bool{}
	for _, v := range entries {
		m, _, _ := strings.Cut(v, "\n")
		members[m] = true
	}
	live, err := r.liveness(ctx, members)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", presence.ErrUnavailable, err)
	}
	return entries, live, nil
}

// User implements presence.Registry.
func (r *registry) User(ctx context.Context, user string) (presence.User, error) {
	entries, live, err := r.query(ctx, r.userKey(user))
	if err != nil {
		return presence.User{}, err
	}
	u := presence.User{User: user}
	perNode := map[string]int{}
	for _, m := range entries {
		if live(m) {
			perNode[nodeOf(m)]++
			u.Streams++
		}
	}
	u.Nodes = presence.SortedNodes(perNode)
	return u, nil
}

// Topic implements presence.Registry.
func (r *registry) Topic(ctx context.Context, topic string, limit int) (presence.Topic, error) {
	entries, live, err := r.query(ctx, r.topicKey(topic))
	if err != nil {
		return presence.Topic{}, err
	}
	counts := map[string]int{}
	for _, v := range entries {
		m, user, _ := strings.Cut(v, "\n")
		if live(m) {
			counts[user]++
		}
	}
	return presence.Summarize(topic, counts, limit), nil
}

// Close implements presence.Registry: it removes this node's entries.
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
	member := r.currentMember()
	r.mu.Lock()
	var ws []write
	for _, op := range r.queue {
		if !op.join {
			ws = r.writes(ws, false, op.c, member)
		}
	}
	for _, c := range r.conns {
		ws = r.writes(ws, false, c, member)
	}
	for _, c := range r.retry {
		ws = r.writes(ws, false, c, member)
	}
	r.queue, r.conns, r.retry = nil, map[string]presence.Conn{}, map[string]presence.Conn{}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	r.send(ctx, ws)
	c := r.e.client
	c.DoMulti(ctx, c.B().Del().Key(r.nodeKey(member)).Build(), c.B().Zrem().Key(r.nodesKey()).Member(member).Build())
	return nil
}
