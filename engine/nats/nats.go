package nats

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-hub/herald/engine"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultStream            = "HERALD"
	DefaultMaxLen            = 10_000
	DefaultMaxAge            = 24 * time.Hour
	DefaultIdempotencyWindow = 2 * time.Minute
	DefaultSweepInterval     = 30 * time.Second
	DefaultReplicas          = 1
	// RequestTimeout bounds one request to the server (a publish, a direct
	// get) when the caller's context has no earlier deadline.
	RequestTimeout = 5 * time.Second
	// SubscribeTimeout bounds how long Subscribe waits for the server to
	// confirm the subscription.
	SubscribeTimeout = 10 * time.Second
	// appendParallel is the most topics of one Append published at once.
	appendParallel = 32
	// lockStripes serialize appends per topic on this node.
	lockStripes = 1024
	// lastCacheMax bounds the cache of topics' last sequences.
	lastCacheMax = 1 << 16
	// casRetries bounds the compare-and-set retries of one event.
	casRetries = 1000
	// ageSweepBatch is the most messages one age sweep walks, ageSweepFetch
	// at a time (headers only, through a consumer).
	ageSweepBatch = 100_000
	ageSweepFetch = 1000
)

// fanoutBuffer is the capacity of the channel every live subscription
// delivers into; when it is full, the client drops messages and reports a
// slow consumer, which makes the topic's subscribers re-read. A variable for
// tests.
var fanoutBuffer = 1 << 16

// pingInterval is how often the client checks that the server answers. A
// variable for tests.
var pingInterval = 10 * time.Second

// Message headers written by the engine.
const (
	hdrType = "Herald-Type"
	hdrPrev = "Herald-Prev"
	hdrTime = "Herald-Time"
	// hdrTypeB64 replaces Herald-Type for a type a header value cannot
	// carry as it is (control bytes, non-ASCII, spaces at either end).
	hdrTypeB64 = "Herald-Type-B64"
	// Set by NATS.
	hdrMsgID        = "Nats-Msg-Id"
	hdrExpectSubSeq = "Nats-Expected-Last-Subject-Sequence"
	hdrSequence     = "Nats-Sequence"
	hdrStatus       = "Status"
)

// errWrongLastSeq is JetStream's error code for a failed
// Nats-Expected-Last-Subject-Sequence check.
const errWrongLastSeq = 10071

// Options configure an engine.
type Options struct {
	// URL is the NATS server URL (nats://host:4222, or several separated by
	// commas).
	URL string
	// NATS are extra client options (credentials, TLS, ...).
	NATS []nats.Option
	// Stream is the JetStream stream that holds every topic (0: DefaultStream).
	// Engines sharing a server and a stream are nodes of one Herald.
	Stream string
	// Replicas is the stream's replica count when the engine creates it (0:
	// DefaultReplicas).
	Replicas int
	// MaxLen is the most events kept per topic (0: DefaultMaxLen).
	MaxLen int
	// MaxAge hides and then removes events older than this (0:
	// DefaultMaxAge; negative: no age limit).
	MaxAge time.Duration
	// IdempotencyWindow is the stream's duplicate window (0:
	// DefaultIdempotencyWindow).
	IdempotencyWindow time.Duration
	// SweepInterval is how often the heads of subscribed topics are compared
	// with what was delivered, and expired events removed (0:
	// DefaultSweepInterval).
	SweepInterval time.Duration
	// Now tells the time to stamp events and apply MaxAge (nil: time.Now).
	Now func() time.Time
	// Logger receives the engine's messages (nil: slog.Default()).
	Logger *slog.Logger
}

// Engine is the NATS JetStream engine. See the package documentation.
type Engine struct {
	opt Options
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream

	subjPrefix string // herald.<stream>.t.
	livePrefix string // herald.<stream>.live.
	directGet  string // $JS.API.DIRECT.GET.<stream>

	epochMu      sync.Mutex // one stream check at a time
	warnedConfig atomic.Bool
	epoch        atomic.Pointer[string]

	// unverified is set when the connection drops: the server may come
	// back with an empty store, the stream created again by another node.
	// Until a check of the stream (verifyEpoch), positions would be given
	// in the old epoch for the new stream's sequences.
	unverified atomic.Bool
	recheckMu  sync.Mutex
	recheck    *epochCheck // the check in progress, shared by the calls

	mu         sync.RWMutex // guards closed against inflight.Add, and registries
	closed     bool
	registries []*registry // presence registries, closed by Close
	inflight   sync.WaitGroup
	stopping   chan struct{} // closed when Close starts
	done       chan struct{} // closed when Close has finished
	once       sync.Once

	// highSeq is the highest stream sequence an append of this engine was
	// acknowledged at in the current epoch: a later append acknowledged at or
	// below it means that the stream was created again (checkStream).
	highSeq atomic.Uint64

	stripes [lockStripes]sync.Mutex
	lastMu  sync.Mutex
	last    map[string]uint64 // subject -> last sequence seen, a cache

	subMu  sync.Mutex
	topics map[string]*topic // by topic name
	bySub  map[*nats.Subscription]*topic

	msgs       chan *nats.Msg // every live subscription delivers here
	kick       chan struct{}  // wakes the sweeper
	verifyMu   sync.Mutex
	verify     []verifyItem // topics to check once after verifyDelay, by time
	lostAll    atomic.Bool  // the next sweeper round tells every topic
	runs       sync.WaitGroup
	stop       context.CancelFunc
	ageMu      sync.Mutex // one age sweep at a time; guards swept and sweptEpoch
	swept      uint64     // the age sweep's cursor: sequences before it were handled
	sweptEpoch string     // the epoch swept is of

	// Counters of Metrics.
	reconnects, disconnects, lostTopics, holes, slowConsumers, sweeps, sweepBehind, conflicts, epochChanges, agePurges, leaderChanges atomic.Uint64
}

// Open connects to NATS and creates the stream unless it exists.
func Open(opt Options) (*Engine, error) {
	if opt.Stream == "" {
		opt.Stream = DefaultStream
	}
	if strings.ContainsAny(opt.Stream, ". *>/\\\t") {
		return nil, fmt.Errorf("nats engine: invalid stream name %q", opt.Stream)
	}
	if opt.Replicas <= 0 {
		opt.Replicas = DefaultReplicas
	}
	if opt.MaxLen <= 0 {
		opt.MaxLen = DefaultMaxLen
	}
	if opt.MaxAge == 0 {
		opt.MaxAge = DefaultMaxAge
	}
	if opt.IdempotencyWindow <= 0 {
		opt.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if opt.SweepInterval <= 0 {
		opt.SweepInterval = DefaultSweepInterval
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	e := &Engine{
		opt:        opt,
		log:        opt.Logger,
		subjPrefix: "herald." + opt.Stream + ".t.",
		livePrefix: "herald." + opt.Stream + ".live.",
		directGet:  "$JS.API.DIRECT.GET." + opt.Stream,
		stopping:   make(chan struct{}),
		done:       make(chan struct{}),
		last:       map[string]uint64{},
		topics:     map[string]*topic{},
		bySub:      map[*nats.Subscription]*topic{},
		msgs:       make(chan *nats.Msg, fanoutBuffer),
		kick:       make(chan struct{}, 1),
	}
	nopts := []nats.Option{
		nats.Name("herald"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		// A connection that stops answering (a blackholed path) is given
		// up after about PingInterval × (MaxPingsOut+1) and dialled again,
		// which calls lost for every topic.
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			e.unverified.Store(true)
			e.disconnects.Add(1)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			e.unverified.Store(true)
			e.reconnects.Add(1)
			e.signalAll()
		}),
		nats.ErrorHandler(e.asyncError),
	}
	nopts = append(nopts, opt.NATS...)
	nc, err := nats.Connect(opt.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("nats engine: %w: %w", engine.ErrUnavailable, err)
	}
	e.nc = nc
	e.js, err = jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats engine: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*RequestTimeout)
	defer cancel()
	if _, err := e.checkStream(ctx, true); err != nil {
		nc.Close()
		return nil, err
	}
	// Leader elections: republish happens on the leader only, so a leader
	// that failed after storing a message may never have republished it.
	if _, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."+opt.Stream, e.msgs); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats engine: %w: %w", engine.ErrUnavailable, err)
	}
	sctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	e.runs.Add(2)
	go func() { defer e.runs.Done(); e.dispatch(sctx) }()
	go func() { defer e.runs.Done(); e.sweeper(sctx) }()
	return e, nil
}

// streamConfig is the configuration of the stream the engine creates.
func (e *Engine) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              e.opt.Stream,
		Description:       "Herald topics",
		Subjects:          []string{e.subjPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          e.opt.Replicas,
		MaxMsgsPerSubject: int64(e.opt.MaxLen),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Duplicates:        e.opt.IdempotencyWindow,
		AllowDirect:       true,
		RePublish:         &jetstream.RePublish{Source: e.subjPrefix + ">", Destination: e.livePrefix + ">"},
	}
}

// checkStream finds the stream, creating it when it does not exist, and
// updates the epoch. With reconcile (at Open), a stream whose settings
// differ from this engine's (MaxLen, direct gets, republish) is updated;
// later checks only warn, so that nodes configured differently do not undo
// each other's updates. It reports whether the epoch changed; a change makes
// every subscribed topic start over.
func (e *Engine) checkStream(ctx context.Context, reconcile bool) (bool, error) {
	e.epochMu.Lock()
	defer e.epochMu.Unlock()
	var info *jetstream.StreamInfo
	s, err := e.js.Stream(ctx, e.opt.Stream)
	if err == nil {
		info = s.CachedInfo()
		if want := int64(e.opt.MaxLen); info.Config.MaxMsgsPerSubject != want || !info.Config.AllowDirect || info.Config.RePublish == nil {
			if !reconcile {
				if !e.warnedConfig.Swap(true) {
					e.log.Warn("nats engine: the stream's settings differ from this node's (another node's max length?)", "stream", e.opt.Stream, "max_msgs_per_subject", info.Config.MaxMsgsPerSubject, "want", want)
				}
			} else {
				cfg := info.Config
				cfg.MaxMsgsPerSubject, cfg.AllowDirect = want, true
				cfg.RePublish = e.streamConfig().RePublish
				if s, err = e.js.UpdateStream(ctx, cfg); err != nil {
					return false, fmt.Errorf("nats engine: %w: updating stream %s: %w", engine.ErrUnavailable, e.opt.Stream, err)
				}
				info = s.CachedInfo()
			}
		}
	} else if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = e.js.CreateStream(ctx, e.streamConfig())
		for try := 0; try < 5 && isStoreError(err); try++ {
			// nats-server 2.9 can fail to create a stream's directory while
			// another stream of the account is being deleted: try again.
			time.Sleep(time.Duration(50*(try+1)) * time.Millisecond)
			s, err = e.js.CreateStream(ctx, e.streamConfig())
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another node was first
			s, err = e.js.Stream(ctx, e.opt.Stream)
		}
		if err != nil {
			return false, fmt.Errorf("nats engine: %w: creating stream %s: %w", engine.ErrUnavailable, e.opt.Stream, err)
		}
		info = s.CachedInfo()
	} else {
		return false, fmt.Errorf("nats engine: %w: stream %s: %w", engine.ErrUnavailable, e.opt.Stream, err)
	}
	epoch := epochOf(info.Config.Name, info.Created)
	old := e.epoch.Swap(&epoch)
	changed := old != nil && *old != epoch
	if changed {
		e.epochChanges.Add(1)
		e.highSeq.Store(0)
		e.lastMu.Lock()
		clear(e.last)
		e.lastMu.Unlock()
		e.log.Warn("nats engine: the stream was created again: a new epoch, history before it is gone", "stream", e.opt.Stream, "epoch", epoch)
		e.signalAll()
	}
	return changed, nil
}

func isStoreError(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == 10049
}

// epochOf names a stream's incarnation: its name and creation time.
func epochOf(name string, created time.Time) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", name, created.UnixNano()))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:13]
}

func (e *Engine) curEpoch() string { return *e.epoch.Load() }

// subject maps a topic to its stream subject: '.' (a subject's token
// separator) becomes '%', which topics never contain, so the topic is one
// token and the mapping reverses.
func (e *Engine) subject(topic string) string {
	return e.subjPrefix + strings.ReplaceAll(topic, ".", "%")
}

func (e *Engine) live(topic string) string {
	return e.livePrefix + strings.ReplaceAll(topic, ".", "%")
}

func unmap(token string) string { return strings.ReplaceAll(token, "%", ".") }

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

// verifyEpoch checks the stream once after the connection dropped, before
// a call answers with positions: the server may have come back with an
// empty store and the stream been created again by another node, which
// this engine's reconnect handling may not have noticed yet (or its check
// failed, the server not being back). The calls waiting meanwhile share
// one check.
func (e *Engine) verifyEpoch(ctx context.Context) error {
	if !e.unverified.Load() {
		return nil
	}
	e.recheckMu.Lock()
	c := e.recheck
	if c == nil {
		c = &epochCheck{done: make(chan struct{})}
		e.recheck = c
		e.recheckMu.Unlock()
		e.unverified.Store(false) // a drop during the check sets it again
		if _, c.err = e.checkStream(ctx, false); c.err != nil {
			e.unverified.Store(true)
		}
		e.recheckMu.Lock()
		e.recheck = nil
		e.recheckMu.Unlock()
		close(c.done)
	} else {
		e.recheckMu.Unlock()
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// epochCheck is a check of the stream by verifyEpoch.
type epochCheck struct {
	done chan struct{}
	err  error
}

// failed maps a NATS call's error.
func failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, engine.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("nats engine: %w: %w", engine.ErrUnavailable, err)
}

// requestTimeout is RequestTimeout, a variable for tests.
var requestTimeout = RequestTimeout

// reqCtx bounds one request by RequestTimeout.
func reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) < requestTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, requestTimeout)
}

func (e *Engine) stripe(subj string) *sync.Mutex {
	var h uint32 = 2166136261
	for i := 0; i < len(subj); i++ {
		h = (h ^ uint32(subj[i])) * 16777619
	}
	return &e.stripes[h%lockStripes]
}

func (e *Engine) cachedLast(subj string) uint64 {
	e.lastMu.Lock()
	defer e.lastMu.Unlock()
	return e.last[subj]
}

func (e *Engine) setLast(subj string, seq uint64) {
	e.lastMu.Lock()
	defer e.lastMu.Unlock()
	if len(e.last) >= lastCacheMax {
		clear(e.last)
	}
	if seq > e.last[subj] {
		e.last[subj] = seq
	}
}

func (e *Engine) forceLast(subj string, seq uint64) {
	e.lastMu.Lock()
	defer e.lastMu.Unlock()
	if len(e.last) >= lastCacheMax {
		clear(e.last)
	}
	e.last[subj] = seq
}

// Append implements engine.Engine. Each event is one message published
// with a compare-and-set on its subject's last sequence; the topics of a
// call are published in parallel, the events of one topic in order.
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
	if err := e.verifyEpoch(ctx); err != nil {
		return nil, failed(ctx, err)
	}
	order, idx := engine.ByTopic(events)
	pos := make([]engine.Position, len(events))
	now := e.opt.Now()
	if len(order) == 1 {
		if err := e.appendTopic(ctx, now, events, idx[order[0]], pos); err != nil {
			return nil, err
		}
		return pos, nil
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	sem := make(chan struct{}, appendParallel)
	for i, tp := range order {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = e.appendTopic(ctx, now, events, idx[tp], pos)
		})
	}
	wg.Wait()
	failedTopics := map[string]error{}
	for i, err := range errs {
		if err != nil {
			failedTopics[order[i]] = err
		}
	}
	switch {
	case len(failedTopics) == 0:
		return pos, nil
	case len(failedTopics) == len(order):
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errs[0]
	}
	for tp := range failedTopics {
		for _, i := range idx[tp] {
			pos[i] = engine.Position{}
		}
	}
	return pos, &engine.AppendError{Topics: failedTopics}
}

// pubAck is JetStream's answer to a publish.
type pubAck struct {
	Stream    string    `json:"stream"`
	Seq       uint64    `json:"seq"`
	Duplicate bool      `json:"duplicate"`
	Error     *apiError `json:"error"`
}

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (a *apiError) Error() string {
	return fmt.Sprintf("%s (%d, code %d)", a.Description, a.ErrCode, a.Code)
}

// appendTopic publishes the events at idx, all of one topic, in order,
// holding the topic's stripe so that this node has one in flight per topic.
func (e *Engine) appendTopic(ctx context.Context, now time.Time, events []engine.Event, idx []int, pos []engine.Position) error {
	subj := e.subject(events[idx[0]].Topic)
	l := e.stripe(subj)
	l.Lock()
	defer l.Unlock()
	last := e.cachedLast(subj)
	stamp := strconv.FormatInt(now.UnixNano(), 10)
	for _, i := range idx {
		ev := events[i]
		var msgID string
		if ev.ID != "" {
			sum := sha256.Sum256([]byte(ev.ID))
			msgID = strings.ReplaceAll(events[i].Topic, ".", "%") + " " + base64.RawURLEncoding.EncodeToString(sum[:18])
		}
		retried, timeouts := false, 0
		for attempt := 0; ; attempt++ {
			if attempt > casRetries {
				return fmt.Errorf("nats engine: %w: %q kept changing under %d compare-and-set attempts", engine.ErrUnavailable, ev.Topic, casRetries)
			}
			if attempt >= 2 {
				// Other nodes keep winning: back off a random while, so that
				// contending nodes spread out.
				d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(100*time.Microsecond)))
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			high := e.highSeq.Load() // acknowledged before this publish: below it in this stream
			ack, err := e.publish(ctx, subj, &ev, last, stamp, msgID)
			if errors.Is(err, nats.ErrNoResponders) && !retried {
				// No stream listens on the subject: it was deleted. Create it
				// again (a new epoch) and retry once.
				retried = true
				if _, err := e.checkStream(ctx, false); err != nil {
					return failed(ctx, err)
				}
				last = 0
				continue
			}
			if err != nil {
				e.forceLast(subj, 0) // unknown outcome: ask the server next time
				if msgID != "" && timeouts < 2 && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
					// The message may have been stored: its ID makes the
					// retry return its position instead of a second copy.
					timeouts++
					continue
				}
				return failed(ctx, err)
			}
			if ack.Error != nil {
				if ack.Error.ErrCode == errWrongLastSeq {
					e.conflicts.Add(1)
					actual, ok := wrongLastSeq(ack.Error.Description)
					if !ok {
						return fmt.Errorf("nats engine: %w: %v", engine.ErrUnavailable, ack.Error)
					}
					if actual < last {
						// The subject went back: the stream may have been
						// created again behind the engine's back.
						if _, err := e.checkStream(ctx, false); err != nil {
							return failed(ctx, err)
						}
					}
					last = actual
					continue
				}
				return fmt.Errorf("nats engine: %w: %v", engine.ErrUnavailable, ack.Error)
			}
			if !ack.Duplicate && ack.Seq <= high {
				// The stream's sequence went back: it was created again (by
				// another node, after the server lost its store) and this
				// engine has not noticed yet. A compare-and-set on a subject
				// without messages passes in the new stream as it would have
				// in the old: find the new epoch before answering with it.
				if _, err := e.checkStream(ctx, false); err != nil {
					return failed(ctx, err)
				}
			}
			pos[i] = engine.Position{Epoch: e.curEpoch(), Offset: ack.Seq}
			if !ack.Duplicate {
				for h := e.highSeq.Load(); ack.Seq > h && !e.highSeq.CompareAndSwap(h, ack.Seq); h = e.highSeq.Load() {
				}
				last = ack.Seq
				e.setLast(subj, ack.Seq)
			}
			break
		}
	}
	return nil
}

// wrongLastSeq reads the sequence the server reports in "wrong last
// sequence: N".
func wrongLastSeq(desc string) (uint64, bool) {
	i := strings.LastIndexByte(desc, ':')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(desc[i+1:]), 10, 64)
	return n, err == nil
}

func (e *Engine) publish(ctx context.Context, subj string, ev *engine.Event, last uint64, stamp, msgID string) (*pubAck, error) {
	m := nats.NewMsg(subj)
	m.Data = ev.Data
	lastS := strconv.FormatUint(last, 10)
	if plainHeader(ev.Type) {
		m.Header[hdrType] = []string{ev.Type}
	} else { // a header value cannot carry it as it is
		m.Header[hdrTypeB64] = []string{base64.StdEncoding.EncodeToString([]byte(ev.Type))}
	}
	m.Header[hdrPrev] = []string{lastS}
	m.Header[hdrTime] = []string{stamp}
	m.Header[hdrExpectSubSeq] = []string{lastS}
	if msgID != "" {
		m.Header[hdrMsgID] = []string{msgID}
	}
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	resp, err := e.nc.RequestMsgWithContext(rctx, m)
	if err != nil {
		return nil, err
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return nil, fmt.Errorf("undecodable publish acknowledgement: %w", err)
	}
	return &ack, nil
}

// plainHeader reports whether v goes through a header value unchanged:
// printable ASCII, no space at either end.
func plainHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return v == "" || (v[0] != ' ' && v[len(v)-1] != ' ')
}

// stored is one message read back by a direct get.
type stored struct {
	subj string // set by fetch only
	seq  uint64
	prev uint64
	at   int64 // Herald-Time, unix nanoseconds
	typ  string
	data []byte
}

var errNotFound = errors.New("no message")

// get reads one message by direct get: the first on subj at or after seq,
// or with last set, subj's last message.
func (e *Engine) get(ctx context.Context, subj string, seq uint64, last bool) (stored, error) {
	var req []byte
	if last {
		req = fmt.Appendf(nil, `{"last_by_subj":%q}`, subj)
	} else {
		req = fmt.Appendf(nil, `{"seq":%d,"next_by_subj":%q}`, seq, subj)
	}
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	resp, err := e.nc.RequestWithContext(rctx, e.directGet, req)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			// No stream: create it again (a new epoch) and report nothing.
			if _, cerr := e.checkStream(ctx, false); cerr != nil {
				return stored{}, cerr
			}
			return stored{}, errNotFound
		}
		return stored{}, err
	}
	if st := resp.Header.Get(hdrStatus); st != "" {
		if st == "404" {
			return stored{}, errNotFound
		}
		return stored{}, fmt.Errorf("direct get: status %s %s", st, resp.Header.Get("Description"))
	}
	return decodeStored(resp.Header, resp.Data)
}

func decodeStored(h nats.Header, data []byte) (stored, error) {
	seq, err := strconv.ParseUint(h.Get(hdrSequence), 10, 64)
	if err != nil || seq == 0 {
		return stored{}, fmt.Errorf("message without a sequence")
	}
	s := stored{seq: seq, typ: h.Get(hdrType), data: data}
	if v := h.Get(hdrTypeB64); v != "" {
		t, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return stored{}, fmt.Errorf("bad %s %q", hdrTypeB64, v)
		}
		s.typ = string(t)
	}
	if v := h.Get(hdrPrev); v != "" {
		if s.prev, err = strconv.ParseUint(v, 10, 64); err != nil {
			return stored{}, fmt.Errorf("bad %s %q", hdrPrev, v)
		}
	}
	if v := h.Get(hdrTime); v != "" {
		if s.at, err = strconv.ParseInt(v, 10, 64); err != nil {
			return stored{}, fmt.Errorf("bad %s %q", hdrTime, v)
		}
	}
	return s, nil
}

// expired reports whether a message is hidden by MaxAge.
func (e *Engine) expired(s stored, now time.Time) bool {
	return e.opt.MaxAge > 0 && s.at < now.Add(-e.opt.MaxAge).UnixNano()
}

func (s stored) event(topic, epoch string) engine.Event {
	return engine.Event{
		Topic: topic,
		Type:  s.typ,
		Data:  s.data,
		Pos:   engine.Position{Epoch: epoch, Offset: s.seq},
		Prev:  s.prev,
		Time:  time.Unix(0, s.at),
	}
}

// Read implements engine.Engine with direct gets, one message each.
func (e *Engine) Read(ctx context.Context, tp string, after engine.Position, limit int) ([]engine.Event, error) {
	if err := engine.ValidateTopic(tp); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("nats engine: Read limit %d, want a positive one", limit)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := e.verifyEpoch(ctx); err != nil {
		return nil, failed(ctx, err)
	}
	subj := e.subject(tp)
	epoch := e.curEpoch()
	now := e.opt.Now()
	zero := after == engine.Position{}
	foreign := !zero && after.Epoch != epoch
	from := after.Offset + 1
	if zero || foreign {
		from = 1
	}
	// The first visible message at or after from.
	var first stored
	var hidden uint64 // the last of the messages after the cursor, all expired so far
	for seq := from; ; {
		s, err := e.get(ctx, subj, seq, false)
		if errors.Is(err, errNotFound) {
			if e.curEpoch() != epoch {
				// The get found the stream gone and created it again: read
				// in the new epoch.
				return e.Read(ctx, tp, after, limit)
			}
			if !zero && (hidden > 0 || foreign) {
				// Nothing of the topic is retained after the cursor: resume
				// after the last expired message (none: the epoch's start),
				// not at a head read now, which may hold an event appended
				// since the get.
				return nil, &engine.GapError{Topic: tp, Resume: engine.Position{Epoch: epoch, Offset: hidden}}
			}
			return nil, nil
		}
		if err != nil {
			return nil, failed(ctx, err)
		}
		if e.expired(s, now) {
			hidden = s.seq
			seq = s.seq + 1
			continue
		}
		first = s
		break
	}
	if foreign || (!zero && first.prev > after.Offset) {
		return nil, &engine.GapError{Topic: tp, Resume: engine.Position{Epoch: epoch, Offset: first.prev}}
	}
	out := []engine.Event{first.event(tp, epoch)}
	for len(out) < limit {
		if len(out) > directGets && limit-len(out) > directGets {
			// A long replay: one consumer fetch instead of a round trip per event.
			more, err := e.fetch(ctx, subj, out[len(out)-1].Pos.Offset+1, limit-len(out), false)
			if err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			for _, s := range more {
				out = append(out, s.event(tp, epoch))
			}
			break
		}
		s, err := e.get(ctx, subj, out[len(out)-1].Pos.Offset+1, false)
		if errors.Is(err, errNotFound) {
			break
		}
		if err != nil {
			if len(out) > 0 && ctx.Err() == nil {
				break // a short page is no end: the caller reads on
			}
			return nil, failed(ctx, err)
		}
		out = append(out, s.event(tp, epoch))
	}
	return out, nil
}

// directGets is how many events Read gets one by one before it turns to a
// consumer for the rest of a page. A variable for the benchmarks.
var directGets = 4

// fetch reads up to n messages of subj from sequence from on, through an
// ephemeral pull consumer in memory that is deleted afterwards (and by the
// server after consumerIdle, should the delete be lost). What it returns
// is a run of the subject's messages from the first at or after from; it
// may be short, and is empty on an error.
func (e *Engine) fetch(ctx context.Context, subj string, from uint64, n int, headersOnly bool) ([]stored, error) {
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	inbox := e.nc.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	req := fmt.Appendf(nil, `{"stream_name":%q,"config":{"deliver_policy":"by_start_sequence","opt_start_seq":%d,"ack_policy":"none","replay_policy":"instant","filter_subject":%q,"mem_storage":true,"num_replicas":1,"inactive_threshold":%d,"headers_only":%t}}`,
		e.opt.Stream, from, subj, consumerIdle.Nanoseconds(), headersOnly)
	resp, err := e.nc.RequestWithContext(rctx, "$JS.API.CONSUMER.CREATE."+e.opt.Stream, req)
	if err != nil {
		return nil, err
	}
	var created struct {
		Name  string    `json:"name"`
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &created); err != nil {
		return nil, err
	}
	if created.Error != nil {
		return nil, created.Error
	}
	defer e.nc.Publish("$JS.API.CONSUMER.DELETE."+e.opt.Stream+"."+created.Name, nil)
	next := fmt.Appendf(nil, `{"batch":%d,"no_wait":true}`, n)
	if err := e.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+e.opt.Stream+"."+created.Name, inbox, next); err != nil {
		return nil, err
	}
	var out []stored
	for len(out) < n {
		m, err := sub.NextMsgWithContext(rctx)
		if err != nil {
			return out, err
		}
		if m.Header.Get(hdrStatus) != "" { // 404: no more messages, 408: the request expired
			break
		}
		seq, ok := ackStreamSeq(m.Reply)
		if !ok {
			return out, fmt.Errorf("consumer message without a stream sequence (reply %q)", m.Reply)
		}
		m.Header[hdrSequence] = []string{strconv.FormatUint(seq, 10)}
		s, err := decodeStored(m.Header, m.Data)
		if err != nil {
			return out, err
		}
		s.subj = m.Subject
		out = append(out, s)
	}
	return out, nil
}

// consumerIdle is the inactive threshold of Read's consumers.
const consumerIdle = 30 * time.Second

// ackStreamSeq reads the stream sequence from a consumer message's reply
// subject: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>,
// or with a domain and account hash after $JS.ACK.
func ackStreamSeq(reply string) (uint64, bool) {
	tok := strings.Split(reply, ".")
	var i int
	switch {
	case len(tok) == 9:
		i = 5
	case len(tok) >= 11:
		i = 7
	default:
		return 0, false
	}
	seq, err := strconv.ParseUint(tok[i], 10, 64)
	return seq, err == nil && tok[0] == "$JS" && tok[1] == "ACK"
}

// head is the last sequence of subj, 0 when it has no message.
func (e *Engine) head(ctx context.Context, subj string) (uint64, error) {
	s, err := e.get(ctx, subj, 0, true)
	if errors.Is(err, errNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return s.seq, nil
}

// Head implements engine.Engine with a direct get of the subject's last
// message.
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
	if err := e.verifyEpoch(ctx); err != nil {
		return engine.Position{}, failed(ctx, err)
	}
	subj := e.subject(tp)
	h, err := e.head(ctx, subj)
	if err != nil {
		return engine.Position{}, failed(ctx, err)
	}
	if h > 0 {
		e.setLast(subj, h)
	}
	return engine.Position{Epoch: e.curEpoch(), Offset: h}, nil
}

// Close implements engine.Engine: calls in flight finish, then the
// connection closes and no callback runs after Close returns.
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
		e.nc.Close()
		close(e.done)
	})
	<-e.done
	return nil
}

// CanWrite implements engine.WriteChecker: appends need the connection up.
func (e *Engine) CanWrite() error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.inflight.Done()
	if st := e.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats engine: %w: connection %s", engine.ErrUnavailable, strings.ToLower(st.String()))
	}
	return nil
}

// Metrics implements engine.Metrics.
func (e *Engine) Metrics() []engine.Counter {
	return []engine.Counter{
		{Name: "disconnects", Help: "Times the connection to NATS broke.", Value: e.disconnects.Load()},
		{Name: "reconnects", Help: "Times the connection to NATS was made again; every subscribed topic is then re-read.", Value: e.reconnects.Load()},
		{Name: "lost_topics", Help: "Times a topic's subscribers were told to re-read history (reconnect, slow consumer, leader change, sweep).", Value: e.lostTopics.Load()},
		{Name: "holes", Help: "Live events whose previous event of the topic was not delivered before them.", Value: e.holes.Load()},
		{Name: "slow_consumers", Help: "Live messages dropped by the client because the dispatcher fell behind.", Value: e.slowConsumers.Load()},
		{Name: "leader_changes", Help: "Stream leader elections seen.", Value: e.leaderChanges.Load()},
		{Name: "sweeps", Help: "Sweeps of subscribed topics' heads against what was delivered.", Value: e.sweeps.Load()},
		{Name: "sweep_behind_topics", Help: "Topics a sweep found behind their head.", Value: e.sweepBehind.Load()},
		{Name: "cas_conflicts", Help: "Appends retried because the topic's last sequence had moved.", Value: e.conflicts.Load()},
		{Name: "epoch_changes", Help: "Times the stream was found created again (a new epoch).", Value: e.epochChanges.Load()},
		{Name: "age_purged_topics", Help: "Topics whose expired events an age sweep removed.", Value: e.agePurges.Load()},
	}
}

// topic is one subscribed topic's local state.
type topic struct {
	name  string
	nsub  *nats.Subscription
	ready chan struct{} // closed once subscribed and the head read
	err   error         // why the subscription failed, once ready

	mu        sync.Mutex // held while delivering
	subs      []*sub
	epoch     string
	delivered uint64
	lost      bool      // tell the subscribers at the next sweeper round
	held      []heldMsg // messages waiting for their predecessor, by sequence
}

type sub struct {
	fn   func(engine.Event)
	lost func()
}

// Subscribe implements engine.Engine: one core subscription per topic to
// the stream's republished messages, confirmed by a flush.
func (e *Engine) Subscribe(tp string, fn func(engine.Event), lost func()) (func(), error) {
	if err := engine.ValidateTopic(tp); err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	sb := &sub{fn: fn, lost: lost}
	e.subMu.Lock()
	t := e.topics[tp]
	isNew := t == nil
	if isNew {
		t = &topic{name: tp, ready: make(chan struct{})}
		e.topics[tp] = t
	}
	t.mu.Lock()
	t.subs = append(slices.Clip(t.subs), sb)
	t.mu.Unlock()
	e.subMu.Unlock()
	cancel := sync.OnceFunc(func() { e.cancel(t, sb) })
	if isNew {
		t.err = e.activate(t)
		close(t.ready)
	}
	select {
	case <-t.ready:
	case <-e.stopping:
		cancel()
		return nil, engine.ErrClosed
	}
	if t.err != nil {
		cancel()
		return nil, t.err
	}
	return cancel, nil
}

// activate subscribes t's live subject and reads its head.
func (e *Engine) activate(t *topic) error {
	ctx, cancel := context.WithTimeout(context.Background(), SubscribeTimeout)
	defer cancel()
	go func() { // the flush ends early when Close starts
		select {
		case <-e.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	ns, err := e.nc.ChanSubscribe(e.live(t.name), e.msgs)
	if err != nil {
		return fmt.Errorf("nats engine: %w: subscribing to %q: %w", engine.ErrUnavailable, t.name, err)
	}
	ns.SetPendingLimits(-1, -1)
	e.subMu.Lock()
	t.nsub = ns
	e.bySub[ns] = t
	e.subMu.Unlock()
	if err := e.nc.FlushWithContext(ctx); err != nil {
		if e.isClosing() {
			return engine.ErrClosed
		}
		return fmt.Errorf("nats engine: %w: subscription to %q not confirmed: %w", engine.ErrUnavailable, t.name, err)
	}
	subj := e.subject(t.name)
	h, err := e.head(ctx, subj)
	if err != nil {
		if e.isClosing() {
			return engine.ErrClosed
		}
		return fmt.Errorf("nats engine: %w: head of %q: %w", engine.ErrUnavailable, t.name, err)
	}
	t.mu.Lock()
	if t.epoch == "" { // nothing delivered yet: what is at or before the head is history
		t.epoch, t.delivered = e.curEpoch(), h
	}
	t.mu.Unlock()
	e.scheduleVerify(t)
	return nil
}

func (e *Engine) isClosing() bool {
	select {
	case <-e.stopping:
		return true
	default:
		return false
	}
}

// cancel removes a subscriber; the last one unsubscribes the topic.
func (e *Engine) cancel(t *topic, sb *sub) {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	t.mu.Lock()
	if i := slices.Index(t.subs, sb); i >= 0 {
		t.subs = slices.Delete(slices.Clone(t.subs), i, i+1)
	}
	empty := len(t.subs) == 0
	t.mu.Unlock()
	if !empty || e.topics[t.name] != t {
		return
	}
	delete(e.topics, t.name)
	if t.nsub != nil {
		delete(e.bySub, t.nsub)
		t.nsub.Unsubscribe() // fails harmlessly once the connection is closed
	}
}

// asyncError is the client's error handler: a slow consumer lost messages
// of a subscription, whose topic must be re-read.
func (e *Engine) asyncError(_ *nats.Conn, s *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrSlowConsumer) {
		e.log.Warn("nats engine: asynchronous error", "err", err)
		return
	}
	e.slowConsumers.Add(1)
	e.subMu.Lock()
	t := e.bySub[s]
	e.subMu.Unlock()
	if t == nil {
		if s != nil && strings.HasPrefix(s.Subject, "$JS.EVENT.") {
			e.signalAll()
		}
		return
	}
	t.mu.Lock()
	t.lost = true
	t.mu.Unlock()
	e.signal()
}

func (e *Engine) signal() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// signalAll makes the sweeper tell every subscribed topic to re-read.
func (e *Engine) signalAll() {
	e.lostAll.Store(true)
	e.signal()
}

// dispatch delivers the live messages until ctx ends.
func (e *Engine) dispatch(ctx context.Context) {
	held := map[*topic]bool{} // topics holding messages that came before their predecessor
	timer := time.NewTimer(holdTime)
	timer.Stop()
	defer timer.Stop()
	armed := false
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-e.msgs:
			if t := e.message(m); t != nil && !held[t] {
				held[t] = true
				if !armed {
					timer.Reset(holdTime)
					armed = true
				}
			}
		case <-timer.C:
			armed = false
			now := time.Now()
			for t := range held {
				if e.release(t, now) {
					delete(held, t)
				}
			}
			if len(held) > 0 {
				timer.Reset(holdTime / 4)
				armed = true
			}
		}
	}
}

// message handles one message of the shared channel. It returns the topic
// when it holds the message back: messages of one subject published
// through different connections may be republished out of order, so a
// message whose Prev was not delivered yet waits up to holdTime for it.
func (e *Engine) message(m *nats.Msg) *topic {
	if !strings.HasPrefix(m.Subject, e.livePrefix) {
		if strings.HasPrefix(m.Subject, "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.") {
			e.leaderChanges.Add(1)
			e.signalAll()
		}
		return nil
	}
	tp := unmap(m.Subject[len(e.livePrefix):])
	e.subMu.Lock()
	t := e.topics[tp]
	e.subMu.Unlock()
	if t == nil {
		return nil
	}
	s, err := decodeStored(m.Header, m.Data)
	if err != nil {
		e.log.Error("nats engine: undecodable live message", "subject", m.Subject, "err", err)
		return nil
	}
	epoch := e.curEpoch()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.epoch != epoch { // the first message, or a new epoch: start here
		t.epoch, t.delivered, t.held = epoch, s.prev, nil
	}
	if s.seq <= t.delivered {
		return nil
	}
	if s.prev > t.delivered {
		i, found := slices.BinarySearchFunc(t.held, s.seq, func(h heldMsg, seq uint64) int { return cmp.Compare(h.seq, seq) })
		if !found {
			t.held = slices.Insert(t.held, i, heldMsg{stored: s, at: time.Now()})
		}
		if len(t.held) > maxHeld {
			e.flushHeld(t)
			return nil
		}
		return t
	}
	e.deliver(t, s)
	for len(t.held) > 0 && t.held[0].prev <= t.delivered {
		h := t.held[0]
		t.held = t.held[1:]
		if h.seq > t.delivered {
			e.deliver(t, h.stored)
		}
	}
	if len(t.held) > 0 {
		return t
	}
	t.held = nil
	return nil
}

// holdTime is how long a message waits for its predecessor; maxHeld bounds
// the messages held per topic.
const (
	holdTime = 100 * time.Millisecond
	maxHeld  = 1024
)

type heldMsg struct {
	stored
	at time.Time
}

// release delivers t's held messages once the oldest has waited holdTime,
// leaving the hole to the subscribers (they fill it from Prev). It reports
// whether t holds nothing more.
func (e *Engine) release(t *topic, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.held) > 0 && now.Sub(t.held[0].at) >= holdTime {
		e.flushHeld(t)
	}
	return len(t.held) == 0
}

// flushHeld delivers every held message in order; t.mu is held.
func (e *Engine) flushHeld(t *topic) {
	for _, h := range t.held {
		if h.seq > t.delivered {
			if h.prev > t.delivered {
				e.holes.Add(1)
			}
			e.deliver(t, h.stored)
		}
	}
	t.held = nil
}

// deliver hands a message to t's subscribers; t.mu is held.
func (e *Engine) deliver(t *topic, s stored) {
	t.delivered = s.seq
	ev := s.event(t.name, t.epoch)
	for _, sb := range t.subs {
		sb.fn(ev)
	}
}

// sweeper runs the recovery and the age sweeps until ctx ends.
func (e *Engine) sweeper(ctx context.Context) {
	tick := time.NewTicker(e.opt.SweepInterval)
	defer tick.Stop()
	verify := time.NewTimer(time.Hour)
	defer verify.Stop()
	for {
		verify.Reset(e.nextVerify())
		full := false
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-verify.C:
		case <-tick.C:
			full = true
		}
		if e.lostAll.Swap(false) {
			// After a reconnect, the stream may be another one (a server
			// restarted with an empty store).
			if _, err := e.checkStream(ctx, false); err != nil && ctx.Err() == nil {
				e.log.Warn("nats engine: checking the stream", "err", err)
			}
			e.tellAll()
		}
		e.tellMarked()
		if ts := e.dueVerify(); len(ts) > 0 {
			e.check(ctx, ts)
		}
		if full {
			if _, err := e.checkStream(ctx, false); err != nil && ctx.Err() == nil {
				e.log.Warn("nats engine: checking the stream", "err", err)
			}
			e.sweep(ctx)
			if e.opt.MaxAge > 0 {
				if err := e.sweepAge(ctx); err != nil && ctx.Err() == nil {
					e.log.Warn("nats engine: age sweep", "err", err)
				}
			}
		}
	}
}

// verifyDelay is how long after a topic's first Subscribe its head is
// compared with what was delivered once: in a NATS cluster, interest in the
// live subject reaches the other servers after the flush that confirmed it
// on this one, so an event republished elsewhere meanwhile can be missed.
const verifyDelay = 2 * time.Second

type verifyItem struct {
	t  *topic
	at time.Time
}

// scheduleVerify queues t's one check after verifyDelay.
func (e *Engine) scheduleVerify(t *topic) {
	e.verifyMu.Lock()
	e.verify = append(e.verify, verifyItem{t: t, at: time.Now().Add(verifyDelay)})
	e.verifyMu.Unlock()
	e.signal()
}

// nextVerify is how long until the first queued check is due.
func (e *Engine) nextVerify() time.Duration {
	e.verifyMu.Lock()
	defer e.verifyMu.Unlock()
	if len(e.verify) == 0 {
		return time.Hour
	}
	return max(time.Until(e.verify[0].at), time.Millisecond)
}

// dueVerify takes the checks that are due.
func (e *Engine) dueVerify() []*topic {
	e.verifyMu.Lock()
	defer e.verifyMu.Unlock()
	now := time.Now()
	i := 0
	for i < len(e.verify) && !e.verify[i].at.After(now) {
		i++
	}
	out := make([]*topic, i)
	for j := range i {
		out[j] = e.verify[j].t
	}
	e.verify = slices.Delete(e.verify, 0, i)
	return out
}

func (e *Engine) subscribed() []*topic {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	ts := make([]*topic, 0, len(e.topics))
	for _, t := range e.topics {
		ts = append(ts, t)
	}
	return ts
}

// tellLost calls the subscribers' lost; t.mu is held.
func (e *Engine) tellLost(t *topic) {
	t.lost = false
	e.lostTopics.Add(1)
	for _, sb := range t.subs {
		if sb.lost != nil {
			sb.lost()
		}
	}
}

// tellAll tells every subscribed topic to re-read, starting a new epoch's
// topics over.
func (e *Engine) tellAll() {
	epoch := e.curEpoch()
	for _, t := range e.subscribed() {
		t.mu.Lock()
		if t.epoch != epoch {
			t.epoch, t.delivered, t.held = epoch, 0, nil
		}
		e.tellLost(t)
		t.mu.Unlock()
	}
}

func (e *Engine) tellMarked() {
	for _, t := range e.subscribed() {
		t.mu.Lock()
		if t.lost {
			e.tellLost(t)
		}
		t.mu.Unlock()
	}
}

// sweep compares every subscribed topic's head with what was delivered:
// a quiet topic whose last event's fan-out was lost is found here.
func (e *Engine) sweep(ctx context.Context) {
	e.sweeps.Add(1)
	e.check(ctx, e.subscribed())
}

// sweepGrace is how long a topic found behind its head is given to catch
// up before its subscribers are told: its events may be on their way.
const sweepGrace = 3 * holdTime

// check compares the topics' heads with what was delivered, and tells the
// subscribers of those still behind after sweepGrace; their head is then
// taken as delivered, since the re-read covers it.
func (e *Engine) check(ctx context.Context, ts []*topic) {
	type behind struct {
		t     *topic
		head  uint64
		epoch string
	}
	var found []behind
	for _, t := range ts {
		if ctx.Err() != nil {
			return
		}
		select {
		case <-t.ready:
		default:
			continue
		}
		e.subMu.Lock()
		current := e.topics[t.name] == t
		e.subMu.Unlock()
		if !current {
			continue
		}
		h, err := e.head(ctx, e.subject(t.name))
		if err != nil {
			continue
		}
		epoch := e.curEpoch()
		t.mu.Lock()
		if t.epoch != epoch || h > t.delivered {
			found = append(found, behind{t, h, epoch})
		}
		t.mu.Unlock()
	}
	if len(found) == 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(sweepGrace):
	}
	epoch := e.curEpoch()
	for _, b := range found {
		if b.epoch != epoch {
			continue // the epoch changed meanwhile: every topic was told
		}
		b.t.mu.Lock()
		if b.t.epoch != b.epoch || b.head > b.t.delivered {
			e.sweepBehind.Add(1)
			b.t.epoch, b.t.delivered, b.t.held = b.epoch, b.head, nil
			e.tellLost(b.t)
		}
		b.t.mu.Unlock()
	}
}

// sweepAge removes expired messages, keeping each subject's last one: it
// walks the stream from where the last sweep stopped up to the first
// message that has not expired, and purges the subjects it met up to
// there.
func (e *Engine) sweepAge(ctx context.Context) error {
	e.ageMu.Lock()
	defer e.ageMu.Unlock()
	if epoch := e.curEpoch(); e.sweptEpoch != epoch { // a new stream: from its start
		e.swept, e.sweptEpoch = 0, epoch
	}
	cutoff := e.opt.Now().Add(-e.opt.MaxAge).UnixNano()
	subjects := map[string]bool{}
	seq := max(e.swept, 1)
	stop := seq
walk:
	for walked := 0; walked < ageSweepBatch; {
		batch, err := e.fetch(ctx, e.subjPrefix+">", seq, ageSweepFetch, true)
		if err != nil && len(batch) == 0 {
			return err
		}
		for _, m := range batch {
			if m.at >= cutoff {
				stop = m.seq
				break walk
			}
			subjects[m.subj] = true
			seq = m.seq + 1
			stop = seq
		}
		walked += len(batch)
		if len(batch) < ageSweepFetch {
			break // the end of the stream
		}
	}
	for subj := range subjects {
		last, err := e.head(ctx, subj)
		if err != nil {
			return err
		}
		upTo := min(stop, last) // purge below it: the subject's last message stays
		if upTo <= 1 {
			continue
		}
		if err := e.purge(ctx, subj, upTo); err != nil {
			return err
		}
		e.agePurges.Add(1)
	}
	e.swept = stop
	return nil
}

// purge removes subj's messages below sequence upTo.
func (e *Engine) purge(ctx context.Context, subj string, upTo uint64) error {
	rctx, cancel := reqCtx(ctx)
	defer cancel()
	resp, err := e.nc.RequestWithContext(rctx, "$JS.API.STREAM.PURGE."+e.opt.Stream, fmt.Appendf(nil, `{"filter":%q,"seq":%d}`, subj, upTo))
	if err != nil {
		return err
	}
	var r struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}
