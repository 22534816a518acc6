// Package local is Herald's default, single-node engine: one durable log per topic
// in a Pebble store under a data directory, fan-out in process.
//
// # Design
//
// One committer goroutine owned by the Engine writes every append. Append sends
// its events on a channel and waits; the committer takes everything pending (up
// to Options.MaxBatch events), writes it in one Pebble batch together with the
// per-topic metadata and the count trimming, commits it with one WAL fsync (group
// commit: concurrent publishers share fsyncs), answers the callers, then hands
// the committed events to the delivery goroutine, which calls the subscribers of
// each topic in position order. Appends are durable before Append returns
// (unless Options.SyncInterval trades that away), and an append never waits
// for fan-out: with thousands of local subscribers, a publisher would
// otherwise wait for every one of them to be handed the event, and compete
// with their writers for the CPU meanwhile.
//
// The choice of Pebble over bbolt, with the measurements, is recorded in
// docs/decisions/0001-local-engine-store.md.
//
// # Keys
//
//	"a" bucket(BE64) topic        empty: topic was appended to in that minute (see agetrim.go)
//	"s" name                      store metadata: "sepoch", "sformat", "sageindex"
//	"m" topic                     topic metadata: head offset, oldest retained offset (2 × 8 bytes, big-endian)
//	"l" topic 0x00 offset(BE64)   one event: format byte, unix nanos (BE64), uvarint type length, type, data
//	"i" topic 0x00 id             an idempotency key: offset (BE64), unix nanos of the append (BE64)
//	"x" nanos(BE64) topic 0x00 id empty: the idempotency keys in expiry order (see idempotency.go)
//
// Topics never contain 0x00 (engine.ValidateTopic), so a topic's events are the
// contiguous range ["l" topic 0x00, "l" topic 0x01) and Read is a range scan.
// The topic metadata is written in the same batch as the events, so Head is right
// after a crash. It is cached in memory while a topic is in use, and dropped
// once it is idle (see evict.go).
//
// # Retention
//
// By count (Options.MaxLen): in the same batch as the append that exceeds it. By
// age (Options.MaxAge): a background sweeper owned by the Engine (stopped by
// Close) reads the "a" index of the minutes that expired every SweepInterval
// and asks the committer to drop the expired events of the topics it names,
// so all writes go through one goroutine. Between sweeps, events
// older than MaxAge may still be read. The same sweeper drops expired
// idempotency keys.
//
// # Epoch
//
// A random 8-byte id (13 base32 characters) created with the store and kept in
// it: a wiped data dir gets a new epoch, so cursors from before read a gap.
package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/ratelog"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultMaxLen   = 10_000
	DefaultMaxAge   = 24 * time.Hour
	DefaultMaxBatch = 1024
	// MaxSyncInterval bounds SyncInterval: what a crash may lose, and how
	// long delivery waits.
	MaxSyncInterval = time.Second
	// DefaultReserve is the room kept back for a full disk (see Options.Reserve).
	DefaultReserve = 64 << 20
	// DefaultSpaceCheckInterval is how often a store that refuses writes looks
	// for free space again.
	DefaultSpaceCheckInterval = time.Second
	DefaultTopicIdle          = time.Minute
	DefaultMaxTopics          = 100_000
	// DefaultCacheSize is the store's block cache (see Options.CacheSize).
	DefaultCacheSize = 64 << 20
)

// NoAgeLimit as Options.MaxAge keeps events regardless of age.
const NoAgeLimit time.Duration = -1

// formatVersion is the layout of keys and values; a store with another one is refused.
const formatVersion = "1"

// Options configure a local engine. The zero value is ready to use.
type Options struct {
	// MaxLen is the most events kept per topic; older ones are dropped as newer
	// ones are appended. 0 means DefaultMaxLen.
	MaxLen int
	// MaxAge drops events older than this, checked every SweepInterval.
	// 0 means DefaultMaxAge; NoAgeLimit (negative) disables age trimming.
	MaxAge time.Duration
	// SweepInterval is how often the age sweeper runs. 0 means MaxAge/10,
	// between 1 second and 1 minute.
	SweepInterval time.Duration
	// NoSync commits without fsync: appends survive a process crash but not a
	// machine crash. For tests and benchmarks only.
	NoSync bool
	// SyncInterval, when above 0, answers an append once it is written to
	// the log, before its fsync, and fsyncs the log at most this long after
	// the first write it has not covered yet. Events still reach subscribers,
	// Read and Head only after the fsync that covers them, so nothing ever
	// delivered can be lost; but a crash (or a failed fsync) loses the
	// acknowledged events of up to SyncInterval, and a publisher may not read
	// its own event back for that long. 0, the default, fsyncs every group
	// commit before answering it.
	SyncInterval time.Duration
	// Logger receives the engine's and Pebble's messages. Nil means slog.Default().
	Logger *slog.Logger
	// MaxBatch is the most events written by one group commit. 0 means DefaultMaxBatch.
	MaxBatch int
	// Reserve is the room, in bytes, kept in a file in the store's directory
	// and given back to the store when the disk fills up, so that the write
	// that met the full disk still completes and nothing acknowledged is lost.
	// Appends are then refused until the disk has room for the reserve twice
	// over. 0 means DefaultReserve. It should hold a few memtables (4 MiB
	// each): reopening a store writes out what its log holds.
	Reserve int64
	// SpaceCheckInterval is how often a store that refuses writes checks the
	// free space. 0 means DefaultSpaceCheckInterval.
	SpaceCheckInterval time.Duration
	// IdempotencyWindow is how long an Event.ID dedupes appends to its topic,
	// from the first append. 0 means DefaultIdempotencyWindow.
	IdempotencyWindow time.Duration
	// TopicIdle is how long the state of a topic (its head and oldest offsets)
	// stays in memory without being read or written; it is then dropped, after
	// between TopicIdle and 1.5 × TopicIdle, and read back from the store on
	// its next use. 0 means DefaultTopicIdle.
	TopicIdle time.Duration
	// CacheSize is the store's block cache in bytes: the blocks of tables on
	// disk that reads keep in memory, filled as they are read. An append to
	// a topic whose state is not in memory (a user's first notification in a
	// while) reads the topic's metadata through it, and so does every
	// idempotency key's lookup. 0 means DefaultCacheSize.
	CacheSize int64
	// MaxTopics is how many topic states memory holds before states go sooner:
	// above it, states not used for about TopicIdle/2 are dropped too, and
	// the committer looks for them 8 times as often. It is a soft bound: what
	// was used since is kept. 0 means DefaultMaxTopics.
	MaxTopics int
}

// Engine is the local engine. Create it with Open.
type Engine struct {
	dir   string
	opt   Options
	log   *slog.Logger
	lock  *pebble.Lock
	fs    vfs.FS // the store's file system: a full disk releases the reserve
	rsv   *reserve
	epoch string
	now   func() time.Time

	// db is the store. Only the committer replaces it (to reopen the store),
	// holding dbMu for writing; everyone else reads it holding dbMu for
	// reading. It is nil when a reopen could not even open it read-only.
	dbMu sync.RWMutex
	db   *pebble.DB

	// Why appends are refused, when they are. full: the disk filled up and the
	// reserve was spent. broken: the store is read-only or its log failed, and
	// the committer must reopen it before writing. cause describes the latest.
	full   atomic.Bool
	broken atomic.Bool
	cause  atomic.Pointer[string]
	// fullMu orders a full disk (onDiskFull) with the watcher clearing full:
	// fullGen counts the times the disk filled, so the watcher does not clear
	// full over a reserve that was spent again while it wrote it back.
	fullMu               sync.Mutex
	fullGen              uint64
	wake                 chan struct{} // asks the watcher to look at once
	watchStop, watchDone chan struct{}

	// mu guards closed. Everything that sends on reqs or touches db outside the
	// committer holds it for reading, so Close (writer) knows they are done.
	mu     sync.RWMutex
	closed bool

	reqs          chan *request
	committerDone chan struct{}
	syncs         chan *commitJob // applied batches waiting for their fsync, in order
	syncerDone    chan struct{}
	deliveries    chan delivery // committed events, in commit order, for the deliverer
	commitSeq     atomic.Uint64 // number of the last commit handed to delivery
	deliverDone   chan struct{}
	sweepStop     chan struct{}
	sweepDone     chan struct{}
	closeOnce     sync.Once
	closeErr      error

	// The topic states, in shards by the hash of the topic (see evict.go).
	states    [stateShards]stateShard
	stateSeed maphash.Seed

	// Touched by the committer goroutine only: the next shard an eviction
	// step visits, the number of entries of the assigned maps, when a step
	// last ran, and the topics given an age index key in the current group.
	evictNext  int
	nAssigned  int
	lastEvict  time.Time
	grpIndexed map[string]struct{}

	// ageIndexed: every topic with events has an "a" key (see agetrim.go);
	// without it the sweeper scans every topic once and builds the index.
	ageIndexed atomic.Bool

	// logSyncs counts the log's fsyncs as they complete: the tests check with
	// it that an append is answered, or delivered, only after one.
	logSyncs atomic.Uint64

	subMu sync.RWMutex // held for reading while callbacks run
	subs  map[string][]*subscription
}

type topicState struct {
	head   uint64 // offset of the last event; 0 when none was ever appended
	oldest uint64 // offset of the oldest retained event; head+1 when none is retained
}

// stateShard holds the states of the topics whose hash falls in it.
type stateShard struct {
	// topics is the durable state: written by the syncer and loaded by
	// loadState, read by Read and Head, dropped by evict. tick counts the
	// eviction passes over the shard: an entry's used is the tick of its
	// last use.
	mu     sync.Mutex
	topics map[string]cachedState
	tick   uint32

	// assigned is the committer's own view: offsets handed out, possibly not
	// yet durable. Touched by the committer goroutine only.
	assigned map[string]assignedState
}

type cachedState struct {
	topicState
	used uint32 // stateShard.tick at the last use
}

type assignedState struct {
	topicState
	bucket int64 // the age bucket this topic has an "a" key in, 0 when unknown
}

// subscription is one Subscribe. It is delivered commits from number from on:
// the commits queued before it was made are not its "from now on".
type subscription struct {
	fn   func(engine.Event)
	from uint64
}

// delivery is one commit's events, numbered in commit order.
type delivery struct {
	seq    uint64
	events []engine.Event
}

// request is one Append, or one age trim from the sweeper.
type request struct {
	ctx    context.Context
	events []engine.Event
	pos    []engine.Position

	trimTopic  string // age trim: drop events of trimTopic before trimBefore
	trimBefore uint64

	reopen bool // from the watcher: reopen the store for writing
	evict  int  // from the sweeper: eviction steps to run

	// From the sweeper: age index keys to write (with empty values) and to
	// delete, in the batch of trimTopic's trim.
	put, del [][]byte

	expireKeys bool // from the sweeper: drop expired idempotency keys
	expired    int  // how many it dropped

	err  error
	done chan struct{}
}

var _ engine.Engine = (*Engine)(nil)

// Open opens the store in dir, creating dir and the store if needed. dir is
// locked for the life of the Engine: a second Open of the same dir, in this
// process or another, fails until Close.
func Open(dir string, opt Options) (*Engine, error) { return open(dir, opt, time.Now) }

func open(dir string, opt Options, now func() time.Time) (*Engine, error) {
	if opt.MaxLen < 0 {
		return nil, fmt.Errorf("local: MaxLen %d is negative", opt.MaxLen)
	}
	if opt.MaxLen == 0 {
		opt.MaxLen = DefaultMaxLen
	}
	if opt.Reserve < 0 {
		return nil, fmt.Errorf("local: Reserve %d is negative", opt.Reserve)
	}
	if opt.SyncInterval < 0 || opt.SyncInterval > MaxSyncInterval {
		return nil, fmt.Errorf("local: SyncInterval %v: want 0 (fsync before answering) up to %v", opt.SyncInterval, MaxSyncInterval)
	}
	if opt.IdempotencyWindow < 0 {
		return nil, fmt.Errorf("local: IdempotencyWindow %v is negative", opt.IdempotencyWindow)
	}
	if opt.IdempotencyWindow == 0 {
		opt.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if opt.MaxAge == 0 {
		opt.MaxAge = DefaultMaxAge
	}
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = DefaultMaxBatch
	}
	if opt.Reserve == 0 {
		opt.Reserve = DefaultReserve
	}
	if opt.SpaceCheckInterval <= 0 {
		opt.SpaceCheckInterval = DefaultSpaceCheckInterval
	}
	if opt.TopicIdle <= 0 {
		opt.TopicIdle = DefaultTopicIdle
	}
	if opt.MaxTopics <= 0 {
		opt.MaxTopics = DefaultMaxTopics
	}
	if opt.CacheSize <= 0 {
		opt.CacheSize = DefaultCacheSize
	}
	if opt.SweepInterval <= 0 {
		// Without an age limit the sweeper still drops expired idempotency keys.
		every := opt.MaxAge
		if every <= 0 {
			every = opt.IdempotencyWindow
		}
		opt.SweepInterval = min(max(every/10, time.Second), time.Minute)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	log := opt.Logger.With("engine", "local", "dir", dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: create data dir: %w", err)
	}
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return nil, lockError(dir, err)
	}
	removeStaleBackups(dir)
	e := &Engine{
		dir: dir, opt: opt, log: log, lock: lock, now: now,
		watchStop:     make(chan struct{}),
		watchDone:     make(chan struct{}),
		reqs:          make(chan *request, 4*opt.MaxBatch),
		committerDone: make(chan struct{}),
		syncs:         make(chan *commitJob, 2),
		syncerDone:    make(chan struct{}),
		stateSeed:     maphash.MakeSeed(),
		grpIndexed:    map[string]struct{}{},
		deliveries:    make(chan delivery, 64),
		deliverDone:   make(chan struct{}),
		sweepStop:     make(chan struct{}),
		sweepDone:     make(chan struct{}),
		subs:          map[string][]*subscription{},
	}
	for i := range e.states {
		e.states[i].topics = map[string]cachedState{}
		e.states[i].assigned = map[string]assignedState{}
	}
	e.rsv = &reserve{path: filepath.Join(dir, reserveName), size: opt.Reserve}
	e.fs = logWatchFS{
		FS:       vfs.OnDiskFull(vfs.Default, e.onDiskFull),
		onFull:   e.onLogFull,
		onError:  e.onLogError,
		stop:     e.watchStop,
		interval: opt.SpaceCheckInterval,
		syncs:    &e.logSyncs,
	}
	// The reserve is written before the store is opened for writing: on a disk
	// with no room for it, a writable store could not even flush what it
	// replays, so it opens read-only and waits for room.
	writable := true
	if err := e.rsv.ensure(); err != nil {
		if !isNoSpace(err) {
			lock.Close()
			return nil, err
		}
		writable = false
		e.refuse(&e.broken, "out of disk space at start: "+err.Error())
	} else if free, err := diskFree(dir); err == nil && free < uint64(opt.Reserve) {
		// Less room than the reserve: the disk filled while the store was
		// closed. Refuse appends until there is room, as if it filled now.
		e.refuse(&e.full, fmt.Sprintf("out of disk space at start: %d bytes free", free))
	}
	if e.db, err = e.openDB(writable); err != nil {
		lock.Close()
		return nil, err
	}
	if e.epoch, err = e.loadEpoch(writable); err != nil {
		e.db.Close()
		lock.Close()
		return nil, err
	}
	indexed, err := e.get(ageIndexKey)
	if err != nil {
		e.db.Close()
		lock.Close()
		return nil, fmt.Errorf("local: read store metadata in %s: %w", e.dir, err)
	}
	e.ageIndexed.Store(indexed != nil)
	if !writable || e.full.Load() {
		log.Error("the disk is full: serving streams and history, refusing appends until there is room", "reserve_bytes", opt.Reserve)
	}
	go e.committer()
	if opt.SyncInterval > 0 {
		go e.intervalSyncer()
	} else {
		go e.syncer()
	}
	go e.deliverer()
	go e.sweeper()
	go e.watcher()
	log.Debug("opened", "epoch", e.epoch)
	return e, nil
}

// Epoch is the store's epoch, the Epoch of every position it assigns.
func (e *Engine) Epoch() string { return e.epoch }

var epochKey, formatKey = []byte("sepoch"), []byte("sformat")

// loadEpoch reads the store's epoch, creating it (and the format marker) in a
// new, empty store when it may write. A store that holds keys but no epoch is
// not ours.
func (e *Engine) loadEpoch(writable bool) (string, error) {
	format, err := e.get(formatKey)
	if err != nil {
		return "", fmt.Errorf("local: read store format in %s: %w", e.dir, err)
	}
	epoch, err := e.get(epochKey)
	if err != nil {
		return "", fmt.Errorf("local: read epoch in %s: %w", e.dir, err)
	}
	if format != nil || epoch != nil {
		if string(format) != formatVersion {
			return "", fmt.Errorf("local: store in %s has format %q, this herald reads %q", e.dir, format, formatVersion)
		}
		if len(epoch) == 0 || len(epoch) > 64 {
			return "", fmt.Errorf("local: store in %s has an invalid epoch %q", e.dir, epoch)
		}
		return string(epoch), nil
	}
	it, err := e.db.NewIter(nil)
	if err != nil {
		return "", fmt.Errorf("local: scan %s: %w", e.dir, err)
	}
	nonEmpty := it.First()
	if err := it.Close(); err != nil {
		return "", fmt.Errorf("local: scan %s: %w", e.dir, err)
	}
	if nonEmpty {
		return "", fmt.Errorf("local: %s holds a Pebble store that is not a herald log (no epoch)", e.dir)
	}
	if !writable {
		return "", fmt.Errorf("local: no room to create a store in %s: free some space on its disk", e.dir)
	}
	newEpoch := randomEpoch()
	b := e.db.NewBatch()
	b.Set(formatKey, []byte(formatVersion), nil)
	b.Set(epochKey, []byte(newEpoch), nil)
	if e.opt.MaxAge > 0 {
		b.Set(ageIndexKey, nil, nil) // nothing to index yet
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return "", fmt.Errorf("local: create store in %s: %w", e.dir, err)
	}
	e.log.Info("created store", "epoch", newEpoch)
	return newEpoch, nil
}

// randomEpoch is a new store's epoch: 8 random bytes, 13 base32 characters.
func randomEpoch() string {
	var raw [8]byte
	rand.Read(raw[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw[:]))
}

var discard = slog.New(slog.DiscardHandler)

// get returns a copy of key's value, nil when absent.
func (e *Engine) get(key []byte) ([]byte, error) { return dbGet(e.db, key) }

func dbGet(db *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

func metaKey(topic string) []byte { return append([]byte{'m'}, topic...) }

func logPrefix(topic string) []byte {
	k := make([]byte, 0, len(topic)+10)
	k = append(k, 'l')
	k = append(k, topic...)
	return append(k, 0)
}

func logKey(topic string, offset uint64) []byte {
	return binary.BigEndian.AppendUint64(logPrefix(topic), offset)
}

// logEnd is the upper bound (exclusive) of topic's events.
func logEnd(topic string) []byte {
	k := logPrefix(topic)
	k[len(k)-1] = 1
	return k
}

func encodeMeta(st topicState) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), st.head), st.oldest)
}

// state returns topic's durable head and oldest retained offset, loading and
// caching them on first use. A topic that has no events is not cached: anyone may
// ask for any topic name, and the cache must not grow with names never written.
func (e *Engine) state(topic string) (topicState, error) { return e.loadState(topic, false) }

// loadState is state; with keep set it caches a topic that has no events too.
// The committer sets it before writing a topic's first events, so that a reader
// finds the durable state in the cache and never loads the applied but not yet
// synced metadata from the store (the shard's mu orders the two).
func (e *Engine) loadState(topic string, keep bool) (topicState, error) {
	sh := e.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c, ok := sh.topics[topic]; ok {
		if c.used != sh.tick {
			c.used = sh.tick
			sh.topics[topic] = c
		}
		return c.topicState, nil
	}
	v, err := e.get(metaKey(topic))
	if err != nil {
		return topicState{}, fmt.Errorf("%w: local: read metadata of %q: %v", engine.ErrUnavailable, topic, err)
	}
	st := topicState{head: 0, oldest: 1}
	if v == nil && !keep {
		return st, nil
	}
	if v != nil {
		if len(v) != 16 {
			return topicState{}, fmt.Errorf("local: corrupt metadata of topic %q (%d bytes)", topic, len(v))
		}
		st = topicState{head: binary.BigEndian.Uint64(v), oldest: binary.BigEndian.Uint64(v[8:])}
		if st.oldest == 0 || st.oldest > st.head+1 {
			return topicState{}, fmt.Errorf("local: corrupt metadata of topic %q (head %d, oldest %d)", topic, st.head, st.oldest)
		}
	}
	sh.topics[topic] = cachedState{st, sh.tick}
	return st, nil
}

const eventFormat = 1

func encodeEvent(t time.Time, typ string, data []byte) []byte {
	v := make([]byte, 0, 1+8+binary.MaxVarintLen64+len(typ)+len(data))
	v = append(v, eventFormat)
	v = binary.BigEndian.AppendUint64(v, uint64(t.UnixNano()))
	v = binary.AppendUvarint(v, uint64(len(typ)))
	v = append(v, typ...)
	return append(v, data...)
}

// decodeEvent parses a stored event value, copying what it keeps.
func decodeEvent(topic string, pos engine.Position, v []byte) (engine.Event, error) {
	if len(v) < 10 || v[0] != eventFormat {
		return engine.Event{}, fmt.Errorf("local: corrupt event %s of %q: bad header", pos, topic)
	}
	nanos := int64(binary.BigEndian.Uint64(v[1:9]))
	n, w := binary.Uvarint(v[9:])
	if w <= 0 || n > uint64(len(v)-9-w) {
		return engine.Event{}, fmt.Errorf("local: corrupt event %s of %q: bad type length", pos, topic)
	}
	rest := v[9+w:]
	return engine.Event{
		Topic: topic,
		Type:  string(rest[:n]),
		Data:  bytes.Clone(rest[n:]),
		Pos:   pos,
		Prev:  pos.Offset - 1, // dense
		Time:  time.Unix(0, nanos),
	}, nil
}

func eventTime(v []byte) (time.Time, bool) {
	if len(v) < 9 || v[0] != eventFormat {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))), true
}

func validate(topic string) error {
	if err := engine.ValidateTopic(topic); err != nil {
		return fmt.Errorf("local: topic %q: %w", topic, err)
	}
	return nil
}

// Append makes the events durable (fsync, unless NoSync; written to the log
// only, with SyncInterval) and returns their positions.
// The whole call is rejected when one topic is invalid, and refused at once
// while the store refuses writes (CanWrite). A context done before the events
// are written cancels the call; one done while the write waits (for disk
// space) returns an error although the events may still be stored.
func (e *Engine) Append(ctx context.Context, events []engine.Event) ([]engine.Position, error) {
	for i := range events {
		if err := validate(events[i].Topic); err != nil {
			return nil, err
		}
		if n := len(events[i].ID); n > MaxIDLen {
			return nil, fmt.Errorf("local: event %d: idempotency key (ID) is %d bytes, at most %d", i, n, MaxIDLen)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return []engine.Position{}, nil
	}
	if err := e.refusing(); err != nil {
		return nil, err // at once, without queueing behind a stalled write
	}
	r := &request{ctx: ctx, events: events, done: make(chan struct{})}
	if err := e.send(ctx, r); err != nil {
		return nil, err
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		// Usually one commit away; longer only while a write waits for
		// disk space. The committer keeps the request: it may still be
		// stored, so the caller learns that it does not know.
		return nil, fmt.Errorf("%w: local: gave up waiting for the append, which may still be stored: %w", engine.ErrUnavailable, ctx.Err())
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.pos, nil
}

func (e *Engine) send(ctx context.Context, r *request) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return engine.ErrClosed
	}
	select {
	case e.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) committer() {
	defer close(e.committerDone)
	defer close(e.syncs) // the committer is the only sender
	var batch []*request
	for r := range e.reqs {
		batch = append(batch[:0], r)
		n := len(r.events)
	drain:
		for n < e.opt.MaxBatch {
			select {
			case r, ok := <-e.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		e.commitOrRefuse(batch)
		clear(batch)
	}
}

// commitOrRefuse commits a group of requests, or refuses its appends while the
// store refuses writes; a reopen request in the group is carried out after.
func (e *Engine) commitOrRefuse(batch []*request) {
	var reopen []*request
	batch = slices.DeleteFunc(batch, func(r *request) bool {
		if r.evict > 0 {
			e.evict(r.evict) // memory only: done even while writes are refused
			close(r.done)
			return true
		}
		if r.reopen {
			reopen = append(reopen, r)
		}
		return r.reopen
	})
	if len(batch) > 0 {
		if err := e.refusing(); err != nil {
			for _, r := range batch {
				r.err = err
				close(r.done)
			}
		} else {
			e.commit(batch)
		}
	}
	for _, r := range reopen {
		r.err = e.reopenDB()
		close(r.done)
	}
}

// commitJob is one group commit between the committer, which applies it, and
// the syncer, which waits for its fsync and answers it.
type commitJob struct {
	barrier   chan struct{} // closed by the syncer: every job before it is finished
	b         *pebble.Batch
	sync      bool       // wait for the WAL fsync
	err       error      // the apply failed
	reqs      []*request // every request of the group, answered by the syncer
	live      []*request // those written in b
	touched   map[string]topicState
	delivered []engine.Event
	seq       uint64 // the commit's number for delivery, once durable
	answered  bool   // the committer answered it before its fsync (SyncInterval)
	syncErr   error  // the fsync that covers it failed (SyncInterval)
}

// commit writes one group of requests into one batch and applies it without
// waiting for its fsync, then hands it to the syncer. The next group is applied
// while this one's fsync runs, and Pebble syncs everything applied meanwhile
// with one fsync: a publisher waits for about one fsync, not for the fsync of
// the group before its own as well. Offsets are assigned from assigned, the
// committer's view; Read and Head see topics, updated once durable.
func (e *Engine) commit(reqs []*request) {
	job := &commitJob{reqs: slices.Clone(reqs), touched: map[string]topicState{}}
	touched := job.touched
	load := func(topic string) (topicState, error) {
		if st, ok := touched[topic]; ok {
			return st, nil
		}
		if a, ok := e.shard(topic).assigned[topic]; ok {
			return a.topicState, nil
		}
		// First use: the durable state is cached in topics before anything
		// of this topic is written, so readers never load a state that is not
		// durable yet.
		return e.loadState(topic, true)
	}
	now := time.Unix(0, e.now().UnixNano()) // no monotonic reading: equal to what Read decodes
	nanos := now.UnixNano()
	bucket := ageBucket(nanos)
	b := e.db.NewBatch()
	job.b = b
	// Expired keys go first: an append of this group that reuses one then
	// writes it after the delete, and the lookups below ignore them anyway.
	for _, r := range reqs {
		if r.expireKeys {
			if r.expired, r.err = e.dropExpiredKeys(b, nanos); r.err == nil {
				job.live = append(job.live, r)
			}
		}
	}
	// seen holds the idempotency keys written in b, which the store does not
	// show yet: offsets by key. Allocated for the first event with an ID.
	var seen map[string]uint64
	for _, r := range reqs {
		if r.expireKeys {
			continue
		}
		if r.trimTopic != "" || len(r.put) > 0 || len(r.del) > 0 {
			if r.trimTopic != "" {
				st, err := load(r.trimTopic)
				if err != nil {
					r.err = err
					continue
				}
				if before := min(r.trimBefore, st.head+1); before > st.oldest {
					deleteEvents(b, r.trimTopic, st.oldest, before)
					st.oldest = before
					touched[r.trimTopic] = st
				}
			}
			for _, k := range r.del {
				b.Delete(k, nil)
			}
			for _, k := range r.put {
				b.Set(k, nil, nil)
			}
			job.live = append(job.live, r)
			continue
		}
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		// Load every topic and look up every key first, so a request fails
		// whole or not at all.
		var err error
		var stored []storedKey // by event, when an event has an ID
		for i := range r.events {
			ev := &r.events[i]
			if _, err = load(ev.Topic); err != nil {
				break
			}
			if ev.ID != "" {
				if stored == nil {
					stored = make([]storedKey, len(r.events))
				}
				if stored[i], err = e.lookupKey(idemKey(ev.Topic, ev.ID)); err != nil {
					err = fmt.Errorf("%w: local: read idempotency key of %q: %v", engine.ErrUnavailable, ev.Topic, err)
					break
				}
			}
		}
		if err != nil {
			r.err = err
			continue
		}
		r.pos = make([]engine.Position, len(r.events))
		for i, ev := range r.events {
			var key []byte
			if ev.ID != "" {
				key = idemKey(ev.Topic, ev.ID)
				if off, ok := seen[string(key)]; ok {
					r.pos[i] = engine.Position{Epoch: e.epoch, Offset: off}
					continue
				}
				if k := stored[i]; k.live(nanos, e.opt.IdempotencyWindow) {
					r.pos[i] = engine.Position{Epoch: e.epoch, Offset: k.offset}
					continue
				}
			}
			st, _ := load(ev.Topic)
			st.head++
			touched[ev.Topic] = st
			e.indexAge(b, ev.Topic, bucket)
			r.pos[i] = engine.Position{Epoch: e.epoch, Offset: st.head}
			b.Set(logKey(ev.Topic, st.head), encodeEvent(now, ev.Type, ev.Data), nil)
			if key != nil {
				if old := stored[i]; old.found {
					b.Delete(expiryKey(old.nanos, ev.Topic, ev.ID), nil) // one entry per key
				}
				b.Set(key, encodeKeyValue(st.head, nanos), nil)
				b.Set(expiryKey(nanos, ev.Topic, ev.ID), nil, nil)
				if seen == nil {
					seen = map[string]uint64{}
				}
				seen[string(key)] = st.head
			}
			job.delivered = append(job.delivered, engine.Event{Topic: ev.Topic, Type: ev.Type, Data: bytes.Clone(ev.Data), Pos: r.pos[i], Prev: st.head - 1, Time: now})
		}
		job.sync = !e.opt.NoSync
		job.live = append(job.live, r)
	}
	if len(job.live) > 0 {
		for topic, st := range touched {
			if n := st.head - st.oldest + 1; st.head >= st.oldest && n > uint64(e.opt.MaxLen) {
				before := st.head - uint64(e.opt.MaxLen) + 1
				deleteEvents(b, topic, st.oldest, before)
				st.oldest = before
				touched[topic] = st
			}
			b.Set(metaKey(topic), encodeMeta(st), nil)
		}
		if e.opt.MaxAge <= 0 && e.ageIndexed.Load() {
			// Appends without an age limit write no index: a later open with
			// one must build it again.
			b.Delete(ageIndexKey, nil)
		}
		if job.sync && e.opt.SyncInterval == 0 {
			job.err = e.db.ApplyNoSyncWait(b, pebble.Sync)
		} else {
			job.err = e.db.Apply(b, pebble.NoSync)
			if job.err == nil && e.opt.SyncInterval > 0 {
				// Written to the log: answered now, fsynced within
				// SyncInterval, delivered after that.
				for _, r := range job.reqs {
					close(r.done)
				}
				job.answered = true
			}
		}
		if job.err == nil {
			for topic, st := range touched {
				sh := e.shard(topic)
				a, ok := sh.assigned[topic]
				if !ok {
					e.nAssigned++
				}
				a.topicState = st
				if _, ok := e.grpIndexed[topic]; ok {
					a.bucket = bucket
				}
				sh.assigned[topic] = a
			}
			if e.opt.MaxAge <= 0 {
				e.ageIndexed.Store(false)
			}
		}
		clear(e.grpIndexed)
		if e.nAssigned > e.opt.MaxTopics && time.Since(e.lastEvict) >= e.opt.TopicIdle/8/stateShards {
			e.evict(1)
		}
	}
	// Blocks while two groups already wait for their fsync: the pipeline is
	// shallow, so a slow disk slows publishers instead of queueing them.
	e.syncs <- job
}

// syncer waits for each applied group's fsync, in order, then makes it visible
// to Read and Head, answers its publishers and queues its events for delivery.
func (e *Engine) syncer() {
	defer close(e.syncerDone)
	defer close(e.deliveries) // the syncer is the only sender
	// A group failed since the last reopen.
	failed := false
	for job := range e.syncs {
		e.complete(job, &failed)
	}
}

// complete finishes one job, then hands its events to delivery. failed says
// whether a group failed since the last reopen.
func (e *Engine) complete(job *commitJob, failed *bool) {
	if job.barrier != nil {
		*failed = false
	}
	jobFailed := e.finish(job, *failed)
	*failed = *failed || jobFailed
	if !jobFailed && job.seq > 0 {
		// After finish has answered the publishers: fan-out never delays
		// an answer.
		e.handOff(delivery{job.seq, job.delivered})
	}
}

// intervalSyncer replaces the syncer when SyncInterval is set: the groups
// were answered when applied; it fsyncs the log once per SyncInterval
// (counted from the first group not covered yet), then finishes every group
// the fsync covers, in order.
func (e *Engine) intervalSyncer() {
	defer close(e.syncerDone)
	defer close(e.deliveries) // the syncer is the only sender
	failed := false
	var pending []*commitJob
	timer := time.NewTimer(e.opt.SyncInterval)
	timer.Stop()
	flush := func() {
		timer.Stop()
		var err error
		if slices.ContainsFunc(pending, func(j *commitJob) bool { return j.answered }) {
			err = e.syncLog() // covers every group applied before it
		}
		for _, job := range pending {
			job.syncErr = err
			e.complete(job, &failed)
		}
		clear(pending)
		pending = pending[:0]
	}
	for {
		select {
		case job, ok := <-e.syncs:
			switch {
			case !ok:
				flush()
				return
			case job.barrier != nil:
				flush()
				e.complete(job, &failed)
			default:
				if len(pending) == 0 {
					timer.Reset(e.opt.SyncInterval)
				}
				pending = append(pending, job)
			}
		case <-timer.C:
			flush()
		}
	}
}

// syncLog fsyncs the log, covering everything applied before.
func (e *Engine) syncLog() error {
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.db == nil {
		return errors.New("no store")
	}
	return e.db.LogData(nil, pebble.Sync)
}

// finish answers one group and reports whether it failed. A group after one
// that failed fails too, whether its own fsync did or not: an idempotent
// retry in it may have been answered with the position of an append of the
// failed group, which is not stored.
func (e *Engine) finish(job *commitJob, failedBefore bool) (failed bool) {
	if job.barrier != nil {
		close(job.barrier)
		return false
	}
	defer func() {
		if !job.answered {
			for _, r := range job.reqs {
				close(r.done)
			}
		}
	}()
	err := job.err
	if err == nil {
		err = job.syncErr
	}
	if err == nil && job.sync && !job.answered && len(job.live) > 0 {
		err = job.b.SyncWait()
	}
	_ = job.b.Close()
	if len(job.live) == 0 {
		return false
	}
	if err == nil && failedBefore {
		err = errors.New("an earlier group commit failed")
	}
	if err != nil {
		// The log may refuse every record from now on: stop writing and
		// reopen the store. Whatever this group wrote is not acknowledged.
		e.refuse(&e.broken, "commit failed: "+err.Error())
		if job.answered {
			// Acknowledged before the fsync (SyncInterval): what the
			// group wrote may be lost, and is never delivered.
			e.log.Error("commit failed after its appends were acknowledged: they may be lost", "err", err, "requests", len(job.live))
			return true
		}
		e.log.Error("commit failed", "err", err, "requests", len(job.live))
		for _, r := range job.live {
			r.pos, r.err = nil, fmt.Errorf("%w: local: commit: %v", engine.ErrUnavailable, err)
		}
		return true
	}
	for topic, st := range job.touched {
		sh := e.shard(topic)
		sh.mu.Lock()
		sh.topics[topic] = cachedState{st, sh.tick}
		sh.mu.Unlock()
	}
	if len(job.delivered) > 0 {
		// Numbered before the publishers are answered: a Subscribe after
		// Append returned is not delivered the commit.
		job.seq = e.commitSeq.Add(1)
	}
	return false
}

// handOff queues a commit for the deliverer.
func (e *Engine) handOff(d delivery) {
	// Blocks when the deliverer is 64 commits behind: fan-out throttles
	// appends rather than queueing without bound.
	e.deliveries <- d
}

// deleteEvents drops topic's events with offsets in [from, before).
func deleteEvents(b *pebble.Batch, topic string, from, before uint64) {
	if before-from <= 64 {
		for off := from; off < before; off++ {
			b.Delete(logKey(topic, off), nil)
		}
		return
	}
	b.DeleteRange(logKey(topic, from), logKey(topic, before), nil)
}

// deliverer calls subscribers for committed events, in commit order, until
// Close has closed deliveries and everything queued was delivered.
func (e *Engine) deliverer() {
	defer close(e.deliverDone)
	for d := range e.deliveries {
		e.deliver(d)
	}
}

func (e *Engine) deliver(d delivery) {
	e.subMu.RLock()
	defer e.subMu.RUnlock()
	for _, ev := range d.events {
		for _, s := range e.subs[ev.Topic] {
			if d.seq >= s.from {
				e.call(s, ev)
			}
		}
	}
}

func (e *Engine) call(s *subscription, ev engine.Event) {
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("subscriber callback panicked", "topic", ev.Topic, "pos", ev.Pos.String(), "panic", p)
		}
	}()
	s.fn(ev)
}

// Subscribe calls fn on the engine's delivery goroutine for every event appended
// to topic after Subscribe returns, in position order, once the event is durable
// (usually just after its Append returns). fn must not block, and must not call cancel or
// Subscribe (cancel waits for running callbacks). The Data of the event is
// shared by all subscribers of the topic: do not modify it. Fan-out is in
// process and loses nothing, so lost is never called.
func (e *Engine) Subscribe(topic string, fn func(engine.Event), lost func()) (cancel func(), err error) {
	if err := validate(topic); err != nil {
		return nil, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, engine.ErrClosed
	}
	e.subMu.Lock()
	// Commits queued so far were appended before this call: not delivered to it.
	s := &subscription{fn: fn, from: e.commitSeq.Load() + 1}
	e.subs[topic] = append(e.subs[topic][:len(e.subs[topic]):len(e.subs[topic])], s)
	e.subMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.subMu.Lock()
			defer e.subMu.Unlock()
			list := e.subs[topic]
			i := slicesIndex(list, s)
			if i < 0 {
				return
			}
			if len(list) == 1 {
				delete(e.subs, topic)
				return
			}
			// Copy on write: never modify a slice a reader may hold.
			next := make([]*subscription, 0, len(list)-1)
			next = append(append(next, list[:i]...), list[i+1:]...)
			e.subs[topic] = next
		})
	}, nil
}

func slicesIndex(list []*subscription, s *subscription) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// Read returns up to limit events of topic after `after`, in order. The zero
// Position reads from the oldest retained event and never reports a gap.
func (e *Engine) Read(ctx context.Context, topic string, after engine.Position, limit int) ([]engine.Event, error) {
	if err := validate(topic); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("local: Read limit %d, must be positive", limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []engine.Event
	err := e.readLocked(func() (err error) {
		out, err = e.read(ctx, topic, after, limit)
		return err
	})
	return out, err
}

func (e *Engine) read(ctx context.Context, topic string, after engine.Position, limit int) ([]engine.Event, error) {
	st, err := e.state(topic)
	if err != nil {
		return nil, err
	}
	fromStart := after == engine.Position{}
	gap := func(st topicState) error {
		return &engine.GapError{Topic: topic, Resume: engine.Position{Epoch: e.epoch, Offset: st.oldest - 1}}
	}
	start := st.oldest
	if !fromStart {
		if after.Epoch != e.epoch || after.Offset+1 < st.oldest {
			return nil, gap(st)
		}
		start = after.Offset + 1
	}
	if start > st.head {
		return nil, nil // at or beyond the head
	}
	// Up to the durable head only: an event applied but not yet synced is never
	// shown, since a crash could still take it back and its offset be reused.
	it, err := e.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: logKey(topic, start), UpperBound: logKey(topic, st.head+1)})
	if err != nil {
		return nil, fmt.Errorf("%w: local: read %q: %v", engine.ErrUnavailable, topic, err)
	}
	prefix := len(logPrefix(topic))
	var out []engine.Event
	for valid := it.First(); valid && len(out) < limit; valid = it.Next() {
		if len(out)%256 == 255 {
			if err := ctx.Err(); err != nil {
				it.Close()
				return nil, err
			}
		}
		k := it.Key()
		if len(k) != prefix+8 {
			it.Close()
			return nil, fmt.Errorf("local: corrupt key %q in the log of %q", k, topic)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("%w: local: read %q: %v", engine.ErrUnavailable, topic, err)
		}
		pos := engine.Position{Epoch: e.epoch, Offset: binary.BigEndian.Uint64(k[prefix:])}
		ev, err := decodeEvent(topic, pos, v)
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, ev)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("%w: local: read %q: %v", engine.ErrUnavailable, topic, err)
	}
	if !fromStart {
		// Events may have been trimmed between the check above and the scan:
		// never skip one silently.
		if (len(out) > 0 && out[0].Pos.Offset != start) || (len(out) == 0 && start <= st.head) {
			now, err := e.state(topic)
			if err != nil {
				return nil, err
			}
			if now.oldest > start {
				return nil, gap(now)
			}
			if len(out) > 0 {
				return nil, fmt.Errorf("local: the log of %q misses offset %d", topic, start)
			}
		}
	}
	return out, nil
}

// Head returns the position of topic's last event, offset 0 when it has none.
func (e *Engine) Head(ctx context.Context, topic string) (engine.Position, error) {
	if err := validate(topic); err != nil {
		return engine.Position{}, err
	}
	if err := ctx.Err(); err != nil {
		return engine.Position{}, err
	}
	var st topicState
	err := e.readLocked(func() (err error) {
		st, err = e.state(topic)
		return err
	})
	if err != nil {
		return engine.Position{}, err
	}
	return engine.Position{Epoch: e.epoch, Offset: st.head}, nil
}

// Close lets pending appends finish (and their subscribers be called), stops the
// engine's goroutines and closes the store. It is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		close(e.reqs) // no sender left: they all hold mu for reading
		e.mu.Unlock()
		close(e.sweepStop)
		close(e.watchStop)
		<-e.sweepDone
		<-e.watchDone     // it waits for its reopen request, answered by the committer
		<-e.committerDone // it closes syncs
		<-e.syncerDone    // it closes deliveries
		<-e.deliverDone
		var err error
		if e.db != nil {
			err = e.db.Close()
		}
		if lerr := e.lock.Close(); err == nil {
			err = lerr
		}
		if err != nil {
			e.closeErr = fmt.Errorf("local: close %s: %w", e.dir, err)
		}
		e.log.Debug("closed")
	})
	return e.closeErr
}

// readLocked runs fn while the store is open and not being reopened, or
// returns ErrClosed, or ErrUnavailable while a failed reopen left no store.
func (e *Engine) readLocked(fn func() error) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return engine.ErrClosed
	}
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	if e.db == nil {
		return fmt.Errorf("%w: local: the store in %s could not be reopened: %s", engine.ErrUnavailable, e.dir, e.why())
	}
	return fn()
}

// pebbleLogger sends Pebble's messages to slog: its chatty info at Debug, and
// its errors at most once per format every few seconds, since a failing disk
// makes it repeat the same error many times a second.
type pebbleLogger struct {
	log   *slog.Logger
	once  sync.Once
	limit *ratelog.Limiter
}

func (l *pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l *pebbleLogger) Errorf(format string, args ...any) {
	l.once.Do(func() { l.limit = ratelog.NewLimiter(0) })
	held, ok := l.limit.Allow(format)
	if !ok {
		return
	}
	if held > 0 {
		l.log.Error(fmt.Sprintf(format, args...), "component", "pebble", "suppressed", held)
		return
	}
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l *pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
	os.Exit(1)
}

var _ io.Closer = (*Engine)(nil)
