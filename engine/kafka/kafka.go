package kafka

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-hub/herald/engine"
)

// Defaults applied by Open to zero Options fields.
const (
	DefaultTopic             = "herald"
	DefaultPartitions        = 32
	DefaultMaxLen            = 10_000
	DefaultMaxAge            = 24 * time.Hour
	DefaultIdempotencyWindow = 2 * time.Minute
	DefaultLinger            = time.Millisecond
	DefaultFetchMaxWait      = 100 * time.Millisecond
	DefaultTrimInterval      = time.Minute
	DefaultRequestTimeout    = 10 * time.Second
	DefaultCacheSize         = 64 << 20
)

// NoAgeLimit as Options.MaxAge turns age trimming off.
const NoAgeLimit time.Duration = -1

// Record headers. The record key is the Herald topic, the value the data.
const (
	hdrType = "herald-type"
	hdrTime = "herald-time" // unix nanos, BE64
	hdrID   = "herald-id"
)

// Options configure Open.
type Options struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topic is the Kafka topic shared by every node (DefaultTopic when empty).
	Topic string
	// Partitions is the topic's partition count: Open creates the topic with
	// it when missing and refuses a topic with another count. 0 takes the
	// existing topic's count, or DefaultPartitions when creating it.
	Partitions int32
	// ReplicationFactor is used when Open creates the topic (0: the broker's
	// default).
	ReplicationFactor int16
	// Dir is the directory of the node's replica of the log (required).
	Dir string
	// MaxLen is the most events kept per topic in the replica (0:
	// DefaultMaxLen).
	MaxLen int
	// MaxAge drops events older than this from the replica (0:
	// DefaultMaxAge; NoAgeLimit: none).
	MaxAge time.Duration
	// IdempotencyWindow is how long an Event.ID dedupes (0:
	// DefaultIdempotencyWindow).
	IdempotencyWindow time.Duration
	// Linger is the producer's linger (0: DefaultLinger; negative: none).
	Linger time.Duration
	// FetchMaxWait bounds the reader's long poll (0: DefaultFetchMaxWait).
	FetchMaxWait time.Duration
	// TrimInterval is how often age trimming runs (0: DefaultTrimInterval).
	TrimInterval time.Duration
	// RequestTimeout bounds Open's admin requests and each read barrier's
	// ListOffsets (0: DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Now tells the time, to stamp events and to trim by age (nil: time.Now).
	Now func() time.Time
	// ClientOpts are added to both Kafka clients' options (TLS, SASL, ...).
	ClientOpts []kgo.Opt
	// CacheSize is the replica's block cache in bytes (0: DefaultCacheSize).
	CacheSize int64
	// Logger receives the engine's messages (nil: slog.Default()).
	Logger *slog.Logger
}

// Engine is the Kafka engine. See the package documentation.
type Engine struct {
	opt     Options
	log     *slog.Logger
	now     func() time.Time
	prod    *kgo.Client // appends and admin requests
	cons    *kgo.Client // reads every partition
	adm     *kadm.Client
	db      *pebble.DB
	epoch   string
	topicID kadm.TopicID
	parts   int32

	mu        sync.Mutex // guards closed
	closed    bool
	closeDone chan struct{}
	calls     sync.WaitGroup

	ctx    context.Context // cancelled by Close after calls drained
	cancel context.CancelFunc
	loops  sync.WaitGroup

	writeMu sync.Mutex // one writer of the replica: the apply loop or a trim

	stateMu  sync.Mutex // guards the fields below; held while committing and delivering
	pstate   []partState
	hw       []int64 // high watermarks seen in fetches
	fatal    []error // partitions the reader gave up on
	changed  chan struct{}
	subs     map[string][]*subscription
	targets  []int64 // end offsets at Open: ready once applied
	caughtUp atomic.Bool

	barrierReq  chan *barrierWait
	lastIDCheck atomic.Int64 // unix nanos of the last topic ID check

	applied, dups, foreign, barriers, produceErrs, fetchErrs, resets, lostTopics atomic.Uint64
}

type subscription struct {
	fn   func(engine.Event)
	lost func()
}

type barrierWait struct {
	done chan struct{}
	ends kadm.ListedOffsets
	err  error
}

var _ interface {
	engine.Engine
	engine.WriteChecker
	engine.Metrics
} = (*Engine)(nil)

// Open connects to the brokers, creates the topic when missing, opens the
// replica in opt.Dir and starts reading every partition. It returns before
// the replica has caught up: CanWrite reports ErrUnavailable until it has,
// and reads wait for it through their barrier.
func Open(opt Options) (*Engine, error) {
	if len(opt.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	if opt.Dir == "" {
		return nil, errors.New("kafka: no replica directory")
	}
	if opt.Topic == "" {
		opt.Topic = DefaultTopic
	}
	if opt.Partitions < 0 {
		return nil, fmt.Errorf("kafka: %d partitions", opt.Partitions)
	}
	if opt.MaxLen < 0 {
		return nil, fmt.Errorf("kafka: MaxLen %d is negative", opt.MaxLen)
	}
	if opt.MaxLen == 0 {
		opt.MaxLen = DefaultMaxLen
	}
	if opt.MaxAge == 0 {
		opt.MaxAge = DefaultMaxAge
	}
	if opt.IdempotencyWindow < 0 {
		return nil, fmt.Errorf("kafka: IdempotencyWindow %v is negative", opt.IdempotencyWindow)
	}
	if opt.IdempotencyWindow == 0 {
		opt.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if opt.Linger == 0 {
		opt.Linger = DefaultLinger
	} else if opt.Linger < 0 {
		opt.Linger = 0
	}
	if opt.FetchMaxWait <= 0 {
		opt.FetchMaxWait = DefaultFetchMaxWait
	}
	if opt.TrimInterval <= 0 {
		opt.TrimInterval = DefaultTrimInterval
	}
	if opt.RequestTimeout <= 0 {
		opt.RequestTimeout = DefaultRequestTimeout
	}
	if opt.CacheSize <= 0 {
		opt.CacheSize = DefaultCacheSize
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	e := &Engine{
		opt:        opt,
		now:        opt.Now,
		log:        opt.Logger.With("engine", "kafka", "topic", opt.Topic),
		changed:    make(chan struct{}),
		closeDone:  make(chan struct{}),
		subs:       map[string][]*subscription{},
		barrierReq: make(chan *barrierWait),
	}
	ok := false
	defer func() {
		if !ok {
			e.closeClients()
		}
	}()
	var err error
	e.prod, err = kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(opt.Brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(opt.Linger),
		kgo.DefaultProduceTopic(opt.Topic),
		kgo.MetadataMinAge(250 * time.Millisecond),
	}, opt.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	e.adm = kadm.NewClient(e.prod)
	ctx, cancel := context.WithTimeout(context.Background(), opt.RequestTimeout)
	defer cancel()
	if err := e.ensureTopic(ctx); err != nil {
		return nil, err
	}
	e.epoch = hex.EncodeToString(e.topicID[:]) + fmt.Sprintf("p%d", e.parts)
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("kafka: replica dir: %w", err)
	}
	po := &pebble.Options{Logger: pebbleLogger{e.log}, CacheSize: opt.CacheSize}
	// As in the local engine: lookups of keys that are not there (a new
	// topic's state, a new idempotency key) are answered by the filters.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	e.db, err = pebble.Open(opt.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("kafka: open replica in %s: %w", opt.Dir, err)
	}
	starts, err := e.adm.ListStartOffsets(ctx, opt.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: list start offsets of %s: %w", opt.Topic, err)
	}
	ends, err := e.adm.ListEndOffsets(ctx, opt.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: list end offsets of %s: %w", opt.Topic, err)
	}
	if err := e.loadReplica(starts, ends); err != nil {
		return nil, err
	}
	offsets := map[int32]kgo.Offset{}
	for p := range e.parts {
		offsets[p] = kgo.NewOffset().At(e.pstate[p].next)
	}
	e.cons, err = kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(opt.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opt.Topic: offsets}),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.FetchMaxWait(opt.FetchMaxWait),
		kgo.MetadataMinAge(250 * time.Millisecond),
	}, opt.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	e.checkCaughtUp()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.loops.Add(3)
	go e.applyLoop()
	go e.barrierLoop()
	go e.trimLoop()
	ok = true
	return e, nil
}

func (e *Engine) closeClients() {
	if e.cons != nil {
		e.cons.Close()
	}
	if e.prod != nil {
		e.prod.Close()
	}
	if e.db != nil {
		e.db.Close()
	}
}

// ensureTopic looks the topic up, creates it when missing, and sets the
// topic ID and partition count.
func (e *Engine) ensureTopic(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		tds, err := e.adm.ListTopics(ctx, e.opt.Topic)
		if err != nil {
			return fmt.Errorf("kafka: metadata of %s: %w", e.opt.Topic, err)
		}
		td, found := tds[e.opt.Topic]
		switch {
		case found && td.Err == nil && len(td.Partitions) > 0:
			n := int32(len(td.Partitions))
			if e.opt.Partitions != 0 && n != e.opt.Partitions {
				return fmt.Errorf("kafka: topic %s has %d partitions, the engine URL says %d: every node must map Herald topics to the same partitions", e.opt.Topic, n, e.opt.Partitions)
			}
			e.parts, e.topicID = n, td.ID
			return nil
		case found && td.Err != nil && !errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			return fmt.Errorf("kafka: metadata of %s: %w", e.opt.Topic, td.Err)
		}
		if attempt == 0 {
			n := e.opt.Partitions
			if n == 0 {
				n = DefaultPartitions
			}
			rf := e.opt.ReplicationFactor
			if rf == 0 {
				rf = -1
			}
			_, err := e.adm.CreateTopic(ctx, n, rf, nil, e.opt.Topic)
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("kafka: create topic %s: %w", e.opt.Topic, err)
			}
			e.log.Info("created the Kafka topic", "partitions", n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: topic %s not visible after creating it: %w", e.opt.Topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// loadReplica checks the replica's epoch (wiping a replica of another
// epoch) and sets each partition's state from it and the log's bounds.
func (e *Engine) loadReplica(starts, ends kadm.ListedOffsets) error {
	stored, err := getCopy(e.db, []byte{keyEpoch})
	if err != nil {
		return fmt.Errorf("kafka: read replica: %w", err)
	}
	b := e.db.NewBatch()
	defer b.Close()
	if string(stored) != e.epoch {
		if stored != nil {
			e.log.Warn("the Kafka topic was recreated or repartitioned: rebuilding the replica in a new epoch", "old_epoch", string(stored), "epoch", e.epoch)
			if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
				return err
			}
		}
		if err := b.Set([]byte{keyEpoch}, []byte(e.epoch), nil); err != nil {
			return err
		}
	}
	e.pstate = make([]partState, e.parts)
	e.hw = make([]int64, e.parts)
	e.fatal = make([]error, e.parts)
	e.targets = make([]int64, e.parts)
	for p := range e.parts {
		so, ok1 := starts.Lookup(e.opt.Topic, p)
		eo, ok2 := ends.Lookup(e.opt.Topic, p)
		if !ok1 || !ok2 {
			return fmt.Errorf("kafka: no offsets for partition %d of %s", p, e.opt.Topic)
		}
		start, end := so.Offset, eo.Offset
		st := partState{next: start, floor: uint64(start)}
		if string(stored) == e.epoch {
			v, err := getCopy(e.db, partKey(p))
			if err != nil {
				return fmt.Errorf("kafka: read replica: %w", err)
			}
			if v != nil {
				if st, err = decodePart(v); err != nil {
					return fmt.Errorf("kafka: replica partition %d: %w", p, err)
				}
			}
		}
		switch {
		case st.next > end:
			return fmt.Errorf("kafka: the replica in %s has applied partition %d up to offset %d but the log ends at %d: the log was truncated (an unclean leader election?) or this is another cluster; remove the replica directory to rebuild it", e.opt.Dir, p, st.next, end)
		case st.next < start:
			e.log.Warn("records the replica had not applied were deleted from Kafka: readers behind them will see a gap", "partition", p, "applied_to", st.next, "log_start", start)
			st.next, st.floor = start, uint64(start)
			e.resets.Add(1)
		}
		e.pstate[p], e.hw[p], e.targets[p] = st, end, end
		if err := b.Set(partKey(p), st.encode(), nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

func (e *Engine) checkCaughtUp() {
	if e.caughtUp.Load() {
		return
	}
	for p := range e.parts {
		if e.pstate[p].next < e.targets[p] {
			return
		}
	}
	e.caughtUp.Store(true)
	e.log.Info("the replica has caught up with the Kafka log", "epoch", e.epoch)
}

// enter registers a call, or returns ErrClosed.
func (e *Engine) enter() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return engine.ErrClosed
	}
	e.calls.Add(1)
	return nil
}

// Append produces one record per event to its topic's partition and
// returns once the replica has applied them.
func (e *Engine) Append(ctx context.Context, events []engine.Event) ([]engine.Position, error) {
	if err := engine.CheckEvents(events); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.calls.Done()
	if len(events) == 0 {
		return nil, nil
	}
	nanos := e.now().UnixNano()
	ts := binary.BigEndian.AppendUint64(nil, uint64(nanos))
	recs := make([]*kgo.Record, len(events))
	for i, ev := range events {
		h := []kgo.RecordHeader{{Key: hdrType, Value: []byte(ev.Type)}, {Key: hdrTime, Value: ts}}
		if ev.ID != "" {
			h = append(h, kgo.RecordHeader{Key: hdrID, Value: []byte(ev.ID)})
		}
		recs[i] = &kgo.Record{
			Topic:     e.opt.Topic,
			Partition: partitionOf(ev.Topic, e.parts),
			Key:       []byte(ev.Topic),
			Value:     ev.Data,
			Headers:   h,
			Timestamp: time.Unix(0, nanos),
		}
	}
	before, err := e.partitionsUsable(recs)
	if err != nil {
		return nil, err
	}
	// ProduceSync answers in completion order: put the results back in the
	// order of the events.
	index := make(map[*kgo.Record]int, len(recs))
	for i, r := range recs {
		index[r] = i
	}
	results, err := e.produce(ctx, recs, index)
	if err != nil {
		return nil, err
	}
	failed := map[string]error{}
	for i, r := range results {
		if r.Err != nil {
			e.produceErrs.Add(1)
			if errors.Is(r.Err, kerr.UnknownTopicID) || errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
				e.maybeCheckTopicID()
			}
			if _, dup := failed[events[i].Topic]; !dup {
				failed[events[i].Topic] = fmt.Errorf("%w: %v", engine.ErrUnavailable, r.Err)
			}
		}
	}
	if len(failed) > 0 && ctx.Err() != nil && len(failed) == len(topicsOf(events)) {
		return nil, ctx.Err()
	}
	// Wait until the replica has applied every record produced. A record
	// given an offset the replica had already applied before the produce
	// means the log went back (the topic recreated under the engine): its
	// position would repeat one, so the partition fails.
	want := map[int32]int64{}
	for i, r := range results {
		if _, bad := failed[events[i].Topic]; !bad {
			p := r.Record.Partition
			if r.Record.Offset < before[p] {
				why := fmt.Errorf("Kafka gave offset %d to a record, below the %d the replica had applied: the log was recreated or truncated", r.Record.Offset, before[p])
				e.setFatal(p, why)
				return nil, fmt.Errorf("%w: %v", engine.ErrUnavailable, why)
			}
			want[p] = max(want[p], r.Record.Offset+1)
		}
	}
	for p, next := range want {
		if err := e.waitApplied(ctx, p, next); err != nil {
			return nil, err
		}
	}
	pos := make([]engine.Position, len(events))
	for i, r := range results {
		if _, bad := failed[events[i].Topic]; bad {
			continue
		}
		off := uint64(r.Record.Offset) + 1
		if id := events[i].ID; id != "" {
			// The replica applied the first record of this ID in the
			// window and skipped the others: a record of ours that was
			// skipped answers with the first one's offset.
			v, err := getCopy(e.db, idemKey(events[i].Topic, id))
			if err != nil {
				return nil, fmt.Errorf("%w: replica: %v", engine.ErrUnavailable, err)
			}
			if len(v) == 16 {
				if first := binary.BigEndian.Uint64(v); first < off {
					off = first
				}
			}
		}
		pos[i] = engine.Position{Epoch: e.epoch, Offset: off}
	}
	if len(failed) == 0 {
		return pos, nil
	}
	if len(failed) == len(topicsOf(events)) {
		for _, err := range failed {
			return nil, err
		}
	}
	return pos, &engine.AppendError{Topics: failed}
}

func topicsOf(events []engine.Event) map[string]bool {
	m := map[string]bool{}
	for _, ev := range events {
		m[ev.Topic] = true
	}
	return m
}

// partitionsUsable refuses an append to a partition the reader gave up on:
// it could not be applied, nor answered. It returns how far the replica has
// applied each partition of the records.
func (e *Engine) partitionsUsable(recs []*kgo.Record) (map[int32]int64, error) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	applied := map[int32]int64{}
	for _, r := range recs {
		if err := e.fatal[r.Partition]; err != nil {
			return nil, fmt.Errorf("%w: %v", engine.ErrUnavailable, err)
		}
		applied[r.Partition] = e.pstate[r.Partition].next
	}
	return applied, nil
}

// waitApplied waits until partition p is applied up to (not including)
// Kafka offset next.
func (e *Engine) waitApplied(ctx context.Context, p int32, next int64) error {
	for {
		e.stateMu.Lock()
		applied, fatal, ch := e.pstate[p].next, e.fatal[p], e.changed
		e.stateMu.Unlock()
		if applied >= next {
			return nil
		}
		if fatal != nil {
			return fmt.Errorf("%w: %v", engine.ErrUnavailable, fatal)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// barrier makes the replica as fresh as the log for partition p: it lists
// the partition's end offset (one ListOffsets for every caller waiting at
// the time) and waits until the replica has applied up to it.
func (e *Engine) barrier(ctx context.Context, p int32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.barriers.Add(1)
	e.stateMu.Lock()
	applied := e.pstate[p].next
	e.stateMu.Unlock()
	w := &barrierWait{done: make(chan struct{})}
	select {
	case e.barrierReq <- w:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if w.err != nil {
		return fmt.Errorf("%w: list offsets: %v", engine.ErrUnavailable, w.err)
	}
	lo, ok := w.ends.Lookup(e.opt.Topic, p)
	if !ok || lo.Err != nil {
		e.maybeCheckTopicID()
	}
	if !ok {
		return fmt.Errorf("%w: no end offset for partition %d", engine.ErrUnavailable, p)
	}
	if lo.Err != nil {
		return fmt.Errorf("%w: end offset of partition %d: %v", engine.ErrUnavailable, p, lo.Err)
	}
	if lo.Offset < applied {
		// The replica only applies records below the high watermark, and
		// applied was read before the offsets were listed: the log was
		// recreated or truncated, or a new leader answered before its high
		// watermark caught up. This read fails; the topic ID check (and
		// the reader, on truncation) tell the lasting cases.
		e.maybeCheckTopicID()
		return fmt.Errorf("%w: the log of partition %d ends at offset %d, before the %d the replica applied", engine.ErrUnavailable, p, lo.Offset, applied)
	}
	return e.waitApplied(ctx, p, lo.Offset)
}

func (e *Engine) barrierLoop() {
	defer e.loops.Done()
	for {
		var ws []*barrierWait
		select {
		case w := <-e.barrierReq:
			ws = append(ws, w)
		case <-e.ctx.Done():
			return
		}
	drain:
		for {
			select {
			case w := <-e.barrierReq:
				ws = append(ws, w)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.opt.RequestTimeout)
		ends, err := e.adm.ListEndOffsets(ctx, e.opt.Topic)
		cancel()
		for _, w := range ws {
			w.ends, w.err = ends, err
			close(w.done)
		}
	}
}

// snapshot returns a consistent view of the replica and the floor of p.
func (e *Engine) snapshot(p int32) (*pebble.Snapshot, uint64) {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	return e.db.NewSnapshot(), e.pstate[p].floor
}

// Head returns the topic's last position in the replica after a read
// barrier.
func (e *Engine) Head(ctx context.Context, topic string) (engine.Position, error) {
	if err := engine.ValidateTopic(topic); err != nil {
		return engine.Position{}, err
	}
	if err := e.enter(); err != nil {
		return engine.Position{}, err
	}
	defer e.calls.Done()
	p := partitionOf(topic, e.parts)
	if err := e.barrier(ctx, p); err != nil {
		return engine.Position{}, err
	}
	snap, floor := e.snapshot(p)
	defer snap.Close()
	m, _, err := readMeta(snap, topic)
	if err != nil {
		return engine.Position{}, fmt.Errorf("%w: replica: %v", engine.ErrUnavailable, err)
	}
	return engine.Position{Epoch: e.epoch, Offset: m.withFloor(floor).head}, nil
}

// Read returns the topic's events after `after` from the replica, after a
// read barrier.
func (e *Engine) Read(ctx context.Context, topic string, after engine.Position, limit int) ([]engine.Event, error) {
	if err := engine.ValidateTopic(topic); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("kafka: Read limit %d, must be positive", limit)
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.calls.Done()
	p := partitionOf(topic, e.parts)
	if err := e.barrier(ctx, p); err != nil {
		return nil, err
	}
	snap, floor := e.snapshot(p)
	defer snap.Close()
	m, _, err := readMeta(snap, topic)
	if err != nil {
		return nil, fmt.Errorf("%w: replica: %v", engine.ErrUnavailable, err)
	}
	m = m.withFloor(floor)
	start := m.trimmed
	if after != (engine.Position{}) {
		if after.Epoch != e.epoch || after.Offset < m.trimmed {
			return nil, &engine.GapError{Topic: topic, Resume: engine.Position{Epoch: e.epoch, Offset: m.trimmed}}
		}
		start = after.Offset
	}
	if start >= m.head {
		return nil, nil
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: logKey(topic, start+1), UpperBound: prefixEnd(logPrefix(topic))})
	if err != nil {
		return nil, fmt.Errorf("%w: replica: %v", engine.ErrUnavailable, err)
	}
	defer it.Close()
	var out []engine.Event
	plen := len(logPrefix(topic))
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != plen+8 {
			continue
		}
		se, err := decodeEvent(it.Value())
		if err != nil {
			return nil, fmt.Errorf("%w: replica: %v", engine.ErrUnavailable, err)
		}
		out = append(out, engine.Event{
			Topic: topic, Type: se.typ, Data: se.data, ID: se.id,
			Pos:  engine.Position{Epoch: e.epoch, Offset: binary.BigEndian.Uint64(k[plen:])},
			Prev: se.prev,
			Time: time.Unix(0, se.nanos),
		})
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w: replica: %v", engine.ErrUnavailable, err)
	}
	return out, nil
}

// Subscribe registers fn for the topic's events applied from now on.
func (e *Engine) Subscribe(topic string, fn func(engine.Event), lost func()) (func(), error) {
	if err := engine.ValidateTopic(topic); err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.calls.Done()
	s := &subscription{fn: fn, lost: lost}
	e.stateMu.Lock()
	e.subs[topic] = append(e.subs[topic], s)
	e.stateMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			e.stateMu.Lock()
			defer e.stateMu.Unlock()
			subs := e.subs[topic]
			if i := slices.Index(subs, s); i >= 0 {
				subs = slices.Delete(slices.Clone(subs), i, i+1)
			}
			if len(subs) == 0 {
				delete(e.subs, topic)
			} else {
				e.subs[topic] = subs
			}
		})
	}, nil
}

// Close lets calls in flight finish, stops the reader and closes the
// replica. No callback runs after it returns.
// produce sends recs and waits for their results, in the order of index.
// It gives up when ctx ends or the broker has not answered within
// RequestTimeout (a broker that is down: the producer would wait for it
// for ever, and Close with it); the records may then still be appended
// later, as after any lost answer, and the error says so.
func (e *Engine) produce(ctx context.Context, recs []*kgo.Record, index map[*kgo.Record]int) (kgo.ProduceResults, error) {
	results := make(kgo.ProduceResults, len(recs))
	done := make(chan kgo.ProduceResult, len(recs))
	for _, r := range recs {
		// ctx ending fails the records not sent yet: those are not appended.
		e.prod.Produce(ctx, r, func(r *kgo.Record, err error) {
			done <- kgo.ProduceResult{Record: r, Err: err}
		})
	}
	timer := time.NewTimer(e.opt.RequestTimeout)
	defer timer.Stop()
	for range recs {
		select {
		case r := <-done:
			results[index[r.Record]] = r
		case <-ctx.Done():
			e.produceErrs.Add(1)
			return nil, fmt.Errorf("%w: kafka: gave up waiting for the broker: %w (the events may still be appended)", engine.ErrUnavailable, ctx.Err())
		case <-timer.C:
			e.produceErrs.Add(1)
			return nil, fmt.Errorf("%w: kafka: no answer from the broker within %v (the events may still be appended)", engine.ErrUnavailable, e.opt.RequestTimeout)
		}
	}
	return results, nil
}

func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.closeDone
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	defer close(e.closeDone)
	e.calls.Wait()
	e.cancel()
	e.loops.Wait()
	e.cons.Close()
	e.prod.Close()
	return e.db.Close()
}

// CanWrite implements engine.WriteChecker: ErrUnavailable while the replica
// has not caught up with the log it found at Open, and once the reader gave
// up on a partition.
func (e *Engine) CanWrite() error {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return engine.ErrClosed
	}
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	for p, err := range e.fatal {
		if err != nil {
			return fmt.Errorf("%w: partition %d: %v", engine.ErrUnavailable, p, err)
		}
	}
	if !e.caughtUp.Load() {
		return fmt.Errorf("%w: the replica is catching up with the Kafka log, %d records behind", engine.ErrUnavailable, e.lagLocked())
	}
	return nil
}

// Lag is how many records the replica is behind the high watermarks last
// seen.
func (e *Engine) Lag() uint64 {
	e.stateMu.Lock()
	defer e.stateMu.Unlock()
	return e.lagLocked()
}

func (e *Engine) lagLocked() uint64 {
	var lag uint64
	for p := range e.parts {
		if d := e.hw[p] - e.pstate[p].next; d > 0 {
			lag += uint64(d)
		}
	}
	return lag
}

// Epoch is the epoch of every position the engine gives: the Kafka topic's
// ID and partition count.
func (e *Engine) Epoch() string { return e.epoch }

// Metrics implements engine.Metrics.
func (e *Engine) Metrics() []engine.Counter {
	return []engine.Counter{
		{Name: "records_applied", Help: "Kafka records applied to the node's replica.", Value: e.applied.Load()},
		{Name: "duplicates_skipped", Help: "Records skipped as repeats of an Event.ID within the idempotency window.", Value: e.dups.Load()},
		{Name: "foreign_records", Help: "Records in the Kafka topic that Herald did not write, skipped.", Value: e.foreign.Load()},
		{Name: "read_barriers", Help: "Reads and heads that waited for the replica to reach the log's end.", Value: e.barriers.Load()},
		{Name: "produce_errors", Help: "Records that Kafka did not accept.", Value: e.produceErrs.Load()},
		{Name: "fetch_errors", Help: "Errors the reader got from Kafka.", Value: e.fetchErrs.Load()},
		{Name: "partition_resets", Help: "Times the reader resumed at a partition's log start after records it had not applied were deleted.", Value: e.resets.Load()},
		{Name: "lost_topics", Help: "Topics whose subscribers were told to re-read history after such a reset.", Value: e.lostTopics.Load()},
	}
}

type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
	os.Exit(1)
}
