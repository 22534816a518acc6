package redis

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/ratelog"
)

var (
	//go:embed append.lua
	appendSrc string
	//go:embed read.lua
	readSrc string
	//go:embed head.lua
	headSrc string

	appendScript = rueidis.NewLuaScript(appendSrc)
	appendSHA    = sha1hex(appendSrc)
	readScript   = rueidis.NewLuaScript(readSrc)
	headScript   = rueidis.NewLuaScript(headSrc)
)

func sha1hex(src string) string {
	sum := sha1.Sum([]byte(src))
	return hex.EncodeToString(sum[:])
}

// Defaults applied by Open to zero Options fields.
const (
	DefaultMaxLen            = 10_000
	DefaultMaxAge            = 24 * time.Hour
	DefaultMetaTTL           = 30 * 24 * time.Hour
	DefaultIdempotencyWindow = 2 * time.Minute
	DefaultPrefix            = "herald:"
	DefaultPubSubConns       = 2
	DefaultProbeInterval     = 30 * time.Second
	DefaultSweepInterval     = 5 * time.Minute
	// SubscribeTimeout bounds how long Subscribe waits for Redis to confirm.
	SubscribeTimeout = 10 * time.Second
	// ReadyPingTimeout bounds CanWrite's PING; ReadyCacheTTL is how long
	// its outcome is reused.
	ReadyPingTimeout = 500 * time.Millisecond
	ReadyCacheTTL    = time.Second
	// subscribeBatch is the most channels of one SUBSCRIBE on a resubscribe.
	subscribeBatch = 512
	// sweepBatch is the most HMGETs of one pipeline of a sweep.
	sweepBatch = 1000
	// healthyAfter is how long a Pub/Sub connection must have been up for
	// its loss to be redialled after the shortest backoff again; one that
	// breaks sooner keeps doubling it (up to 2s).
	healthyAfter = time.Second
)

// Options configure an engine.
type Options struct {
	// Client is the rueidis client option (address, database, TLS).
	Client rueidis.ClientOption
	// Prefix starts every key and channel of the engine; engines sharing a
	// Redis and a prefix are nodes of one Herald.
	Prefix string
	// MaxLen is the most events kept per topic (0: DefaultMaxLen).
	MaxLen int
	// MaxAge drops events older than this (0: DefaultMaxAge; negative: no age limit).
	MaxAge time.Duration
	// MetaTTL is how long an idle topic's head and epoch are kept (0:
	// DefaultMetaTTL). It must exceed MaxAge plus the longest client absence.
	MetaTTL time.Duration
	// IdempotencyWindow is how long an Event.ID is remembered (0: DefaultIdempotencyWindow).
	IdempotencyWindow time.Duration
	// PubSubConns is the number of Pub/Sub connections (0: DefaultPubSubConns).
	PubSubConns int
	// ProbeInterval is how long a Pub/Sub connection may receive nothing
	// before the engine publishes a probe to it, and how long the probe
	// then has to arrive before the connection is treated as broken (0:
	// DefaultProbeInterval).
	ProbeInterval time.Duration
	// SweepInterval is how often the heads of every subscribed topic are
	// read and compared with what was delivered (0: DefaultSweepInterval).
	SweepInterval time.Duration
	// PresenceBeat is how often a node renews its presence heartbeat (0:
	// DefaultPresenceBeat); PresenceTTL is how long after its last one a
	// node's streams stop counting (0: DefaultPresenceTTL).
	PresenceBeat, PresenceTTL time.Duration
	// Now tells the time to stamp events and apply MaxAge (nil: time.Now).
	Now func() time.Time
	// Logger receives the engine's messages (nil: slog.Default()).
	Logger *slog.Logger
}

// Engine is the Redis engine. See the package documentation.
type Engine struct {
	opt    Options
	client rueidis.Client
	log    *slog.Logger

	mu       sync.RWMutex // guards closed against inflight.Add
	closed   bool
	inflight sync.WaitGroup
	stopping chan struct{} // closed when Close starts
	stopped  atomic.Bool   // set before the delivery barrier in Close
	done     chan struct{} // closed when Close has finished
	once     sync.Once

	shards []*shard
	runs   sync.WaitGroup
	stop   context.CancelFunc // ends the shards' run loops

	// Counters of Metrics.
	reconnects, lostTopics, probesSent, probesFailed, sweeps, sweepBehind atomic.Uint64
	presenceLost, presenceReaped, presenceFailed                          atomic.Uint64

	registries []*registry      // presence registries, closed by Close; guarded by mu
	warnings   *ratelog.Limiter // repeated warnings, logged once in a while

	pingMu  sync.Mutex // one readiness PING at a time; guards pingAt and pingErr
	pingAt  time.Time  // when the last readiness PING answered or failed
	pingErr error      // its outcome, reused for ReadyCacheTTL
}

// Open connects to Redis and starts the Pub/Sub connections. It refuses a
// Redis whose maxmemory-policy could evict Herald's keys.
func Open(opt Options) (*Engine, error) {
	if opt.Prefix == "" {
		opt.Prefix = DefaultPrefix
	}
	if opt.MaxLen <= 0 {
		opt.MaxLen = DefaultMaxLen
	}
	if opt.MaxAge == 0 {
		opt.MaxAge = DefaultMaxAge
	}
	if opt.MetaTTL <= 0 {
		opt.MetaTTL = DefaultMetaTTL
	}
	if opt.MaxAge > 0 && opt.MetaTTL < opt.MaxAge {
		return nil, fmt.Errorf("redis engine: meta TTL %v is shorter than max age %v", opt.MetaTTL, opt.MaxAge)
	}
	if opt.IdempotencyWindow <= 0 {
		opt.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if opt.PubSubConns <= 0 {
		opt.PubSubConns = DefaultPubSubConns
	}
	if opt.ProbeInterval <= 0 {
		opt.ProbeInterval = DefaultProbeInterval
	}
	if opt.SweepInterval <= 0 {
		opt.SweepInterval = DefaultSweepInterval
	}
	if opt.PresenceBeat <= 0 {
		opt.PresenceBeat = DefaultPresenceBeat
	}
	if opt.PresenceTTL <= 0 {
		opt.PresenceTTL = DefaultPresenceTTL
	}
	if opt.PresenceTTL < 2*opt.PresenceBeat {
		return nil, fmt.Errorf("redis engine: presence TTL %v is shorter than two heartbeats (%v each)", opt.PresenceTTL, opt.PresenceBeat)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	opt.Client.DisableCache = true
	if opt.Client.ConnWriteTimeout == 0 {
		opt.Client.ConnWriteTimeout = 10 * time.Second
	}
	client, err := rueidis.NewClient(opt.Client)
	if err != nil {
		return nil, fmt.Errorf("redis engine: %w: %w", engine.ErrUnavailable, err)
	}
	e := &Engine{opt: opt, client: client, log: opt.Logger, stopping: make(chan struct{}), done: make(chan struct{}), warnings: ratelog.NewLimiter(5 * time.Second)}
	if err := e.checkEviction(); err != nil {
		client.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	node := newEpoch() // names this engine's service channels
	for i := range opt.PubSubConns {
		s := &shard{e: e, topics: map[string]*topic{}, svc: opt.Prefix + "probe:" + node + ":" + strconv.Itoa(i)}
		e.shards = append(e.shards, s)
		e.runs.Go(func() { s.run(ctx, i) })
	}
	e.runs.Go(func() { e.sweepLoop(ctx) })
	return e, nil
}

// checkEviction refuses a Redis that may evict keys, on every node of a
// cluster; it only warns when CONFIG is disabled (managed services), since
// it cannot tell.
func (e *Engine) checkEviction() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for addr, c := range e.client.Nodes() {
		m, err := c.Do(ctx, c.B().ConfigGet().Parameter("maxmemory-policy").Build()).AsStrMap()
		if err != nil {
			var re *rueidis.RedisError
			if errors.As(err, &re) {
				e.log.Warn("redis engine: cannot read maxmemory-policy (CONFIG disabled?); it must be noeviction, or Redis may evict topics' heads and reuse offsets", "node", addr, "err", err)
				continue
			}
			return fmt.Errorf("redis engine: %w: %w", engine.ErrUnavailable, err)
		}
		if p, ok := m["maxmemory-policy"]; ok && p != "noeviction" {
			return fmt.Errorf("redis engine: maxmemory-policy is %q on %s, which may evict Herald's keys and silently lose history; set it to noeviction", p, addr)
		} else if !ok {
			e.log.Warn("redis engine: CONFIG GET maxmemory-policy returned nothing; it must be noeviction", "node", addr)
		}
	}
	return nil
}

// enter registers a call in flight, or reports ErrClosed.
func (e *Engine) enter() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return engine.ErrClosed
	}
	e.inflight.Add(1)
	return nil
}

func (e *Engine) key(topic string) string { return e.opt.Prefix + "{" + topic + "}:" }
func (e *Engine) channel(t string) string { return e.key(t) + "c" }

// newEpoch is a random 13-character epoch.
func newEpoch() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	var b [13]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// failed maps a Redis call's error.
func (e *Engine) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("redis engine: %w: %w", engine.ErrUnavailable, err)
}

// Append implements engine.Engine: one script for the whole call.
func (e *Engine) Append(ctx context.Context, events []engine.Event) ([]engine.Position, error) {
	if err := engine.CheckEvents(events); err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, nil
	}
	order, idx := engine.ByTopic(events)
	now := e.opt.Now()
	pos := make([]engine.Position, len(events))
	if len(order) > 1 && e.client.Mode() == rueidis.ClientModeCluster {
		return e.appendPerTopic(ctx, now, order, idx, events, pos)
	}
	keys, args := e.appendCall(now, order, idx, events)
	res, err := appendScript.Exec(ctx, e.client, keys, args).ToArray()
	if err != nil {
		return nil, e.failed(ctx, err)
	}
	if err := readPositions(res, order, idx, pos); err != nil {
		return nil, e.failed(ctx, err)
	}
	return pos, nil
}

// appendCall is the append script's keys and arguments for the events of
// topics (idx: each topic's events, in order).
func (e *Engine) appendCall(now time.Time, topics []string, idx map[string][]int, events []engine.Event) (keys, args []string) {
	maxAge := max(e.opt.MaxAge, 0)
	keys = make([]string, 0, 2*len(topics))
	args = make([]string, 0, 7+2*len(topics)+3*len(events))
	args = append(args, strconv.FormatInt(now.UnixMilli(), 10), strconv.Itoa(e.opt.MaxLen), ms(maxAge), ms(e.opt.MetaTTL), ms(e.opt.IdempotencyWindow), newEpoch(), strconv.Itoa(len(topics)))
	for _, tp := range topics {
		k := e.key(tp)
		keys = append(keys, k+"m", k+"l")
		args = append(args, k+"c", strconv.Itoa(len(idx[tp])))
		for _, i := range idx[tp] {
			args = append(args, events[i].ID, events[i].Type, string(events[i].Data))
		}
	}
	return keys, args
}

// readPositions puts the append script's answer for topics into pos.
func readPositions(res []rueidis.RedisMessage, topics []string, idx map[string][]int, pos []engine.Position) error {
	at := 0
	for _, tp := range topics {
		if at >= len(res) {
			return errors.New("short reply from the append script")
		}
		epoch, err := res[at].ToString()
		if err != nil {
			return err
		}
		at++
		for _, i := range idx[tp] {
			if at >= len(res) {
				return errors.New("short reply from the append script")
			}
			off, err := res[at].AsInt64()
			if err != nil {
				return err
			}
			at++
			pos[i] = engine.Position{Epoch: epoch, Offset: uint64(off)}
		}
	}
	return nil
}

// appendPerTopic appends on a Redis Cluster, where a script may only touch
// one slot: one script call per topic, pipelined (each node runs its own in
// parallel). Each topic is atomic; the call as a whole is not, as the
// engine contract allows: topics that failed are named in an *AppendError.
func (e *Engine) appendPerTopic(ctx context.Context, now time.Time, topics []string, idx map[string][]int, events []engine.Event, pos []engine.Position) ([]engine.Position, error) {
	cmds := make(rueidis.Commands, len(topics))
	for i := range topics {
		keys, args := e.appendCall(now, topics[i:i+1], idx, events)
		cmds[i] = e.client.B().Evalsha().Sha1(appendSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
	}
	failed := map[string]error{}
	for i, r := range e.client.DoMulti(ctx, cmds...) {
		res, err := r.ToArray()
		if rerr, ok := rueidis.IsRedisErr(err); ok && rerr.IsNoScript() {
			// A node that has not loaded the script yet (started, or
			// flushed its scripts): that topic again, loading it.
			keys, args := e.appendCall(now, topics[i:i+1], idx, events)
			res, err = appendScript.Exec(ctx, e.client, keys, args).ToArray()
		}
		if err == nil {
			err = readPositions(res, topics[i:i+1], idx, pos)
		}
		if err != nil {
			failed[topics[i]] = e.failed(ctx, err)
		}
	}
	switch {
	case len(failed) == len(topics):
		return nil, failed[topics[0]]
	case len(failed) > 0:
		return pos, &engine.AppendError{Topics: failed}
	}
	return pos, nil
}

// Read implements engine.Engine.
func (e *Engine) Read(ctx context.Context, tp string, after engine.Position, limit int) ([]engine.Event, error) {
	if err := engine.ValidateTopic(tp); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("redis engine: Read limit %d, want at least 1", limit)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	has := "0"
	if after != (engine.Position{}) {
		has = "1"
	}
	maxAge := max(e.opt.MaxAge, 0)
	k := e.key(tp)
	res, err := readScript.Exec(ctx, e.client, []string{k + "m", k + "l"}, []string{
		has, after.Epoch, strconv.FormatUint(after.Offset, 10), strconv.Itoa(limit),
		strconv.FormatInt(e.opt.Now().UnixMilli(), 10), strconv.Itoa(e.opt.MaxLen), ms(maxAge),
		newEpoch(), ms(e.opt.MetaTTL),
	}).ToArray()
	if err != nil {
		return nil, e.failed(ctx, err)
	}
	if len(res) < 3 || (len(res)-3)%4 != 0 {
		return nil, e.failed(ctx, fmt.Errorf("reply of %d items from the read script", len(res)))
	}
	epoch, _ := res[0].ToString()
	status, _ := res[1].ToString()
	if status == "gap" {
		resume, err := res[2].AsInt64()
		if err != nil {
			return nil, e.failed(ctx, err)
		}
		return nil, &engine.GapError{Topic: tp, Resume: engine.Position{Epoch: epoch, Offset: uint64(resume)}}
	}
	out := make([]engine.Event, 0, (len(res)-3)/4)
	for i := 3; i < len(res); i += 4 {
		id, _ := res[i].ToString()
		tms, _ := res[i+1].ToString()
		typ, _ := res[i+2].ToString()
		data, _ := res[i+3].ToString()
		off, err := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
		if err != nil {
			return nil, e.failed(ctx, fmt.Errorf("stream entry id %q", id))
		}
		t, _ := strconv.ParseInt(tms, 10, 64)
		out = append(out, engine.Event{Topic: tp, Type: typ, Data: []byte(data), Pos: engine.Position{Epoch: epoch, Offset: off}, Prev: off - 1, Time: time.UnixMilli(t)})
	}
	return out, nil
}

// Head implements engine.Engine.
func (e *Engine) Head(ctx context.Context, tp string) (engine.Position, error) {
	if err := engine.ValidateTopic(tp); err != nil {
		return engine.Position{}, err
	}
	if err := e.enter(); err != nil {
		return engine.Position{}, err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return engine.Position{}, err
	}
	k := e.key(tp)
	res, err := headScript.Exec(ctx, e.client, []string{k + "m", k + "l"}, []string{newEpoch(), ms(e.opt.MetaTTL)}).ToArray()
	if err != nil {
		return engine.Position{}, e.failed(ctx, err)
	}
	if len(res) != 2 {
		return engine.Position{}, e.failed(ctx, fmt.Errorf("reply of %d items from the head script", len(res)))
	}
	epoch, err1 := res[0].ToString()
	off, err2 := res[1].AsInt64()
	if err := errors.Join(err1, err2); err != nil {
		return engine.Position{}, e.failed(ctx, err)
	}
	return engine.Position{Epoch: epoch, Offset: uint64(off)}, nil
}

// Close implements engine.Engine: calls in flight finish, then the Pub/Sub
// connections stop and no callback runs after Close returns.
func (e *Engine) Close() error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		registries := e.registries
		e.mu.Unlock()
		for _, r := range registries { // first: they remove their entries
			r.Close()
		}
		close(e.stopping)
		e.inflight.Wait()
		e.stop()
		e.runs.Wait()
		e.stopped.Store(true)
		for _, s := range e.shards { // barrier: a delivery running now ends first
			s.mu.Lock()
			ts := slices.Collect(mapValues(s.topics))
			s.mu.Unlock()
			for _, t := range ts {
				t.mu.Lock()
				t.mu.Unlock() //nolint:staticcheck // an empty critical section is the barrier
			}
		}
		e.client.Close()
		close(e.done)
	})
	<-e.done
	return nil
}

// CanWrite implements engine.WriteChecker for readiness, cheaply: it
// reports ErrUnavailable while a Pub/Sub connection is down or reconnecting
// (its subscribers would miss live events), and while Redis does not answer
// a PING within ReadyPingTimeout. The PING's outcome is reused for
// ReadyCacheTTL, so a readiness probe polled often does not load Redis.
func (e *Engine) CanWrite() error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.inflight.Done()
	for i, s := range e.shards {
		s.mu.Lock()
		up := s.up
		s.mu.Unlock()
		if !up {
			return fmt.Errorf("redis engine: %w: Pub/Sub connection %d is down, reconnecting", engine.ErrUnavailable, i)
		}
	}
	e.pingMu.Lock()
	defer e.pingMu.Unlock()
	if e.pingAt.IsZero() || time.Since(e.pingAt) >= ReadyCacheTTL {
		ctx, cancel := context.WithTimeout(context.Background(), ReadyPingTimeout)
		err := e.client.Do(ctx, e.client.B().Ping().Build()).Error()
		cancel()
		e.pingErr = nil
		if err != nil {
			e.pingErr = fmt.Errorf("redis engine: %w: PING: %w", engine.ErrUnavailable, err)
		}
		e.pingAt = time.Now()
	}
	return e.pingErr
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// shard is one Pub/Sub connection and the topics hashed onto it.
type shard struct {
	e *Engine

	svc   string       // the service channel the idle probe is published on
	heard atomic.Int64 // monotonic() of the last message or confirmation received

	sendMu sync.Mutex // orders SUBSCRIBE and UNSUBSCRIBE with the changes to topics

	mu     sync.Mutex
	conn   rueidis.DedicatedClient // nil while disconnected
	up     bool                    // conn answered and every channel is subscribed again
	gen    uint64                  // connection generation
	topics map[string]*topic       // by channel
}

// topic is one subscribed channel's local state.
type topic struct {
	name      string
	confirmed chan struct{} // closed on the first subscribe confirmation
	active    bool          // confirmed once (under shard.mu)
	gen       uint64        // the generation it was last confirmed on (under shard.mu)

	mu        sync.Mutex // held while delivering
	subs      []*sub
	epoch     string
	delivered uint64
	base      engine.Position // the head read after the first confirmation, while epoch is ""
	based     bool            // base is set
	// Until that head is read (ready is closed), frames wait in early: a
	// frame at or before it was appended before Subscribe returned, and on
	// a Redis Cluster such a frame can still arrive after the confirmation
	// (PUBLISH reaches the other nodes through the cluster bus, later).
	ready chan struct{}
	early []engine.Event
}

// maxEarly bounds the frames kept while a new topic's head is read; past it
// they are dropped and the subscribers told they may have lost some.
const maxEarly = 1024

type sub struct {
	fn   func(engine.Event)
	lost func()
}

func (e *Engine) shardOf(ch string) *shard {
	h := fnv.New32a()
	h.Write([]byte(ch))
	return e.shards[h.Sum32()%uint32(len(e.shards))]
}

// Subscribe implements engine.Engine. It returns once Redis has confirmed
// the channel's subscription.
func (e *Engine) Subscribe(tp string, fn func(engine.Event), lost func()) (func(), error) {
	if err := engine.ValidateTopic(tp); err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	ch := e.channel(tp)
	s := e.shardOf(ch)
	sb := &sub{fn: fn, lost: lost}

	s.sendMu.Lock()
	s.mu.Lock()
	t := s.topics[ch]
	isNew := t == nil
	if isNew {
		t = &topic{name: tp, confirmed: make(chan struct{}), ready: make(chan struct{})}
		s.topics[ch] = t
	}
	t.mu.Lock()
	t.subs = append(slices.Clip(t.subs), sb)
	t.mu.Unlock()
	conn := s.conn
	s.mu.Unlock()
	if isNew && conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), SubscribeTimeout)
		// An error means the connection broke: the reconnect subscribes again.
		conn.Do(ctx, conn.B().Subscribe().Channel(ch).Build())
		cancel()
	}
	s.sendMu.Unlock()

	cancel := func() { s.cancel(ch, t, sb) }
	timer := time.NewTimer(SubscribeTimeout)
	defer timer.Stop()
	ready := t.confirmed
	if !isNew {
		ready = t.ready // the first Subscribe reads the head, the others wait for it
	}
	select {
	case <-ready:
		if isNew {
			e.baseline(t)
		}
		return sync.OnceFunc(cancel), nil
	case <-e.stopping:
		if isNew {
			t.open(nil, true)
		}
		cancel()
		return nil, engine.ErrClosed
	case <-timer.C:
		if isNew { // no head to compare with: frames go through as they come
			t.open(nil, e.stopped.Load())
		}
		cancel()
		return nil, fmt.Errorf("redis engine: %w: subscription to %q not confirmed within %v", engine.ErrUnavailable, tp, SubscribeTimeout)
	}
}

// cancel removes a subscriber; the last one unsubscribes the channel.
func (s *shard) cancel(ch string, t *topic, sb *sub) {
	t.mu.Lock()
	i := slices.Index(t.subs, sb)
	if i >= 0 {
		t.subs = slices.Delete(slices.Clone(t.subs), i, i+1)
	}
	empty := len(t.subs) == 0
	t.mu.Unlock()
	if !empty || i < 0 {
		return
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	t.mu.Lock()
	empty = len(t.subs) == 0
	t.mu.Unlock()
	if !empty || s.topics[ch] != t {
		s.mu.Unlock()
		return
	}
	delete(s.topics, ch)
	conn := s.conn
	s.mu.Unlock()
	if conn != nil && !s.e.stopped.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), SubscribeTimeout)
		conn.Do(ctx, conn.B().Unsubscribe().Channel(ch).Build())
		cancel()
	}
}

// run keeps the shard's Pub/Sub connection up until ctx ends, subscribing
// every wanted channel after each (re)connect.
func (s *shard) run(ctx context.Context, n int) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		conn, _ := s.e.client.Dedicate()
		s.mu.Lock()
		s.gen++
		gen := s.gen
		s.mu.Unlock()
		errs := conn.SetPubSubHooks(rueidis.PubSubHooks{
			OnMessage:      func(m rueidis.PubSubMessage) { s.heard.Store(monotonic()); s.message(m) },
			OnSubscription: func(c rueidis.PubSubSubscription) { s.heard.Store(monotonic()); s.confirm(gen, c) },
		})
		s.sendMu.Lock()
		s.mu.Lock()
		s.conn = conn
		chans := make([]string, 0, len(s.topics)+1)
		chans = append(chans, s.svc)
		for ch := range s.topics {
			chans = append(chans, ch)
		}
		s.mu.Unlock()
		// A PING first: a dedicated connection dials lazily, and one with no
		// channel to subscribe would otherwise pass for up without ever
		// having reached Redis.
		pctx, pcancel := context.WithTimeout(ctx, SubscribeTimeout)
		err := conn.Do(pctx, conn.B().Ping().Build()).Error()
		pcancel()
		for b := range slices.Chunk(chans, subscribeBatch) {
			if err != nil {
				break
			}
			sctx, cancel := context.WithTimeout(ctx, SubscribeTimeout)
			err = conn.Do(sctx, conn.B().Subscribe().Channel(b...).Build()).Error()
			cancel()
		}
		if err == nil {
			s.mu.Lock()
			s.up = true
			s.mu.Unlock()
		}
		s.sendMu.Unlock()
		if err == nil {
			upAt := time.Now()
			err = s.watch(ctx, errs)
			if time.Since(upAt) >= healthyAfter {
				backoff = 50 * time.Millisecond // a new incident, not the same one going on
			}
		}
		s.sendMu.Lock()
		s.mu.Lock()
		s.conn, s.up = nil, false
		s.mu.Unlock()
		s.sendMu.Unlock()
		conn.Close() // also releases it
		if ctx.Err() != nil {
			return
		}
		s.e.log.Warn("redis engine: Pub/Sub connection lost; reconnecting", "conn", n, "err", err)
		s.e.reconnects.Add(1)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Metrics implements engine.Metrics.
func (e *Engine) Metrics() []engine.Counter {
	return []engine.Counter{
		{Name: "reconnects", Help: "Pub/Sub connections dialled again after they broke or failed their probe.", Value: e.reconnects.Load()},
		{Name: "lost_topics", Help: "Times a topic's subscribers were told to re-read history (after a reconnect, or by the sweep).", Value: e.lostTopics.Load()},
		{Name: "probes_sent", Help: "Probes published to a Pub/Sub connection that had been idle.", Value: e.probesSent.Load()},
		{Name: "probes_failed", Help: "Probes that did not arrive in time; the connection was dialled again.", Value: e.probesFailed.Load()},
		{Name: "sweeps", Help: "Sweeps of subscribed topics' heads against what was delivered.", Value: e.sweeps.Load()},
		{Name: "sweep_behind_topics", Help: "Topics a sweep found behind their head.", Value: e.sweepBehind.Load()},
		{Name: "presence_lost", Help: "Heartbeats that found this node's presence gone from Redis, so its streams were registered again.", Value: e.presenceLost.Load()},
		{Name: "presence_reaped_streams", Help: "Streams of dead nodes removed from presence by this node.", Value: e.presenceReaped.Load()},
		{Name: "presence_write_failures", Help: "Rounds of presence writes that failed and were retried.", Value: e.presenceFailed.Load()},
	}
}

// heads reads the heads of topics in one pipeline: a zero Position for a
// topic without a meta hash, ok false for one whose read failed.
func (e *Engine) heads(ctx context.Context, ts []*topic) (heads []engine.Position, ok []bool) {
	cmds := make(rueidis.Commands, 0, len(ts))
	for _, t := range ts {
		cmds = append(cmds, e.client.B().Hmget().Key(e.key(t.name)+"m").Field("e", "s").Build())
	}
	heads, ok = make([]engine.Position, len(ts)), make([]bool, len(ts))
	for i, r := range e.client.DoMulti(ctx, cmds...) {
		v, err := r.ToArray()
		if err != nil || len(v) != 2 {
			continue
		}
		epoch, err := v[0].ToString()
		if err != nil { // no meta hash: no epoch yet
			ok[i] = true
			continue
		}
		off, err := v[1].AsUint64()
		if err != nil {
			continue
		}
		heads[i], ok[i] = engine.Position{Epoch: epoch, Offset: off}, true
	}
	return heads, ok
}

// baseline records the head of a topic just subscribed, which the sweep
// compares with until a frame is delivered; on error the first sweep
// records it instead.
func (e *Engine) baseline(t *topic) {
	ctx, cancel := context.WithTimeout(context.Background(), SubscribeTimeout)
	defer cancel()
	h, ok := e.heads(ctx, []*topic{t})
	if !ok[0] {
		t.open(nil, e.stopped.Load())
		return
	}
	t.open(&h[0], e.stopped.Load())
}

// open ends the wait for t's first head: with head, frames up to it are
// dropped (appended before Subscribe returned); the frames kept meanwhile
// are delivered.
func (t *topic) open(head *engine.Position, stopped bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.ready:
		return
	default:
	}
	close(t.ready)
	if head != nil && !t.based {
		t.base, t.based = *head, true
		if t.epoch == "" {
			t.epoch, t.delivered = head.Epoch, head.Offset
		}
	}
	early := t.early
	t.early = nil
	if len(early) == maxEarly && !stopped {
		for _, sb := range t.subs {
			if sb.lost != nil {
				sb.lost()
			}
		}
	}
	t.deliver(early, stopped)
}

// sweepLoop runs a sweep every SweepInterval until ctx ends.
func (e *Engine) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(e.opt.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		e.sweep(ctx)
	}
}

// sweep reads the heads of every confirmed topic of the connections that
// are up, in pipelines of sweepBatch, and calls lost for each topic whose
// head is past what it delivered (or of another epoch); it returns how many.
// A frame still on its way may cause a needless re-read; that is cheap.
func (e *Engine) sweep(ctx context.Context) int {
	var ts []*topic
	for _, s := range e.shards {
		s.mu.Lock()
		if s.up {
			for _, t := range s.topics {
				if t.active {
					ts = append(ts, t)
				}
			}
		}
		s.mu.Unlock()
	}
	n := 0
	for b := range slices.Chunk(ts, sweepBatch) {
		bctx, cancel := context.WithTimeout(ctx, SubscribeTimeout)
		heads, ok := e.heads(bctx, b)
		cancel()
		for i, t := range b {
			if ok[i] && t.behind(e, heads[i]) {
				n++
			}
		}
	}
	e.sweeps.Add(1)
	e.sweepBehind.Add(uint64(n))
	if n > 0 {
		e.log.Warn("redis engine: the sweep found topics behind their heads; their subscribers re-read", "topics", n)
	}
	return n
}

// behind calls the subscribers' lost if head is past what the topic
// delivered (or its baseline, before any delivery), and then takes head as
// delivered: the re-read starts after the lost call, so it covers head.
func (t *topic) behind(e *Engine, head engine.Position) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.stopped.Load() || head.Epoch == "" {
		return false // a topic without a meta hash has nothing to miss
	}
	cur := engine.Position{Epoch: t.epoch, Offset: t.delivered}
	if t.epoch == "" {
		if !t.based {
			t.base, t.based = head, true
			return false
		}
		cur = t.base
	}
	if head.Epoch == cur.Epoch && head.Offset <= cur.Offset {
		return false
	}
	t.epoch, t.delivered = head.Epoch, head.Offset
	e.lostTopics.Add(1)
	for _, sb := range t.subs {
		if sb.lost != nil {
			sb.lost()
		}
	}
	return true
}

// started anchors monotonic.
var started = time.Now()

// monotonic is the time in ns on the monotonic clock, at least 1.
func monotonic() int64 { return int64(time.Since(started)) + 1 }

// errSilent is why a connection that did not receive its probe is closed.
var errSilent = errors.New("the idle probe did not arrive: the connection is open but receives nothing")

// watch waits until the connection breaks (its error), ctx ends (nil), or
// the connection turns out silent (errSilent): when it has received nothing
// for ProbeInterval, a probe is published on its service channel through the
// command client, and it must arrive within another ProbeInterval.
func (s *shard) watch(ctx context.Context, errs <-chan error) error {
	every := s.e.opt.ProbeInterval
	tick := time.NewTicker(max(every/4, time.Millisecond))
	defer tick.Stop()
	s.heard.Store(monotonic())
	// sent is monotonic() just before the pending probe was published (0:
	// none pending): anything received after it counts as the probe's
	// arrival. The probe has until deadline, an interval after the
	// PUBLISH's reply, so a slow command client does not eat its time.
	var sent, deadline int64
	for {
		select {
		case err := <-errs:
			return err
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now, heard := monotonic(), s.heard.Load()
		if sent != 0 && heard >= sent {
			sent = 0
		}
		switch {
		case sent != 0:
			if now >= deadline {
				s.e.probesFailed.Add(1)
				return errSilent
			}
		case now-heard >= int64(every):
			sent = now
			pctx, cancel := context.WithTimeout(ctx, every)
			// A failed PUBLISH leaves the probe pending: if nothing
			// arrives, the connection is redialled all the same.
			s.e.client.Do(pctx, s.e.client.B().Publish().Channel(s.svc).Message("probe").Build())
			cancel()
			s.e.probesSent.Add(1)
			deadline = monotonic() + int64(every)
		}
	}
}

// confirm handles a subscribe confirmation on connection generation gen: the
// first one lets Subscribe return; a later one on a new connection means
// events may have been missed while it was down, so the subscribers re-read.
func (s *shard) confirm(gen uint64, c rueidis.PubSubSubscription) {
	if c.Kind != "subscribe" {
		return
	}
	s.mu.Lock()
	t := s.topics[c.Channel]
	if t == nil {
		s.mu.Unlock()
		return
	}
	first, again := !t.active, t.active && t.gen < gen
	t.active, t.gen = true, gen
	s.mu.Unlock()
	if first {
		close(t.confirmed)
	}
	if again {
		t.mu.Lock()
		defer t.mu.Unlock()
		if s.e.stopped.Load() {
			return
		}
		s.e.lostTopics.Add(1)
		for _, sb := range t.subs {
			if sb.lost != nil {
				sb.lost()
			}
		}
	}
}

// message delivers a frame to the topic's subscribers, in order, dropping
// what was already delivered.
func (s *shard) message(m rueidis.PubSubMessage) {
	s.mu.Lock()
	t := s.topics[m.Channel]
	s.mu.Unlock()
	if t == nil {
		return
	}
	events, err := decodeFrame(t.name, []byte(m.Message))
	if err != nil {
		s.e.log.Error("redis engine: undecodable frame", "channel", m.Channel, "err", err)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.ready:
	default: // the head is being read: keep the frame for baseline
		if n := min(len(events), maxEarly-len(t.early)); n > 0 {
			t.early = append(t.early, events[:n]...)
		}
		return
	}
	t.deliver(events, s.e.stopped.Load())
}

// deliver hands events to the subscribers, dropping what was already
// delivered; t.mu is held.
func (t *topic) deliver(events []engine.Event, stopped bool) {
	if stopped {
		return
	}
	for _, ev := range events {
		if ev.Pos.Epoch == t.epoch && ev.Pos.Offset <= t.delivered {
			continue
		}
		t.epoch, t.delivered = ev.Pos.Epoch, ev.Pos.Offset
		for _, sb := range t.subs {
			sb.fn(ev)
		}
	}
}

// decodeFrame decodes the append script's frame:
// version(1) time-ms(8) epoch-len(2) epoch count(4), then per event
// offset(8) type-len(4) type data-len(4) data; big-endian.
func decodeFrame(tp string, b []byte) ([]engine.Event, error) {
	bad := errors.New("short frame")
	if len(b) < 15 || b[0] != 1 {
		return nil, fmt.Errorf("frame of %d bytes, version %d", len(b), b[0])
	}
	tm := time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:])))
	el := int(binary.BigEndian.Uint16(b[9:]))
	b = b[11:]
	if len(b) < el+4 {
		return nil, bad
	}
	epoch := string(b[:el])
	n := int(binary.BigEndian.Uint32(b[el:]))
	b = b[el+4:]
	out := make([]engine.Event, 0, n)
	for range n {
		if len(b) < 12 {
			return nil, bad
		}
		off := binary.BigEndian.Uint64(b)
		tl := int(binary.BigEndian.Uint32(b[8:]))
		b = b[12:]
		if len(b) < tl+4 {
			return nil, bad
		}
		typ := string(b[:tl])
		dl := int(binary.BigEndian.Uint32(b[tl:]))
		b = b[tl+4:]
		if len(b) < dl {
			return nil, bad
		}
		data := slices.Clone(b[:dl])
		b = b[dl:]
		out = append(out, engine.Event{Topic: tp, Type: typ, Data: data, Pos: engine.Position{Epoch: epoch, Offset: off}, Prev: off - 1, Time: tm})
	}
	return out, nil
}
