package cluster

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-hub/herald/engine"
	_ "github.com/herald-hub/herald/engine/kafka"
	_ "github.com/herald-hub/herald/engine/nats"
	"github.com/herald-hub/herald/internal/natstest"
	"github.com/herald-hub/herald/internal/redistest"
)

// chaosBackEnd is the back end of one run of the chaos test: what the nodes
// are started on, how its broker is stopped and started again, and how the
// test reads the topics' heads and histories.
type chaosBackEnd struct {
	url     string // the engine URL of the nodes
	broker  string // its name in the test's log
	restart string // what the restart does, for the log
	// loses is whether the restart loses history: every topic then has a
	// new epoch and streams a herald.gap; otherwise neither may happen.
	loses       bool
	stop, start func()
	// heads reads the topics' heads; a topic whose head it could not read
	// is left out.
	heads func(t *testing.T, topics []string) map[string]engine.Position
	// history reads a topic's whole history, nil where offsets are dense
	// (Redis): the stream is then checked by offsets alone.
	history func(t *testing.T, tp string) []logEvent
}

func redisChaos(t *testing.T) *chaosBackEnd {
	rs := redistest.Start(t)
	rc := redisClient(t, rs.URL())
	return &chaosBackEnd{
		url:    rs.URL() + "?prefix=" + url.QueryEscape(chaosPrefix),
		broker: "Redis", restart: "empty", loses: true,
		stop: rs.Stop, start: rs.Run,
		heads: func(t *testing.T, topics []string) map[string]engine.Position { return readHeads(t, rc, topics) },
	}
}

// natsChaos runs on a private nats-server, started again on its store, or
// on an empty one (wipe).
func natsChaos(t *testing.T, wipe bool) *chaosBackEnd {
	ns := natstest.Start(t)
	be := &chaosBackEnd{
		url:    ns.URL() + "?stream=HERALD_CHAOS",
		broker: "nats-server", restart: "on its store",
		stop: ns.Stop, start: ns.Run,
	}
	if wipe {
		be.restart, be.loses = "on an empty store", true
		be.stop = func() { ns.Stop(); ns.Wipe() }
	}
	be.withEngine(t)
	return be
}

// kafkaChaos runs on kfake in the test's process, with a data dir and fixed
// ports, so that it can be closed and started again on both.
func kafkaChaos(t *testing.T) *chaosBackEnd {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var mu sync.Mutex
	var c *kfake.Cluster
	start := func() {
		var err error
		// The port may linger a moment after Close: retry for a while.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var nc *kfake.Cluster
			if nc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dir), kfake.Ports(port)); err == nil {
				mu.Lock()
				c = nc
				mu.Unlock()
				return
			}
			if time.Now().After(deadline) {
				break
			}
		}
		t.Fatalf("start kfake on %s and port %d: %v", dir, port, err)
	}
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		if c != nil {
			c.Close()
			c = nil
		}
	}
	start()
	t.Cleanup(stop)
	be := &chaosBackEnd{
		url:    fmt.Sprintf("kafka://127.0.0.1:%d?topic=chaos&partitions=8", port),
		broker: "kfake", restart: "on its data dir and port",
		stop: stop, start: start,
	}
	be.withEngine(t)
	return be
}

// withEngine has the test read heads and histories through an engine of its
// own on the nodes' URL (with the nodes' retention, so that opening it
// changes nothing), closed when the test ends.
func (be *chaosBackEnd) withEngine(t *testing.T) {
	e, err := engine.Open(be.url, engine.Config{DataDir: t.TempDir(), MaxLen: chaosRetention,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("open the test's engine on %s: %v", be.url, err)
	}
	t.Cleanup(func() { e.Close() })
	be.heads = func(t *testing.T, topics []string) map[string]engine.Position {
		heads := map[string]engine.Position{}
		for _, tp := range topics {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h, err := e.Head(ctx, tp)
			cancel()
			if err != nil {
				t.Logf("head of %s: %v", tp, err)
				return heads
			}
			heads[tp] = h
		}
		return heads
	}
	be.history = func(t *testing.T, tp string) []logEvent {
		var out []logEvent
		after := engine.Position{}
		for {
			var evs []engine.Event
			var err error
			for try := 0; try < 5; try++ { // a noisy machine: a slow answer is no verdict
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				evs, err = e.Read(ctx, tp, after, 1000)
				cancel()
				if err == nil {
					break
				}
				time.Sleep(time.Second)
			}
			if err != nil {
				t.Fatalf("read the history of %s after %v: %v", tp, after, err)
			}
			if len(evs) == 0 {
				return out
			}
			for _, ev := range evs {
				seq, err := strconv.ParseInt(string(ev.Data), 10, 64)
				if err != nil || ev.Topic != tp {
					seq = -1
				}
				out = append(out, logEvent{seq: seq, pos: ev.Pos, prev: ev.Prev})
			}
			after = evs[len(evs)-1].Pos
		}
	}
}

// logEvent is an event of a topic's history as the back end holds it.
type logEvent struct {
	seq  int64
	pos  engine.Position
	prev uint64
}

// checkHistory checks a topic's history read at the end (log) against its
// head and what was acknowledged: the history is the head's epoch from its
// start, each event linked to the one before by its Prev, each number once;
// every acknowledged event is in it at its position, but those of the epoch
// the broker lost (lost, empty when it lost nothing).
func checkHistory(log []logEvent, lost string, head engine.Position, acc map[int64]accepted) (errs []string) {
	prev := uint64(0)
	seen := map[int64]uint64{}
	at := map[uint64]int64{}
	for _, e := range log {
		switch {
		case e.seq == -1:
			errs = append(errs, fmt.Sprintf("an event at %v that is not the test's", e.pos))
		case e.pos.Epoch != head.Epoch:
			errs = append(errs, fmt.Sprintf("event %d at %v, not in the head's epoch %s", e.seq, e.pos, head.Epoch))
		case e.pos.Offset <= prev || e.prev != prev:
			errs = append(errs, fmt.Sprintf("event %d at %v with prev %d, after offset %d", e.seq, e.pos, e.prev, prev))
		}
		if o, ok := seen[e.seq]; ok && e.seq != -1 {
			errs = append(errs, fmt.Sprintf("event %d twice, at offsets %d and %d", e.seq, o, e.pos.Offset))
		}
		seen[e.seq], at[e.pos.Offset] = e.pos.Offset, e.seq
		prev = e.pos.Offset
	}
	if prev != head.Offset {
		errs = append(errs, fmt.Sprintf("the history ends at offset %d, the head is %v", prev, head))
	}
	for _, seq := range slices.Sorted(maps.Keys(acc)) {
		a := acc[seq]
		switch {
		case lost != "" && a.pos.Epoch == lost:
		case a.pos.Epoch != head.Epoch:
			errs = append(errs, fmt.Sprintf("event %d acknowledged at %v, an epoch that is neither the head's nor one lost", seq, a.pos))
		case at[a.pos.Offset] != seq:
			errs = append(errs, fmt.Sprintf("event %d acknowledged at %v, not in the history there", seq, a.pos))
		}
	}
	return errs
}

// checkLog checks what one stream received of one topic against the
// topic's history (log, in the head's epoch, checked by checkHistory), for
// engines whose offsets have holes: from start (the first connection's
// position) the stream has every event of the history, in order and once,
// and ends at the head. A herald.gap may move it from lost (the epoch the
// broker lost, empty when it lost nothing) to the head's epoch, and only
// that way, resuming before the history's first event. Within the lost
// epoch offsets must only increase; the events acknowledged there that the
// stream did not get before its gap are counted as lost with the broker,
// those it skipped before as missing. An event whose number the history or
// the publisher's acknowledgement puts at another position is a mismatch.
func checkLog(start engine.Position, items []item, lost string, head engine.Position, log []logEvent, acc map[int64]accepted) (st chaosStats, errs []string) {
	idx := make(map[uint64]int, len(log))
	for i, e := range log {
		idx[e.pos.Offset] = i
	}
	// firstAfter is the index of the first event of the history after offset o.
	firstAfter := func(o uint64) int {
		i, _ := slices.BinarySearchFunc(log, o+1, func(e logEvent, o uint64) int {
			return cmp.Compare(e.pos.Offset, o)
		})
		return i
	}
	cur := start
	next := 0 // in the head's epoch: the index of the event due next
	if cur.Epoch == head.Epoch {
		next = firstAfter(cur.Offset)
	}
	gotOld := map[uint64]bool{} // offsets received in the lost epoch
	lastOld, gapped := uint64(0), false
	if lost != "" && start.Epoch == lost {
		lastOld = start.Offset
	}
	for _, it := range items {
		if it.seq == -1 && !it.gap {
			errs = append(errs, "an event that is not the test's (bad id, topic or data)")
			continue
		}
		if it.gap {
			st.gaps++
			switch {
			case lost == "":
				errs = append(errs, fmt.Sprintf("herald.gap at %v though the broker lost nothing (resuming at %v)", cur, it.pos))
			case it.pos.Epoch == cur.Epoch:
				errs = append(errs, fmt.Sprintf("herald.gap within epoch %s (at offset %d, resuming at %d)", cur.Epoch, cur.Offset, it.pos.Offset))
			case cur.Epoch != lost:
				errs = append(errs, fmt.Sprintf("herald.gap from epoch %s, which the broker did not lose", cur.Epoch))
			}
			due := 0 // the first event of the history not yet received
			if cur.Epoch == head.Epoch {
				due = next
			}
			cur, gapped = it.pos, true
			if cur.Epoch == head.Epoch {
				next = firstAfter(cur.Offset)
				if next > due {
					st.missing += uint64(next - due)
					errs = append(errs, fmt.Sprintf("herald.gap resuming at %v, past %d events of the history not received", cur, next-due))
				}
			}
			continue
		}
		if it.pos.Epoch != cur.Epoch {
			errs = append(errs, fmt.Sprintf("event %d at %v after %v, without a herald.gap", it.seq, it.pos, cur))
			cur = it.pos
			if cur.Epoch == head.Epoch {
				next = firstAfter(cur.Offset)
			}
			st.delivered++
			continue
		}
		if it.pos.Offset <= cur.Offset {
			st.dups++
			if len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("event %d at offset %d again after offset %d", it.seq, it.pos.Offset, cur.Offset))
			}
			continue
		}
		if cur.Epoch == head.Epoch {
			i, ok := idx[it.pos.Offset]
			switch {
			case !ok:
				st.mismatched++
				errs = append(errs, fmt.Sprintf("event %d at %v, where the history holds no event", it.seq, it.pos))
				i = firstAfter(it.pos.Offset) - 1
			case log[i].seq != it.seq:
				st.mismatched++
				errs = append(errs, fmt.Sprintf("event %d at %v, where the history holds event %d", it.seq, it.pos, log[i].seq))
			}
			if i > next {
				st.missing += uint64(i - next)
				errs = append(errs, fmt.Sprintf("%d events of the history (offsets %d to %d) missing before event %d", i-next, log[next].pos.Offset, log[i-1].pos.Offset, it.seq))
			}
			next = i + 1
		} else if it.pos.Epoch == lost {
			lastOld = it.pos.Offset
			gotOld[it.pos.Offset] = true
		}
		cur = it.pos
		st.delivered++
		if a, ok := acc[it.seq]; ok && a.pos.Epoch == it.pos.Epoch && a.pos.Offset != it.pos.Offset {
			st.mismatched++
			errs = append(errs, fmt.Sprintf("event %d at offset %d, acknowledged at %d", it.seq, it.pos.Offset, a.pos.Offset))
		}
	}
	switch {
	case cur.Epoch != head.Epoch:
		st.missing += uint64(len(log))
		errs = append(errs, fmt.Sprintf("ends in epoch %s, never reached the head's epoch %s (%d events)", cur.Epoch, head.Epoch, len(log)))
	case next < len(log):
		st.missing += uint64(len(log) - next)
		errs = append(errs, fmt.Sprintf("ends at offset %d of epoch %s, %d events short of the head %d", cur.Offset, cur.Epoch, len(log)-next, head.Offset))
	}
	if lost != "" && head.Epoch != lost {
		for _, seq := range slices.Sorted(maps.Keys(acc)) {
			a := acc[seq]
			switch {
			case a.pos.Epoch != lost || a.pos.Offset <= start.Offset && start.Epoch == lost || gotOld[a.pos.Offset]:
			case a.pos.Offset < lastOld:
				st.missing++
				errs = append(errs, fmt.Sprintf("event %d, acknowledged at offset %d of the lost epoch, missing before offset %d", seq, a.pos.Offset, lastOld))
			case gapped:
				st.lostAnnounced++
			default:
				st.missing++
				errs = append(errs, fmt.Sprintf("event %d, acknowledged at offset %d of the lost epoch, missing and no herald.gap announced it", seq, a.pos.Offset))
			}
		}
	}
	return st, errs
}

// TestChaosCheckSparse checks the verdict where offsets have holes (NATS,
// Kafka) on made-up histories: the history's own check, then streams
// against it.
func TestChaosCheckSparse(t *testing.T) {
	p := func(e string, o uint64) engine.Position { return engine.Position{Epoch: e, Offset: o} }
	ev := func(seq int64, e string, o uint64) item { return item{topic: "t", seq: seq, pos: p(e, o)} }
	gap := func(e string, o uint64) item { return item{topic: "t", gap: true, pos: p(e, o)} }
	le := func(seq int64, o, prev uint64) logEvent { return logEvent{seq: seq, pos: p("a", o), prev: prev} }
	// Events 1 to 4 of topic t at offsets 3, 7, 8 and 12 of epoch a.
	hist := []logEvent{le(1, 3, 0), le(2, 7, 3), le(3, 8, 7), le(4, 12, 8)}
	acc := map[int64]accepted{1: {"t", p("a", 3)}, 2: {"t", p("a", 7)}, 3: {"t", p("a", 8)}, 4: {"t", p("a", 12)}}
	head := p("a", 12)

	for _, c := range []struct {
		name  string
		log   []logEvent
		head  engine.Position
		acc   map[int64]accepted
		fails bool
	}{
		{"complete", hist, head, acc, false},
		{"an acknowledged event missing", []logEvent{le(1, 3, 0), le(2, 7, 3), le(4, 12, 7)}, head, acc, true},
		{"a broken prev", []logEvent{le(1, 3, 0), le(2, 7, 3), le(3, 8, 5), le(4, 12, 8)}, head, acc, true},
		{"trimmed at the start", []logEvent{le(2, 7, 3), le(3, 8, 7), le(4, 12, 8)}, head, map[int64]accepted{}, true},
		{"a number twice", []logEvent{le(1, 3, 0), le(2, 7, 3), le(2, 8, 7), le(4, 12, 8)}, head, map[int64]accepted{}, true},
		{"short of the head", hist[:3], head, map[int64]accepted{}, true},
		{"another epoch", hist, p("b", 12), map[int64]accepted{}, true},
		{"acknowledged in the lost epoch", hist, head, map[int64]accepted{9: {"t", p("z", 4)}}, false},
	} {
		lost := ""
		if c.name == "acknowledged in the lost epoch" {
			lost = "z"
		}
		if errs := checkHistory(c.log, lost, c.head, c.acc); (len(errs) > 0) != c.fails {
			t.Errorf("history %s: %q, want failing %v", c.name, errs, c.fails)
		}
	}

	for _, c := range []struct {
		name  string
		start engine.Position
		items []item
		want  chaosStats
		fails bool
	}{
		{"complete", p("a", 0), []item{ev(1, "a", 3), ev(2, "a", 7), ev(3, "a", 8), ev(4, "a", 12)},
			chaosStats{delivered: 4}, false},
		{"from a later start", p("a", 7), []item{ev(3, "a", 8), ev(4, "a", 12)},
			chaosStats{delivered: 2}, false},
		{"a hole", p("a", 0), []item{ev(1, "a", 3), ev(3, "a", 8), ev(4, "a", 12)},
			chaosStats{delivered: 3, missing: 1}, true},
		{"the first missing", p("a", 0), []item{ev(2, "a", 7), ev(3, "a", 8), ev(4, "a", 12)},
			chaosStats{delivered: 3, missing: 1}, true},
		{"a duplicate", p("a", 0), []item{ev(1, "a", 3), ev(2, "a", 7), ev(2, "a", 7), ev(3, "a", 8), ev(4, "a", 12)},
			chaosStats{delivered: 4, dups: 1}, true},
		{"out of order", p("a", 0), []item{ev(1, "a", 3), ev(3, "a", 8), ev(2, "a", 7), ev(4, "a", 12)},
			chaosStats{delivered: 3, missing: 1, dups: 1}, true},
		{"short of the head", p("a", 0), []item{ev(1, "a", 3), ev(2, "a", 7), ev(3, "a", 8)},
			chaosStats{delivered: 3, missing: 1}, true},
		{"an offset the history lacks", p("a", 0), []item{ev(1, "a", 3), ev(2, "a", 7), ev(3, "a", 8), ev(5, "a", 10), ev(4, "a", 12)},
			chaosStats{delivered: 5, mismatched: 1}, true},
		{"another number at an offset", p("a", 0), []item{ev(1, "a", 3), ev(3, "a", 7), ev(2, "a", 8), ev(4, "a", 12)},
			chaosStats{delivered: 4, mismatched: 4}, true},
		{"a gap though nothing was lost", p("a", 0), []item{ev(1, "a", 3), gap("a", 7), ev(3, "a", 8), ev(4, "a", 12)},
			chaosStats{delivered: 3, gaps: 1, missing: 1}, true},
		{"a new epoch without a gap", p("a", 0), []item{ev(1, "a", 3), ev(2, "b", 7)},
			chaosStats{delivered: 2, missing: 4}, true},
	} {
		st, errs := checkLog(c.start, c.items, "", head, hist, acc)
		if st != c.want || (len(errs) > 0) != c.fails {
			t.Errorf("%s: %+v %q, want %+v, failing %v", c.name, st, errs, c.want, c.fails)
		}
	}

	// The broker lost epoch z (events 5 to 7 acknowledged at offsets 2, 5
	// and 9 there); epoch a is the history after it.
	lostAcc := map[int64]accepted{5: {"t", p("z", 2)}, 6: {"t", p("z", 5)}, 7: {"t", p("z", 9)}}
	for k, v := range acc {
		lostAcc[k] = v
	}
	all := []item{ev(1, "a", 3), ev(2, "a", 7), ev(3, "a", 8), ev(4, "a", 12)}
	for _, c := range []struct {
		name  string
		items []item
		want  chaosStats
		fails bool
	}{
		{"complete", append([]item{ev(5, "z", 2), ev(6, "z", 5), ev(7, "z", 9), gap("a", 0)}, all...),
			chaosStats{delivered: 7, gaps: 1}, false},
		{"lost behind a gap", append([]item{ev(5, "z", 2), gap("a", 0)}, all...),
			chaosStats{delivered: 5, gaps: 1, lostAnnounced: 2}, false},
		{"a hole in the lost epoch", append([]item{ev(5, "z", 2), ev(7, "z", 9), gap("a", 0)}, all...),
			chaosStats{delivered: 6, gaps: 1, missing: 1}, true},
		{"lost without a gap", append([]item{ev(5, "z", 2)}, all...),
			chaosStats{delivered: 5, missing: 2}, true},
		{"never left the lost epoch", []item{ev(5, "z", 2), ev(6, "z", 5), ev(7, "z", 9)},
			chaosStats{delivered: 3, missing: 4}, true},
		{"a gap resuming late", append([]item{ev(5, "z", 2), ev(6, "z", 5), ev(7, "z", 9), gap("a", 3)}, all[1:]...),
			chaosStats{delivered: 6, gaps: 1, missing: 1}, true},
		{"a gap within the new epoch", append([]item{ev(5, "z", 2), ev(6, "z", 5), ev(7, "z", 9), gap("a", 0), ev(1, "a", 3), gap("a", 3)}, all[1:]...),
			chaosStats{delivered: 7, gaps: 2}, true},
	} {
		st, errs := checkLog(p("z", 0), c.items, "z", head, hist, lostAcc)
		if st != c.want || (len(errs) > 0) != c.fails {
			t.Errorf("lost epoch, %s: %+v %q, want %+v, failing %v", c.name, st, errs, c.want, c.fails)
		}
	}
}

// TestClusterQuietTopicBrokerRestart is the quiet-topic case on the engines
// whose broker the nodes stay connected to: one event is published on node
// B to a topic on which nothing else is published, and the broker is killed
// right after it acknowledged the event, then started again on its store.
// No later event can reveal a lost fan-out, so node A's stream gets the event
// only if A's engine, once connected again, has its subscribers re-read, or
// its reader goes on from where it was. On NATS, node A reaches the server
// through a proxy that drops what the server sends from right before the
// publish (natstest.Blackhole's Deafen), so that the republished message is
// surely lost and the event can only come by the re-read after A's
// connection, closed by the restart, is dialled again. On Kafka the reader
// never loses fan-out while it runs: it fetches on after the restart. Three
// rounds, each within quietRestartBound.
func TestClusterQuietTopicBrokerRestart(t *testing.T) {
	const quietRestartBound = 20 * time.Second
	for _, v := range []struct {
		name string
		open func(t *testing.T) (be *chaosBackEnd, urlA string, deafen func() int)
	}{
		{"nats", func(t *testing.T) (*chaosBackEnd, string, func() int) {
			be := natsChaos(t, false)
			u, err := url.Parse(be.url)
			if err != nil {
				t.Fatal(err)
			}
			px := natstest.NewBlackhole(t, u.Host)
			return be, px.URL() + "?" + u.RawQuery, px.Deafen
		}},
		{"kafka", func(t *testing.T) (*chaosBackEnd, string, func() int) {
			be := kafkaChaos(t)
			return be, be.url, nil
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			be, urlA, deafen := v.open(t)
			bin := buildHerald(t)
			a := startNode(t, bin, urlA)
			b := startNode(t, bin, be.url)
			reread := 0
			for round := range 3 {
				tp := fmt.Sprintf("quiet/%d", round)
				s := a.stream(t, tp, "")
				time.Sleep(500 * time.Millisecond) // past the hub's subscribe
				before := nodeMetrics(t, a.addr)
				if deafen != nil {
					if n := deafen(); n == 0 {
						t.Fatal("node A has no connection to NATS through the proxy")
					}
				}
				sent := time.Now()
				b.publish(t, tp, "only")
				be.stop()
				time.Sleep(500 * time.Millisecond)
				be.start()
				ev := s.next(t, quietRestartBound)
				took := time.Since(sent)
				if ev.data != "only" || ev.typ != "" {
					t.Fatalf("round %d: got %+v, want the event published before the restart", round, ev)
				}
				after := nodeMetrics(t, a.addr)
				how := "by fan-out"
				if after["herald_recovered_events_total"] > before["herald_recovered_events_total"] {
					how = "by a re-read"
					reread++
				}
				t.Logf("round %d: the quiet topic's event reached node A's stream %v after its publish (%s killed right after; bound %v), %s; A's engine reconnects %v, lost topics %v",
					round, took.Round(time.Millisecond), be.broker, quietRestartBound, how,
					after["herald_engine_reconnects_total"]-before["herald_engine_reconnects_total"],
					after["herald_engine_lost_topics_total"]-before["herald_engine_lost_topics_total"])
				s.close()
			}
			if deafen != nil && reread == 0 {
				t.Error("the event never came by the re-read, though its fan-out to node A was dropped")
			}
		})
	}
}
