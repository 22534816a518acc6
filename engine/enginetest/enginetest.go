// Package enginetest is the conformance suite every Herald engine runs, in the
// spirit of testing/fstest.TestFS and golang.org/x/net/nettest.TestConn.
//
// An engine's test calls Run with a Harness that opens engines on fresh, empty back
// ends. The suite is written for networked engines too: fan-out may arrive a little
// later than Append returns, so every wait polls with a generous deadline
// (Timeout) instead of sleeping.
//
//	func TestConformance(t *testing.T) {
//		enginetest.Run(t, enginetest.Harness{
//			Open: func(t *testing.T, opt enginetest.Options) engine.Engine { ... },
//		})
//	}
//
// Harness fields other than Open are optional capabilities (a peer instance, a
// reopen of the same back end, age trimming on the suite's clock): when one is
// nil, the subtests that need it skip and say why.
//
// Run checks for leaked goroutines once all subtests and their cleanups are done,
// so it must not be called from a parallel test (t.Parallel) and its package's
// other tests must not leave goroutines running while it runs.
package enginetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-hub/herald/engine"
)

// Timeout bounds every wait for asynchronous delivery (fan-out, subscriptions).
// It is generous on purpose: waits poll and end as soon as the condition holds.
var Timeout = 20 * time.Second

// Harness tells the suite how to open engines.
type Harness struct {
	// Open returns a new engine on a fresh, empty back end namespace, keeping at
	// most opt.MaxLen events per topic (0: engine default, large). It registers
	// the engine's Close with t.Cleanup and fails t when it cannot open.
	Open func(t *testing.T, opt Options) engine.Engine

	// OpenPeer returns a second instance sharing e's back end (another node),
	// closed by t.Cleanup. Nil for single-node engines: those subtests skip.
	OpenPeer func(t *testing.T, e engine.Engine) engine.Engine

	// Reopen closes e and opens it again on the same back end (a restart), with
	// the same options. Nil if not supported: those subtests skip.
	Reopen func(t *testing.T, e engine.Engine) engine.Engine

	// Aging, when set, lets the suite check retention by age on a clock it
	// controls. Nil for engines whose age trimming cannot be driven by a test
	// (it runs on the back end's own clock): those subtests skip.
	Aging *Aging

	// Dense says the engine gives a topic's events offsets that grow by one
	// (Prev = Offset-1), as the local engine does: the suite then checks that
	// they do. Engines whose log is shared by many topics leave holes and set
	// it false: the suite checks that offsets strictly increase, that Read and
	// Subscribe give the offsets Append returned, and that Prev links each
	// event to the one appended before it.
	Dense bool

	// IgnoreGoroutines lists functions of goroutines a back end's client
	// library legitimately leaves running after Close (process-wide helpers,
	// a delayed close of its own); the leak check ignores a goroutine with
	// one of them anywhere in its stack. Most engines leave it empty.
	IgnoreGoroutines []string
}

// Aging is the optional capability of dropping events by age, on a clock the
// suite controls.
type Aging struct {
	// Open is Harness.Open for an engine that drops events older than maxAge,
	// telling the time with now, both to stamp appended events and to trim,
	// instead of the wall clock. Harness.Reopen, when set, must reopen such an
	// engine with the same maxAge and now.
	Open func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine

	// Trim runs e's age trimming once, as its background trimming would, and
	// returns when events older than maxAge by now are no longer retained.
	Trim func(t *testing.T, e engine.Engine)
}

// Options are the engine settings a subtest needs.
type Options struct {
	// MaxLen is the most events kept per topic; 0 means the engine's default.
	MaxLen int
}

// Run runs the conformance suite against the engines h opens.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("enginetest: Harness.Open is nil")
	}
	leakOpts := []goleak.Option{goleak.IgnoreCurrent()}
	for _, fn := range h.IgnoreGoroutines {
		leakOpts = append(leakOpts, goleak.IgnoreAnyFunction(fn))
	}
	s := &suite{h: h}
	t.Run("Conformance", func(t *testing.T) {
		for _, c := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"AppendReturnsConsecutivePositionsInOrder", s.testAppendConsecutive},
			{"AppendBatchAcrossTopics", s.testAppendBatchAcrossTopics},
			{"AppendEmptyBatch", s.testAppendEmpty},
			{"AppendRejectsInvalidTopicAtomically", s.testAppendInvalidTopic},
			{"Head", s.testHead},
			{"ReadAfterCursorReturnsExactlyTheLaterEvents", s.testReadAfterCursor},
			{"ReadPagesWithLimit", s.testReadPaging},
			{"ReadFromZeroPositionStartsAtOldestRetained", s.testReadZeroPosition},
			{"ReadAfterEmptyHeadHasNoGap", s.testReadAfterEmptyHead},
			{"ConcurrentAppendsYieldUniqueGapFreeOffsets", s.testConcurrentAppends},
			{"OffsetsAreDensePerTopicUnderInterleavedAppends", s.testDenseAcrossTopics},
			{"SubscribeSeesEveryLaterEventInOrder", s.testSubscribeInOrder},
			{"SubscribeUnderConcurrentAppends", s.testSubscribeConcurrent},
			{"SubscribeDuringAppendsMissesNothingAfterHead", s.testSubscribeDuringAppends},
			{"CancelStopsDelivery", s.testCancel},
			{"TwoSubscribersOnOneTopic", s.testTwoSubscribers},
			{"SubscriptionsArePerTopic", s.testNoCrossTalk},
			{"RetentionGap", s.testRetentionGap},
			{"RetentionByAge", s.testRetentionByAge},
			{"PositionFromAnotherEpochIsAGap", s.testOtherEpochGap},
			{"FanOutAcrossInstances", s.testFanOut},
			{"ReopenKeepsHistoryAndOffsetsContinue", s.testReopen},
			{"ClosedEngineReturnsErrClosed", s.testClosed},
			{"CloseLetsPendingAppendsFinish", s.testCloseDrains},
			{"CloseWhileCallsAreInFlightEndsThemCleanly", s.testCloseRace},
			{"ContextCancellationHonoured", s.testContext},
			{"InvalidTopicRejected", s.testInvalidTopic},
			{"IdempotentAppendByEventID", s.testIdempotency},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.fn(t)
			})
		}
	})
	t.Run("NoGoroutineLeak", func(t *testing.T) {
		if err := goleak.Find(leakOpts...); err != nil {
			t.Errorf("goroutines left running after every engine was closed: %v", err)
		}
	})
}

type suite struct{ h Harness }

func (s *suite) open(t *testing.T) engine.Engine { return s.h.Open(t, Options{}) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*Timeout)
	t.Cleanup(cancel)
	return ctx
}

func ev(topic string, i int) engine.Event {
	return engine.Event{Topic: topic, Type: "test", Data: fmt.Appendf(nil, `{"n":%d}`, i)}
}

func mustAppend(t *testing.T, e engine.Engine, events ...engine.Event) []engine.Position {
	t.Helper()
	pos, err := e.Append(ctxFor(t), events)
	if err != nil {
		t.Fatalf("Append(%d events): %v", len(events), err)
	}
	if len(pos) != len(events) {
		t.Fatalf("Append(%d events) returned %d positions", len(events), len(pos))
	}
	return pos
}

// appendN appends n events to topic one call at a time, data n=from..from+n-1.
func appendN(t *testing.T, e engine.Engine, topic string, from, n int) []engine.Position {
	t.Helper()
	var out []engine.Position
	for i := from; i < from+n; i++ {
		out = append(out, mustAppend(t, e, ev(topic, i))...)
	}
	return out
}

func mustHead(t *testing.T, e engine.Engine, topic string) engine.Position {
	t.Helper()
	p, err := e.Head(ctxFor(t), topic)
	if err != nil {
		t.Fatalf("Head(%q): %v", topic, err)
	}
	return p
}

// readAll reads every event after `after`, paging with limit until an empty page
// (a short page does not mean the end).
func readAll(t *testing.T, e engine.Engine, topic string, after engine.Position, limit int) []engine.Event {
	t.Helper()
	var out []engine.Event
	for {
		page, err := e.Read(ctxFor(t), topic, after, limit)
		if err != nil {
			t.Fatalf("Read(%q, after %v, limit %d): %v", topic, after, limit, err)
		}
		if len(page) > limit {
			t.Fatalf("Read(%q, after %v, limit %d) returned %d events", topic, after, limit, len(page))
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Pos
	}
}

// checkAppended fails unless pos, the positions Append gave a topic's events
// in order, are in one non-empty epoch with strictly increasing offsets; for a
// Dense engine, they must be first, first+1, ...
func (s *suite) checkAppended(t *testing.T, what string, pos []engine.Position, first uint64) {
	t.Helper()
	for i, p := range pos {
		if p.Epoch == "" || p.Epoch != pos[0].Epoch {
			t.Fatalf("%s: position %d is %v, want the epoch %q of the first (all: %v)", what, i, p, pos[0].Epoch, pos)
		}
		if p.Offset == 0 || (i > 0 && p.Offset <= pos[i-1].Offset) {
			t.Fatalf("%s: offsets do not strictly increase from 1: %v", what, pos)
		}
		if s.h.Dense && p.Offset != first+uint64(i) {
			t.Fatalf("%s: position %d is %v, want offset %d (a dense engine's offsets grow by one; all: %v)", what, i, p, first+uint64(i), pos)
		}
	}
}

// checkRun fails unless events are exactly the events appended at
// all[from:from+n], in order, where all are the positions Append returned for
// every event of the topic, from its first. Each event's Prev must be the
// offset appended before it (all[from-1], or 0 for the topic's first event),
// whether that event is retained or not.
func checkRun(t *testing.T, what string, events []engine.Event, all []engine.Position, from, n int) {
	t.Helper()
	if len(events) != n {
		t.Fatalf("%s: got %d events, want %d (offsets %v)", what, len(events), n, offsets(events))
	}
	for i, e := range events {
		if want := all[from+i]; e.Pos != want {
			t.Fatalf("%s: event %d at %v, want %v (offsets %v)", what, i, e.Pos, want, offsets(events))
		}
	}
	checkPrev(t, what, events)
	if n > 0 {
		var want uint64
		if from > 0 {
			want = all[from-1].Offset
		}
		if events[0].Prev != want {
			t.Fatalf("%s: first event at %v has Prev %d, want %d (the event appended before it)", what, events[0].Pos, events[0].Prev, want)
		}
	}
}

// indexOf maps each offset of pos to its index.
func indexOf(pos []engine.Position) map[uint64]int {
	m := make(map[uint64]int, len(pos))
	for i, p := range pos {
		m[p.Offset] = i
	}
	return m
}

// checkPrev fails unless each event's Prev links it to the one before it: a
// run of events read or delivered in order has no event in between.
func checkPrev(t *testing.T, what string, events []engine.Event) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		if events[i].Prev != events[i-1].Pos.Offset {
			t.Fatalf("%s: event at %v has Prev %d, want %d (the event before it)", what, events[i].Pos, events[i].Prev, events[i-1].Pos.Offset)
		}
	}
	for _, e := range events {
		if e.Prev >= e.Pos.Offset {
			t.Fatalf("%s: event at %v has Prev %d, not before it", what, e.Pos, e.Prev)
		}
	}
}

func offsets(events []engine.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Pos.Offset
	}
	return out
}

// collector records what a subscription delivers, and how often the engine
// said fan-out may have lost events.
type collector struct {
	mu     sync.Mutex
	events []engine.Event
	losses atomic.Int64
}

func (c *collector) fn(e engine.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

func (c *collector) lost() { c.losses.Add(1) }

func (c *collector) snapshot() []engine.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// wait polls until at least n events arrived or Timeout passes, then returns them.
func (c *collector) wait(t *testing.T, n int) []engine.Event {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		got := c.snapshot()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber got %d events within %v, want %d (offsets %v)", len(got), Timeout, n, offsets(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUntil polls until done holds for what arrived, or fails t after Timeout.
func (c *collector) waitUntil(t *testing.T, what string, done func([]engine.Event) bool) []engine.Event {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		got := c.snapshot()
		if done(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber: %s: not within %v (got offsets %v)", what, Timeout, offsets(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls until cond holds, or fails t after Timeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, Timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func subscribe(t *testing.T, e engine.Engine, topic string) *collector {
	t.Helper()
	c := &collector{}
	cancel, err := e.Subscribe(topic, c.fn, c.lost)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	t.Cleanup(cancel)
	return c
}

func checkEvent(t *testing.T, got engine.Event, topic string, i int) {
	t.Helper()
	want := ev(topic, i)
	if got.Topic != want.Topic || got.Type != want.Type || string(got.Data) != string(want.Data) {
		t.Fatalf("event at %v = {%q %q %s}, want {%q %q %s}", got.Pos, got.Topic, got.Type, got.Data, want.Topic, want.Type, want.Data)
	}
	if got.Time.IsZero() {
		t.Fatalf("event at %v has zero Time", got.Pos)
	}
}

func (s *suite) testAppendConsecutive(t *testing.T) {
	e := s.open(t)
	pos := appendN(t, e, "t/a", 1, 5)
	pos = append(pos, mustAppend(t, e, ev("t/a", 6), ev("t/a", 7), ev("t/a", 8))...)
	s.checkAppended(t, "Append", pos, 1)
	got := readAll(t, e, "t/a", engine.Position{}, 100)
	checkRun(t, "Read", got, pos, 0, 8)
	for i, g := range got {
		checkEvent(t, g, "t/a", i+1)
	}
}

func (s *suite) testAppendBatchAcrossTopics(t *testing.T) {
	e := s.open(t)
	pos := mustAppend(t, e, ev("b/a", 1), ev("b/b", 1), ev("b/a", 2), ev("b/b", 2), ev("b/a", 3))
	posA := []engine.Position{pos[0], pos[2], pos[4]}
	posB := []engine.Position{pos[1], pos[3]}
	s.checkAppended(t, "Append to b/a", posA, 1)
	s.checkAppended(t, "Append to b/b", posB, 1)
	a := readAll(t, e, "b/a", engine.Position{}, 10)
	checkRun(t, "Read b/a", a, posA, 0, 3)
	for i, g := range a {
		checkEvent(t, g, "b/a", i+1)
	}
	b := readAll(t, e, "b/b", engine.Position{}, 10)
	checkRun(t, "Read b/b", b, posB, 0, 2)
	for i, g := range b {
		checkEvent(t, g, "b/b", i+1)
	}
}

func (s *suite) testAppendEmpty(t *testing.T) {
	e := s.open(t)
	pos, err := e.Append(ctxFor(t), nil)
	if err != nil || len(pos) != 0 {
		t.Fatalf("Append(nil) = %v, %v; want no positions and no error", pos, err)
	}
}

func (s *suite) testAppendInvalidTopic(t *testing.T) {
	e := s.open(t)
	_, err := e.Append(ctxFor(t), []engine.Event{ev("ok/1", 1), {Topic: "bad topic", Type: "test"}})
	if !errors.Is(err, engine.ErrInvalidTopic) {
		t.Fatalf("Append with an invalid topic: err = %v, want ErrInvalidTopic", err)
	}
	if h := mustHead(t, e, "ok/1"); h.Offset != 0 {
		t.Fatalf("after a rejected batch, Head(ok/1) = %v, want offset 0 (nothing of the batch appended)", h)
	}
}

func (s *suite) testHead(t *testing.T) {
	e := s.open(t)
	h := mustHead(t, e, "h/empty")
	if h.Offset != 0 {
		t.Fatalf("Head of an empty topic = %v, want offset 0", h)
	}
	pos := appendN(t, e, "h/a", 1, 3)
	if h := mustHead(t, e, "h/a"); h != pos[2] {
		t.Fatalf("Head after 3 appends = %v, want %v", h, pos[2])
	}
	appendN(t, e, "h/b", 1, 1)
	if h := mustHead(t, e, "h/a"); h != pos[2] {
		t.Fatalf("Head(h/a) moved to %v after an append to h/b, want %v", h, pos[2])
	}
}

func (s *suite) testReadAfterCursor(t *testing.T) {
	e := s.open(t)
	pos := appendN(t, e, "r/a", 1, 10)
	s.checkAppended(t, "Append", pos, 1)
	for _, i := range []int{0, 1, 4, 9, 10} { // after the i-th event (0: Offset 0)
		after := engine.Position{Epoch: pos[0].Epoch}
		if i > 0 {
			after = pos[i-1]
		}
		got := readAll(t, e, "r/a", after, 100)
		checkRun(t, fmt.Sprintf("Read after %v", after), got, pos, i, 10-i)
		for j, g := range got {
			checkEvent(t, g, "r/a", i+j+1)
		}
		if i > 0 && pos[i-1].Offset+1 < pos[min(i, 9)].Offset {
			// A cursor in the hole before an event reads from that event.
			after.Offset++
			checkRun(t, fmt.Sprintf("Read after %v, in a hole", after), readAll(t, e, "r/a", after, 100), pos, i, 10-i)
		}
	}
	// A cursor at the head reads nothing, without error.
	got, err := e.Read(ctxFor(t), "r/a", pos[9], 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("Read after head = %d events, %v; want none, nil", len(got), err)
	}
	// A topic never written reads nothing.
	got, err = e.Read(ctxFor(t), "r/none", engine.Position{}, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("Read of an empty topic = %d events, %v; want none, nil", len(got), err)
	}
}

func (s *suite) testReadPaging(t *testing.T) {
	e := s.open(t)
	pos := appendN(t, e, "p/a", 1, 25)
	s.checkAppended(t, "Append", pos, 1)
	epoch := pos[0].Epoch
	first, err := e.Read(ctxFor(t), "p/a", engine.Position{Epoch: epoch}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || len(first) > 10 {
		t.Fatalf("Read with limit 10 returned %d events", len(first))
	}
	checkRun(t, "first page", first, pos, 0, len(first))
	for _, limit := range []int{1, 7, 10, 25, 1000} {
		got := readAll(t, e, "p/a", engine.Position{Epoch: epoch}, limit)
		checkRun(t, fmt.Sprintf("paging with limit %d", limit), got, pos, 0, 25)
	}
}

func (s *suite) testReadZeroPosition(t *testing.T) {
	e := s.h.Open(t, Options{MaxLen: 10})
	pos := appendN(t, e, "z/a", 1, 15)
	got := readAll(t, e, "z/a", engine.Position{}, 100)
	checkRun(t, "Read from Position{}", got, pos, 5, 10)
}

func (s *suite) testReadAfterEmptyHead(t *testing.T) {
	e := s.open(t)
	h := mustHead(t, e, "eh/a")
	pos := appendN(t, e, "eh/a", 1, 3)
	got := readAll(t, e, "eh/a", h, 100)
	checkRun(t, "Read after the Head of the then empty topic", got, pos, 0, 3)
}

func (s *suite) testConcurrentAppends(t *testing.T) {
	e := s.open(t)
	const goroutines, each = 16, 25
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	posOf := make([][]engine.Position, goroutines)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				p, err := e.Append(ctx, []engine.Event{ev("c/a", g*1000+i)})
				if err != nil {
					errs <- err
					return
				}
				posOf[g] = append(posOf[g], p[0])
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Append: %v", err)
	}
	dataAt := map[uint64]int{}
	var epoch string
	for g, ps := range posOf {
		for i, p := range ps {
			if epoch == "" {
				epoch = p.Epoch
			}
			if p.Epoch != epoch {
				t.Fatalf("positions of one topic in two epochs: %v and %v", epoch, p)
			}
			if i > 0 && p.Offset <= ps[i-1].Offset {
				t.Fatalf("goroutine %d: append %d got %v after %v; a later call must get a later offset", g, i, p, ps[i-1])
			}
			if prev, dup := dataAt[p.Offset]; dup {
				t.Fatalf("offset %d returned twice (to appends %d and %d)", p.Offset, prev, g*1000+i)
			}
			dataAt[p.Offset] = g*1000 + i
		}
	}
	all := make([]engine.Position, 0, len(dataAt))
	for off := range dataAt {
		all = append(all, engine.Position{Epoch: epoch, Offset: off})
	}
	slices.SortFunc(all, func(a, b engine.Position) int { return cmp.Compare(a.Offset, b.Offset) })
	s.checkAppended(t, "concurrent Appends", all, 1)
	got := readAll(t, e, "c/a", engine.Position{}, 64)
	checkRun(t, "Read after concurrent appends", got, all, 0, goroutines*each)
	for _, g := range got {
		checkEvent(t, g, "c/a", dataAt[g.Pos.Offset])
	}
}

// testDenseAcrossTopics: offsets are dense per topic (1, 2, 3, ... with no hole)
// even when appends to several topics interleave, from concurrent callers and
// within batches. An engine that handed out offsets of a log shared by several
// topics (a Kafka partition's offsets, a global counter) leaves holes in each:
// unless Dense, the offsets must be unique and increasing per topic, and Read
// and Subscribe give exactly the appended events, linked by Prev.
func (s *suite) testDenseAcrossTopics(t *testing.T) {
	e := s.open(t)
	const topics, goroutines, calls = 8, 8, 16
	topic := func(i int) string { return fmt.Sprintf("dense/%d", i%topics) }
	subs := make([]*collector, topics)
	for i := range subs {
		subs[i] = subscribe(t, e, topic(i))
	}
	ctx := ctxFor(t)
	var mu sync.Mutex
	dataAt := map[string]map[uint64]string{} // topic -> offset -> data appended there
	epochOf := map[string]string{}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			last := map[string]uint64{} // this caller's last offset per topic
			for i := range calls {
				// One to three events per call, spread over the topics; every
				// fourth call repeats a topic within the batch.
				var batch []engine.Event
				for j := range 1 + (g+i)%3 {
					batch = append(batch, ev(topic(g*5+i*3+j*7), g*10000+i*10+j))
				}
				if i%4 == 0 {
					batch = append(batch, ev(batch[0].Topic, g*10000+i*10+9))
				}
				pos, err := e.Append(ctx, batch)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if len(pos) != len(batch) {
					t.Errorf("Append(%d events) returned %d positions", len(batch), len(pos))
					return
				}
				mu.Lock()
				inCall := map[string]uint64{} // last offset of this call per topic
				for j, p := range pos {
					tp := batch[j].Topic
					if prev, ok := inCall[tp]; ok && s.h.Dense && p.Offset != prev+1 {
						t.Errorf("%s: events of one call got offsets %d then %d, want consecutive", tp, prev, p.Offset)
					} else if ok && p.Offset <= prev {
						t.Errorf("%s: events of one call got offsets %d then %d, want increasing", tp, prev, p.Offset)
					}
					inCall[tp] = p.Offset
					if epochOf[tp] == "" {
						epochOf[tp] = p.Epoch
						dataAt[tp] = map[uint64]string{}
					}
					if p.Epoch != epochOf[tp] {
						t.Errorf("%s: positions in two epochs: %v and %v", tp, epochOf[tp], p)
					}
					if prev, dup := dataAt[tp][p.Offset]; dup {
						t.Errorf("%s: offset %d returned twice (for %s and %s)", tp, p.Offset, prev, batch[j].Data)
					}
					dataAt[tp][p.Offset] = string(batch[j].Data)
					if p.Offset <= last[tp] {
						t.Errorf("%s: a later call got offset %d after %d", tp, p.Offset, last[tp])
					}
					last[tp] = p.Offset
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range topics {
		tp := topic(i)
		n := len(dataAt[tp])
		epoch := epochOf[tp]
		var all []engine.Position
		for _, off := range slices.Sorted(maps.Keys(dataAt[tp])) {
			all = append(all, engine.Position{Epoch: epoch, Offset: off})
		}
		if s.h.Dense {
			for off := uint64(1); off <= uint64(n); off++ {
				if _, ok := dataAt[tp][off]; !ok {
					t.Fatalf("%s: %d events appended got offsets %v; want 1..%d with no hole (offset %d missing)", tp, n, slices.Sorted(maps.Keys(dataAt[tp])), n, off)
				}
			}
		}
		if h := mustHead(t, e, tp); h != all[n-1] {
			t.Fatalf("Head(%s) = %v after %d appends, want %v", tp, h, n, all[n-1])
		}
		stored := readAll(t, e, tp, engine.Position{}, 100)
		checkRun(t, "Read "+tp, stored, all, 0, n)
		for _, g := range stored {
			if string(g.Data) != dataAt[tp][g.Pos.Offset] {
				t.Fatalf("%s: Read has %s at %v, Append put %s there", tp, g.Data, g.Pos, dataAt[tp][g.Pos.Offset])
			}
		}
		got := subs[i].wait(t, n)
		checkRun(t, "subscriber of "+tp, got, all, 0, n)
		for _, g := range got {
			if g.Topic != tp || string(g.Data) != dataAt[tp][g.Pos.Offset] {
				t.Fatalf("subscriber of %s got {%s %s} at %v, Append put %s there", tp, g.Topic, g.Data, g.Pos, dataAt[tp][g.Pos.Offset])
			}
		}
	}
}

func (s *suite) testSubscribeInOrder(t *testing.T) {
	e := s.open(t)
	pos := appendN(t, e, "s/a", 1, 3) // before the subscription: not delivered
	c := subscribe(t, e, "s/a")
	pos = append(pos, appendN(t, e, "s/a", 4, 20)...)
	s.checkAppended(t, "Append", pos, 1)
	got := c.wait(t, 20)
	checkRun(t, "subscriber", got, pos, 3, 20)
	for i, g := range got {
		checkEvent(t, g, "s/a", i+4)
	}
	// Nothing more arrives: no duplicates.
	pos = append(pos, appendN(t, e, "s/a", 24, 1)...)
	got = c.wait(t, 21)
	checkRun(t, "subscriber", got, pos, 3, 21)
}

func (s *suite) testSubscribeConcurrent(t *testing.T) {
	e := s.open(t)
	c := subscribe(t, e, "sc/a")
	const goroutines, each = 16, 25
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	var failed atomic.Value
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if _, err := e.Append(ctx, []engine.Event{ev("sc/a", g*1000+i)}); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("concurrent Append: %v", err)
	}
	got := c.wait(t, goroutines*each)
	stored := readAll(t, e, "sc/a", engine.Position{}, 100)
	all := make([]engine.Position, len(stored))
	for i, g := range stored {
		all[i] = g.Pos
	}
	s.checkAppended(t, "Read after concurrent appends", all, 1)
	checkRun(t, "subscriber under concurrent appends", got, all, 0, goroutines*each)
	for i := range got {
		if string(got[i].Data) != string(stored[i].Data) {
			t.Fatalf("subscriber got %s at %v, history has %s", got[i].Data, got[i].Pos, stored[i].Data)
		}
	}
}

// testSubscribeDuringAppends: a subscription made while appends are in flight
// (through this instance and, when there is one, a peer) delivers a contiguous
// run of offsets, without hole or duplicate, from its first event on, and that
// run covers every event after the Head read just after Subscribe returned. The
// hub relies on the latter: it subscribes, then starts a new stream at the Head,
// so an event after that Head that is not delivered is lost to the stream.
func (s *suite) testSubscribeDuringAppends(t *testing.T) {
	e := s.open(t)
	peer := e
	if s.h.OpenPeer != nil {
		peer = s.h.OpenPeer(t, e)
	}
	const topic = "sd/a"
	ctx := ctxFor(t)
	var appended atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	stopAppends := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopAppends()
	for g := range 4 {
		src := e
		if g%2 == 1 {
			src = peer
		}
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := src.Append(ctx, []engine.Event{ev(topic, g*100000+i)}); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				appended.Add(1)
			}
		})
	}
	type sub struct {
		c    *collector
		head engine.Position
		on   string
	}
	var subs []sub
	const subscribers, spacing = 8, 8
	for k := range subscribers {
		// Let a few more appends land, so that this Subscribe overlaps others.
		eventually(t, "appends progress", func() bool { return appended.Load() >= int64((k+1)*spacing) })
		on, inst := "this instance", e
		if k%2 == 1 && peer != e {
			on, inst = "the peer", peer
		}
		c := subscribe(t, inst, topic)
		subs = append(subs, sub{c: c, head: mustHead(t, inst, topic), on: on})
	}
	// More appends after the last Subscribe, so that it has events to miss.
	eventually(t, "appends progress", func() bool { return appended.Load() >= (subscribers+2)*spacing })
	stopAppends()
	if t.Failed() {
		return
	}
	last := mustHead(t, e, topic)
	stored := readAll(t, e, topic, engine.Position{}, 100)
	all := make([]engine.Position, len(stored))
	for i, g := range stored {
		all[i] = g.Pos
	}
	s.checkAppended(t, "Read", all, 1)
	if n := int64(len(stored)); n != appended.Load() || all[n-1] != last {
		t.Fatalf("Read %d events up to %v; %d were appended, Head is %v", n, all[n-1], appended.Load(), last)
	}
	checkRun(t, "Read", stored, all, 0, len(stored))
	at := indexOf(all)
	for k, sb := range subs {
		what := fmt.Sprintf("subscriber %d (on %s, Head %v just after Subscribe)", k, sb.on, sb.head)
		if sb.head.Epoch != last.Epoch || sb.head.Offset > last.Offset {
			t.Fatalf("%s: Head outside the log, whose head is %v", what, last)
		}
		got := sb.c.snapshot()
		if sb.head.Offset < last.Offset {
			got = sb.c.waitUntil(t, fmt.Sprintf("%s: deliver up to offset %d", what, last.Offset), func(got []engine.Event) bool {
				return len(got) > 0 && got[len(got)-1].Pos.Offset >= last.Offset
			})
		}
		var first int // index in all of the first event delivered
		for i, g := range got {
			j, ok := at[g.Pos.Offset]
			if !ok || g.Pos.Epoch != last.Epoch {
				t.Fatalf("%s: got an event at %v, not in the log (head %v)", what, g.Pos, last)
			}
			if i == 0 {
				first = j
			} else if j != first+i {
				t.Fatalf("%s: offset %d followed by %d: a hole, a duplicate or disorder (offsets %v)", what, got[i-1].Pos.Offset, g.Pos.Offset, offsets(got))
			}
			if want := stored[j]; g.Topic != topic || string(g.Data) != string(want.Data) || g.Prev != want.Prev {
				t.Fatalf("%s: got {%s %s prev %d} at %v, history has {%s prev %d} there", what, g.Topic, g.Data, g.Prev, g.Pos, want.Data, want.Prev)
			}
		}
		if len(got) > 0 && got[0].Prev > sb.head.Offset {
			t.Fatalf("%s: first event delivered is at offset %d, after %d: events after the Head, appended after Subscribe and Head returned, were never delivered", what, got[0].Pos.Offset, got[0].Prev)
		}
	}
}

func (s *suite) testCancel(t *testing.T) {
	e := s.open(t)
	var cancelled, late atomic.Bool
	var calls atomic.Int64
	cancel, err := e.Subscribe("x/a", func(engine.Event) {
		if cancelled.Load() {
			late.Store(true)
		}
		calls.Add(1)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Keep appending while cancelling, so a delivery is likely in flight.
	ctx := ctxFor(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.Append(ctx, []engine.Event{ev("x/a", i)}); err != nil {
				t.Errorf("Append: %v", err)
				return
			}
		}
	})
	deadline := time.Now().Add(Timeout)
	for calls.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	cancelled.Store(true)
	// Appends continue after cancel: fn must not run again.
	n := calls.Load()
	appendN(t, e, "x/a", 0, 20)
	close(stop)
	wg.Wait()
	// A later subscriber receives a later event: delivery has moved past them.
	c := subscribe(t, e, "x/a")
	appendN(t, e, "x/a", 0, 1)
	c.wait(t, 1)
	if late.Load() || calls.Load() != n {
		t.Fatalf("callback ran after cancel returned (%d calls before, %d after)", n, calls.Load())
	}
	cancel() // idempotent
}

func (s *suite) testTwoSubscribers(t *testing.T) {
	e := s.open(t)
	c1 := subscribe(t, e, "two/a")
	c2 := subscribe(t, e, "two/a")
	pos := appendN(t, e, "two/a", 1, 10)
	s.checkAppended(t, "Append", pos, 1)
	checkRun(t, "first subscriber", c1.wait(t, 10), pos, 0, 10)
	checkRun(t, "second subscriber", c2.wait(t, 10), pos, 0, 10)
}

func (s *suite) testNoCrossTalk(t *testing.T) {
	e := s.open(t)
	ca := subscribe(t, e, "ct/a")
	cb := subscribe(t, e, "ct/b")
	// Prefix and suffix relatives of the subscribed topics must not leak in.
	p1 := mustAppend(t, e, ev("ct/a/x", 1), ev("ct/ab", 1), ev("ct", 1), ev("ct/b", 1), ev("ct/a", 1), ev("ct/b", 2))
	gotA := ca.wait(t, 1)
	gotB := cb.wait(t, 2)
	// A marker event on each topic, appended last, bounds the wait.
	p2 := mustAppend(t, e, ev("ct/a", 2), ev("ct/b", 3))
	posA := []engine.Position{p1[4], p2[0]}
	posB := []engine.Position{p1[3], p1[5], p2[1]}
	gotA = ca.wait(t, 2)
	gotB = cb.wait(t, 3)
	for _, g := range gotA {
		if g.Topic != "ct/a" {
			t.Fatalf("subscriber of ct/a got an event of %q", g.Topic)
		}
	}
	for _, g := range gotB {
		if g.Topic != "ct/b" {
			t.Fatalf("subscriber of ct/b got an event of %q", g.Topic)
		}
	}
	checkRun(t, "ct/a", gotA, posA, 0, 2)
	checkRun(t, "ct/b", gotB, posB, 0, 3)
}

func wantGap(t *testing.T, err error, topic string, resume engine.Position) {
	t.Helper()
	if !errors.Is(err, engine.ErrGap) {
		t.Fatalf("err = %v, want ErrGap", err)
	}
	var gap *engine.GapError
	if !errors.As(err, &gap) {
		t.Fatalf("err = %v (%T), want a *engine.GapError", err, err)
	}
	if gap.Topic != topic || gap.Resume != resume {
		t.Fatalf("gap = {%q, resume %v}, want {%q, resume %v}", gap.Topic, gap.Resume, topic, resume)
	}
}

func (s *suite) testRetentionGap(t *testing.T) {
	e := s.h.Open(t, Options{MaxLen: 10})
	pos := appendN(t, e, "g/a", 1, 30)
	pos = append(pos, mustAppend(t, e, func() (b []engine.Event) {
		for i := 31; i <= 60; i++ {
			b = append(b, ev("g/a", i))
		}
		return b
	}()...)...)
	s.checkAppended(t, "Append", pos, 1)
	epoch := pos[0].Epoch
	// Events 51..60 are retained: Resume is the Prev of the 51st, the 50th.
	resume := pos[49]
	for _, after := range []uint64{0, pos[4].Offset, pos[47].Offset, pos[48].Offset, resume.Offset - 1} {
		_, err := e.Read(ctxFor(t), "g/a", engine.Position{Epoch: epoch, Offset: after}, 100)
		wantGap(t, err, "g/a", resume)
	}
	got := readAll(t, e, "g/a", resume, 100)
	checkRun(t, "Read after Resume", got, pos, 50, 10)
	for i, g := range got {
		checkEvent(t, g, "g/a", 51+i)
	}
	// Reading after the Prev of the oldest event kept, as a reader that
	// found it by Read from Position{} would, is gap-free: it is the
	// boundary of what is retained, not before it.
	oldest := readAll(t, e, "g/a", engine.Position{}, 1)[0]
	checkRun(t, "Read after the Prev of the oldest retained event", readAll(t, e, "g/a", engine.Position{Epoch: epoch, Offset: oldest.Prev}, 100), pos, 50, 10)
	if oldest.Prev+1 < oldest.Pos.Offset { // a cursor in the hole before it: no gap either
		checkRun(t, "Read after the hole before the oldest retained event", readAll(t, e, "g/a", engine.Position{Epoch: epoch, Offset: oldest.Prev + 1}, 100), pos, 50, 10)
	}
	got = readAll(t, e, "g/a", pos[54], 100)
	checkRun(t, "Read after the 55th", got, pos, 55, 5)
	if h := mustHead(t, e, "g/a"); h != pos[59] {
		t.Fatalf("Head = %v, want %v", h, pos[59])
	}
}

// clock is a settable time source for Aging engines.
type clock struct{ nanos atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.nanos.Load()) }
func (c *clock) advance(d time.Duration) { c.nanos.Add(int64(d)) }

// testRetentionByAge: events older than the engine's MaxAge are dropped, and
// reading after a cursor before them is a gap that resumes at the oldest event
// kept; the head is kept when every event of a topic expired, and offsets go
// on from it.
func (s *suite) testRetentionByAge(t *testing.T) {
	if s.h.Aging == nil {
		t.Skip("engine cannot trim by age on the suite's clock (Harness.Aging is nil)")
	}
	const maxAge = time.Hour
	c := &clock{}
	c.nanos.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	e := s.h.Aging.Open(t, maxAge, c.now)
	var old, mixed []engine.Position
	for i := 1; i <= 5; i++ { // events 1..5 of both topics at t0
		pos := mustAppend(t, e, ev("age/old", i), ev("age/mixed", i))
		old, mixed = append(old, pos[0]), append(mixed, pos[1])
	}
	epoch := old[0].Epoch
	c.advance(50 * time.Minute)
	mixed = append(mixed, appendN(t, e, "age/mixed", 6, 3)...) // events 6..8 at t0+50m
	s.checkAppended(t, "Append to age/old", old, 1)
	s.checkAppended(t, "Append to age/mixed", mixed, 1)
	s.h.Aging.Trim(t, e)
	checkRun(t, "Read age/mixed before anything is older than MaxAge", readAll(t, e, "age/mixed", engine.Position{}, 100), mixed, 0, 8)
	checkRun(t, "Read age/old before anything is older than MaxAge", readAll(t, e, "age/old", engine.Position{}, 100), old, 0, 5)

	c.advance(20 * time.Minute) // t0+70m: events 1..5 are older than MaxAge
	s.h.Aging.Trim(t, e)
	resume := mixed[4] // the Prev of the oldest event kept
	for _, after := range []uint64{mixed[0].Offset, mixed[2].Offset, resume.Offset - 1} {
		_, err := e.Read(ctxFor(t), "age/mixed", engine.Position{Epoch: epoch, Offset: after}, 100)
		wantGap(t, err, "age/mixed", resume)
	}
	for _, after := range []engine.Position{{}, resume} {
		got := readAll(t, e, "age/mixed", after, 100)
		checkRun(t, fmt.Sprintf("Read age/mixed after %v once 1..5 expired", after), got, mixed, 5, 3)
		for i, g := range got {
			checkEvent(t, g, "age/mixed", 6+i)
		}
	}
	// Every event of age/old expired: nothing to read, yet the head stays.
	oldHead := old[4]
	if h := mustHead(t, e, "age/old"); h != oldHead {
		t.Fatalf("Head(age/old) once all its events expired = %v, want %v", h, oldHead)
	}
	if got := readAll(t, e, "age/old", engine.Position{}, 100); len(got) != 0 {
		t.Fatalf("Read age/old from Position{} once all its events expired: offsets %v, want none", offsets(got))
	}
	_, err := e.Read(ctxFor(t), "age/old", old[2], 100)
	wantGap(t, err, "age/old", oldHead)
	if got := readAll(t, e, "age/old", oldHead, 100); len(got) != 0 {
		t.Fatalf("Read age/old after its head: offsets %v, want none", offsets(got))
	}
	old = append(old, mustAppend(t, e, ev("age/old", 6))...)
	s.checkAppended(t, "append to age/old after all its events expired", old, 1)
	checkRun(t, "Read age/old after a new append", readAll(t, e, "age/old", oldHead, 100), old, 5, 1)

	if s.h.Reopen == nil {
		return
	}
	e = s.h.Reopen(t, e)
	_, err = e.Read(ctxFor(t), "age/mixed", mixed[1], 100)
	wantGap(t, err, "age/mixed", resume)
	checkRun(t, "Read age/mixed after reopen", readAll(t, e, "age/mixed", engine.Position{}, 100), mixed, 5, 3)
}

func (s *suite) testOtherEpochGap(t *testing.T) {
	e := s.open(t)
	pos := appendN(t, e, "ep/a", 1, 5)
	epoch := pos[0].Epoch
	for _, after := range []engine.Position{
		{Epoch: epoch + "x", Offset: 3},
		{Epoch: "x" + epoch, Offset: 0},
		{Epoch: "", Offset: 3},
		{Epoch: epoch + "x", Offset: 10},
	} {
		_, err := e.Read(ctxFor(t), "ep/a", after, 100)
		wantGap(t, err, "ep/a", engine.Position{Epoch: epoch, Offset: 0})
	}
	// Also on a topic with no events: the cursor cannot be trusted.
	_, err := e.Read(ctxFor(t), "ep/empty", engine.Position{Epoch: epoch + "x", Offset: 3}, 100)
	if !errors.Is(err, engine.ErrGap) {
		t.Fatalf("Read of an empty topic after a foreign epoch: err = %v, want ErrGap", err)
	}
}

func (s *suite) testFanOut(t *testing.T) {
	if s.h.OpenPeer == nil {
		t.Skip("engine is single-node (Harness.OpenPeer is nil): no fan-out across instances to test")
	}
	e1 := s.open(t)
	e2 := s.h.OpenPeer(t, e1)
	c2 := subscribe(t, e2, "f/a")
	c1 := subscribe(t, e1, "f/a")
	var pos []engine.Position
	for i := 1; i <= 20; i++ {
		src := e1
		if i%3 == 0 {
			src = e2
		}
		pos = append(pos, mustAppend(t, src, ev("f/a", i))...)
	}
	s.checkAppended(t, "appends through two instances", pos, 1)
	for name, c := range map[string]*collector{"peer": c2, "origin": c1} {
		got := c.wait(t, 20)
		checkRun(t, "subscriber on "+name, got, pos, 0, 20)
		for i, g := range got {
			checkEvent(t, g, "f/a", i+1)
		}
	}
	if h := mustHead(t, e2, "f/a"); h != pos[19] {
		t.Fatalf("peer Head = %v, want %v", h, pos[19])
	}
	checkRun(t, "peer Read", readAll(t, e2, "f/a", engine.Position{}, 100), pos, 0, 20)
}

func (s *suite) testReopen(t *testing.T) {
	if s.h.Reopen == nil {
		t.Skip("engine cannot be reopened on the same back end (Harness.Reopen is nil)")
	}
	e := s.open(t)
	pos := appendN(t, e, "ro/a", 1, 5)
	e = s.h.Reopen(t, e)
	if h := mustHead(t, e, "ro/a"); h != pos[4] {
		t.Fatalf("Head after reopen = %v, want %v", h, pos[4])
	}
	pos = append(pos, appendN(t, e, "ro/a", 6, 2)...)
	s.checkAppended(t, "appends before and after reopen", pos, 1)
	got := readAll(t, e, "ro/a", engine.Position{}, 100)
	checkRun(t, "Read after reopen", got, pos, 0, 7)
	for i, g := range got {
		checkEvent(t, g, "ro/a", i+1)
	}
	// Subscriptions work on the reopened engine.
	c := subscribe(t, e, "ro/a")
	pos = append(pos, appendN(t, e, "ro/a", 8, 1)...)
	checkRun(t, "subscriber after reopen", c.wait(t, 1), pos, 7, 1)
}

func (s *suite) testClosed(t *testing.T) {
	e := s.open(t)
	appendN(t, e, "cl/a", 1, 1)
	var calls atomic.Int64
	cancel, err := e.Subscribe("cl/a", func(engine.Event) { calls.Add(1) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil (idempotent)", err)
	}
	ctx := ctxFor(t)
	if _, err := e.Append(ctx, []engine.Event{ev("cl/a", 2)}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Read(ctx, "cl/a", engine.Position{}, 10); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Head(ctx, "cl/a"); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Head after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Subscribe("cl/a", func(engine.Event) {}, nil); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	cancel() // cancelling after Close is harmless
	if n := calls.Load(); n != 0 {
		t.Errorf("subscription saw %d events, want 0", n)
	}
}

// testCloseDrains: Close lets the appends in flight finish, each with success or
// ErrClosed, and every append acknowledged before Close is durable: after a
// reopen of the same back end (when the harness can) it is read back at the
// position it was given, with its data, in a log without holes whose next
// offset is after all of them.
func (s *suite) testCloseDrains(t *testing.T) {
	e := s.open(t)
	first := e
	ctx := ctxFor(t)
	topics := []string{"cd/a", "cd/b"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := map[string]map[uint64]string{} // topic -> offset -> data
	epochOf := map[string]string{}
	count := 0
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				batch := []engine.Event{ev(topics[0], g*100000+i)}
				if g%2 == 1 { // a batch across topics: acknowledged whole or not at all
					batch = append(batch, ev(topics[1], g*100000+i))
				}
				pos, err := first.Append(ctx, batch)
				if errors.Is(err, engine.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append during Close: %v, want success or ErrClosed", err)
					return
				}
				if len(pos) != len(batch) {
					t.Errorf("Append(%d events) during Close returned %d positions", len(batch), len(pos))
					return
				}
				mu.Lock()
				for j, p := range pos {
					tp := batch[j].Topic
					if accepted[tp] == nil {
						accepted[tp] = map[uint64]string{}
						epochOf[tp] = p.Epoch
					}
					if p.Epoch != epochOf[tp] {
						t.Errorf("%s: positions in two epochs: %v and %v", tp, epochOf[tp], p)
					}
					if _, dup := accepted[tp][p.Offset]; dup {
						t.Errorf("%s: offset %d returned twice", tp, p.Offset)
					}
					accepted[tp][p.Offset] = string(batch[j].Data)
					count++
				}
				mu.Unlock()
			}
		})
	}
	defer func() {
		first.Close() // on an early failure, end the appends
		wg.Wait()
	}()
	eventually(t, "20 appends before Close", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return count >= 20
	})
	if s.h.Reopen == nil {
		if err := e.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wg.Wait()
		return
	}
	e = s.h.Reopen(t, e) // closes e while appends are in flight
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, tp := range topics {
		epoch := epochOf[tp]
		if epoch == "" {
			continue // nothing accepted on tp
		}
		got := readAll(t, e, tp, engine.Position{}, 100)
		have := map[uint64]engine.Event{}
		for _, g := range got {
			have[g.Pos.Offset] = g
		}
		var highest uint64
		for off, data := range accepted[tp] {
			highest = max(highest, off)
			g, ok := have[off]
			if !ok {
				t.Fatalf("%s: offset %d was accepted before Close but is missing after reopen (read offsets %v)", tp, off, offsets(got))
			}
			if g.Pos.Epoch != epoch || string(g.Data) != data {
				t.Fatalf("%s: offset %d was accepted with %s in epoch %s; after reopen it holds %s at %v", tp, off, data, epoch, g.Data, g.Pos)
			}
		}
		head := mustHead(t, e, tp)
		if head.Epoch != epoch || head.Offset < highest {
			t.Fatalf("%s: Head after reopen = %v, before the accepted offset %d of epoch %s", tp, head, highest, epoch)
		}
		if len(got) > 0 {
			// What is read is one run without holes up to the head: every
			// offset accepted is in it (checked above), linked by Prev.
			all := make([]engine.Position, len(got))
			for i, g := range got {
				all[i] = g.Pos
			}
			s.checkAppended(t, "Read "+tp+" after reopen", all, all[0].Offset)
			if all[len(all)-1] != head {
				t.Fatalf("%s: Read after reopen ends at %v, Head is %v", tp, all[len(all)-1], head)
			}
			checkPrev(t, "Read "+tp+" after reopen", got)
		}
		// The next offset is after every accepted one: none is handed out twice.
		p := mustAppend(t, e, ev(tp, -1))
		if next := head.Offset + 1; p[0].Epoch != epoch || p[0].Offset < next || (s.h.Dense && p[0].Offset != next) {
			t.Fatalf("%s: first append after reopen got %v, want {%s %d} (or later, for an engine that is not dense)", tp, p[0], epoch, next)
		}
	}
}

// testCloseRace: Close while every other call is being made from other
// goroutines neither panics nor hangs. The calls succeed or return ErrClosed;
// every call made after Close returned returns ErrClosed; no subscription
// callback runs after Close returned; cancel functions work before, during and
// after Close. Run's leak check then finds nothing left running.
//
// The race is run a few times on fresh engines, to give a narrow window a
// chance, most of them without appends: Close has then no append to wait for,
// so it reaches the back end while reads are still in flight.
func (s *suite) testCloseRace(t *testing.T) {
	for round := range 12 {
		appends := round%3 == 0
		name := fmt.Sprintf("round%d", round)
		if appends {
			name += "WithAppends"
		}
		if !t.Run(name, func(t *testing.T) { s.closeRaceRound(t, appends) }) {
			return
		}
	}
}

func (s *suite) closeRaceRound(t *testing.T, appends bool) {
	e := s.open(t)
	const topic = "cr/a"
	var batch []engine.Event
	for i := range 50 {
		batch = append(batch, ev(topic, i))
	}
	mustAppend(t, e, batch...)
	ctx := ctxFor(t)
	var closed atomic.Bool // Close has returned
	var late atomic.Int64  // callbacks that ran after Close returned
	fn := func(engine.Event) {
		if closed.Load() {
			late.Add(1)
		}
	}
	var cmu sync.Mutex
	var cancels []func() // subscriptions left open for Close to end
	if appends {
		// A slow subscriber, so that deliveries are still queued at Close.
		cancel, err := e.Subscribe(topic, func(ev engine.Event) {
			fn(ev)
			time.Sleep(100 * time.Microsecond)
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
	}
	ops := []struct {
		name string
		call func(i int) error
	}{
		{"Append", func(i int) error {
			_, err := e.Append(ctx, []engine.Event{ev(topic, i), ev("cr/b", i)})
			return err
		}},
		{"Read", func(int) error {
			_, err := e.Read(ctx, topic, engine.Position{}, 100)
			return err
		}},
		{"Head", func(int) error {
			_, err := e.Head(ctx, topic)
			return err
		}},
		{"Subscribe", func(i int) error {
			cancel, err := e.Subscribe(topic, fn, nil)
			if err != nil {
				return err
			}
			cmu.Lock()
			defer cmu.Unlock()
			if i%2 == 0 || len(cancels) >= 32 {
				cancel() // cancel racing Close
			} else {
				cancels = append(cancels, cancel)
			}
			return nil
		}},
	}
	if !appends {
		ops = ops[1:]
	}
	const perOp = 4
	succeeded := make([]atomic.Int64, len(ops))
	var wg sync.WaitGroup
	for k, op := range ops {
		for range perOp {
			wg.Go(func() {
				for i := 0; ; i++ {
					after := closed.Load()
					err := op.call(i)
					switch {
					case errors.Is(err, engine.ErrClosed):
						return
					case err != nil:
						t.Errorf("%s racing Close: %v, want success or ErrClosed", op.name, err)
						return
					case after:
						t.Errorf("%s called after Close returned succeeded, want ErrClosed", op.name)
						return
					}
					succeeded[k].Add(1)
				}
			})
		}
	}
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	closing := false
	defer func() {
		if !closing {
			e.Close() // on an early failure, end the callers
		}
		select {
		case <-ended:
		case <-time.After(Timeout):
		}
	}()
	eventually(t, "every call succeeding a few times before Close", func() bool {
		for k := range ops {
			if succeeded[k].Load() < 3 {
				return false
			}
		}
		return true
	})
	// Two Closes at once: both return once the engine is closed.
	closing = true
	closeErrs := make(chan error, 2)
	for range 2 {
		go func() { closeErrs <- e.Close() }()
	}
	timeout := time.After(Timeout)
	for i := range 2 {
		select {
		case err := <-closeErrs:
			if err != nil {
				t.Errorf("Close racing other calls: %v", err)
			}
			if i == 0 {
				closed.Store(true)
			}
		case <-timeout:
			t.Fatalf("Close racing other calls did not return within %v (deadlock?)", Timeout)
		}
	}
	select {
	case <-ended:
	case <-time.After(Timeout):
		t.Fatalf("calls racing Close still running %v after it returned (deadlock?)", Timeout)
	}
	cmu.Lock()
	for _, cancel := range cancels {
		cancel() // after Close: harmless
	}
	cmu.Unlock()
	if n := late.Load(); n != 0 {
		t.Fatalf("subscription callbacks ran %d times after Close returned", n)
	}
	for _, op := range ops {
		if err := op.call(-1); !errors.Is(err, engine.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op.name, err)
		}
	}
}

func (s *suite) testContext(t *testing.T) {
	e := s.open(t)
	pos := appendN(t, e, "cx/a", 1, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Append(ctx, []engine.Event{ev("cx/a", 3)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := e.Read(ctx, "cx/a", engine.Position{}, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Read with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := e.Head(ctx, "cx/a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Head with a cancelled context: %v, want context.Canceled", err)
	}
	if h := mustHead(t, e, "cx/a"); h != pos[1] {
		t.Errorf("Head = %v after an Append with a cancelled context, want %v (nothing appended)", h, pos[1])
	}
}

func (s *suite) testInvalidTopic(t *testing.T) {
	e := s.open(t)
	ctx := ctxFor(t)
	for _, topic := range []string{"", "a b", "new\nline", string(make([]byte, engine.MaxTopicLen+1))} {
		if _, err := e.Append(ctx, []engine.Event{{Topic: topic, Type: "test"}}); !errors.Is(err, engine.ErrInvalidTopic) {
			t.Errorf("Append(%q): %v, want ErrInvalidTopic", topic, err)
		}
		if _, err := e.Read(ctx, topic, engine.Position{}, 10); !errors.Is(err, engine.ErrInvalidTopic) {
			t.Errorf("Read(%q): %v, want ErrInvalidTopic", topic, err)
		}
		if _, err := e.Head(ctx, topic); !errors.Is(err, engine.ErrInvalidTopic) {
			t.Errorf("Head(%q): %v, want ErrInvalidTopic", topic, err)
		}
		if _, err := e.Subscribe(topic, func(engine.Event) {}, nil); !errors.Is(err, engine.ErrInvalidTopic) {
			t.Errorf("Subscribe(%q): %v, want ErrInvalidTopic", topic, err)
		}
	}
}
