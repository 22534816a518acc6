package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
	"github.com/herald-hub/herald/internal/redistest"
)

// The chaos test's shape. HERALD_CLUSTER_DURATION sets how long events are
// published (the kill, the restarts and the Redis restart are placed within
// it); HERALD_CLUSTER_RATE the publishes per second, over every publisher.
const (
	chaosNodes       = 3
	chaosClients     = 300
	chaosRooms       = 10
	chaosPublishers  = 16
	chaosPrefix      = "chaos:"
	defaultChaosTime = 15 * time.Second // at least: see the chaos's timeline
	defaultChaosRate = 150
	// chaosPublishBound is how long one event is retried, over random
	// targets, before it is recorded as not accepted.
	chaosPublishBound = 20 * time.Second
	// chaosRetention is the events kept per topic: all of them.
	chaosRetention = 10_000_000
)

func chaosSettings(t *testing.T) (time.Duration, float64) {
	t.Helper()
	d, rate := defaultChaosTime, float64(defaultChaosRate)
	if v := os.Getenv("HERALD_CLUSTER_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 10*time.Second {
			t.Fatalf("HERALD_CLUSTER_DURATION=%q: want a Go duration of 10s at least", v)
		}
	}
	if v := os.Getenv("HERALD_CLUSTER_RATE"); v != "" {
		var err error
		if rate, err = strconv.ParseFloat(v, 64); err != nil || rate <= 0 || rate > 5000 {
			t.Fatalf("HERALD_CLUSTER_RATE=%q: want publishes per second, above 0 and at most 5000", v)
		}
	}
	return d, rate
}

// TestClusterChaos runs three herald processes on one back end behind the
// real nginx, with 300 streams of the Go client through nginx (each on its
// own users/<n> topic and one of ten rooms/<k>), while publishers send
// numbered events to random nodes, directly and through nginx. Meanwhile one
// node is SIGKILLed and started again on the same address and data dir, and
// later the broker is killed and started again. It runs on each engine
// that shares a log between nodes:
//
//   - redis: a private redis-server, started again empty: every topic gets a
//     new epoch, and streams a herald.gap;
//   - nats: a private nats-server -js, started again on its store: nothing
//     may be lost, and no stream may see a gap;
//   - nats-wipe: the same, started again on an empty store: new epochs and
//     gaps, as on Redis;
//   - kafka: kfake in the test process, closed and started again on its data
//     dir and ports: nothing may be lost, no gap.
//
// At the end every stream must hold, per topic, every event of the topic's
// log from where it started, in order and once. On Redis offsets are dense:
// within an epoch they follow each other (checkTopic). On NATS and Kafka a
// topic's offsets have holes (the log is shared by topics), so the test
// reads each topic's history from the back end (an engine of its own on the
// same URL) and checks each stream against it (checkHistory, checkLog). The
// only break allowed is a herald.gap from an epoch the broker lost to the new
// one, and only events of the lost epoch may be missing, behind that gap.
func TestClusterChaos(t *testing.T) {
	_, err := os.Stat(nginxPath)
	need(t, err == nil, nginxPath+" is missing: apt-get install nginx to run the cluster chaos test")
	dur, rate := chaosSettings(t)
	for _, v := range []struct {
		name string
		open func(t *testing.T) *chaosBackEnd
	}{
		{"redis", redisChaos},
		{"nats", func(t *testing.T) *chaosBackEnd { return natsChaos(t, false) }},
		{"nats-wipe", func(t *testing.T) *chaosBackEnd { return natsChaos(t, true) }},
		{"kafka", kafkaChaos},
	} {
		t.Run(v.name, func(t *testing.T) { runChaos(t, v.open(t), dur, rate) })
	}
}

func runChaos(t *testing.T, be *chaosBackEnd, dur time.Duration, rate float64) {
	began := time.Now()
	bin := buildHerald(t)
	var nodes []*node
	var addrs []string
	for range chaosNodes {
		// Streams end after about 4s (-max-lifetime), so that clients come and
		// go all along, the restarted node takes some, and some are between
		// two connections when the broker dies.
		n := startNode(t, bin, be.url, "-retention-count", strconv.Itoa(chaosRetention), "-max-connections-per-ip", "0", "-max-lifetime", "4s")
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr)
	}
	nx := startNginx(t, addrs...)

	// The streams, each from one of 50 loopback source addresses where the
	// system has them (Linux routes all of 127.0.0.0/8 to the loopback).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sources := 50
	if l, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Logf("no loopback address but 127.0.0.1 (%v): every stream comes from it", err)
		sources = 0
	} else {
		l.Close()
	}
	transports := make([]*http.Transport, max(sources, 1))
	for i := range transports {
		d := &net.Dialer{Timeout: 5 * time.Second}
		if sources > 0 {
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
		}
		transports[i] = &http.Transport{DialContext: d.DialContext, ResponseHeaderTimeout: 10 * time.Second}
		t.Cleanup(transports[i].CloseIdleConnections)
	}
	clients := make([]*chaosClient, chaosClients)
	for i := range clients {
		c := &chaosClient{topics: [2]string{"users/" + strconv.Itoa(i), "rooms/" + strconv.Itoa(i%chaosRooms)}, epochs: map[string]string{}, done: make(chan struct{})}
		q := url.Values{"topic": c.topics[:]}
		c.s = client.Dial(ctx, client.Config{
			URL:         "http://" + nx.addr + "/v1/events?" + q.Encode(),
			Header:      http.Header{"Authorization": {"Bearer " + publishKey}},
			HTTPClient:  &http.Client{Transport: transports[i%len(transports)]},
			MinBackoff:  50 * time.Millisecond,
			MaxBackoff:  time.Second,
			IdleTimeout: 10 * time.Second, // heartbeats every second
		})
		go c.read()
		clients[i] = c
	}
	t.Cleanup(func() {
		cancel()
		for _, c := range clients {
			c.s.Close()
			<-c.done
		}
	})
	waitUntil(t, 60*time.Second, "every stream connected through nginx", func() bool {
		for _, c := range clients {
			if c.s.LastEventID() == "" {
				return false
			}
		}
		return true
	})
	for _, c := range clients {
		if err := c.setStart(); err != nil {
			t.Fatal(err)
		}
	}
	// Every topic has its first epoch now (created when the streams read its
	// head): the epoch that a broker restarting empty loses.
	var topics []string
	for i := range chaosClients {
		topics = append(topics, "users/"+strconv.Itoa(i))
	}
	for k := range chaosRooms {
		topics = append(topics, "rooms/"+strconv.Itoa(k))
	}
	var oldHeads map[string]engine.Position
	waitUntil(t, 30*time.Second, "the heads of every topic read", func() bool {
		oldHeads = be.heads(t, topics)
		return len(oldHeads) == len(topics)
	})
	t.Logf("%d nodes, nginx on %s, %d streams connected after %v", chaosNodes, nx.addr, chaosClients, time.Since(began).Round(time.Millisecond))

	// The publishers.
	bases := []string{"http://" + nx.addr}
	for _, n := range nodes {
		bases = append(bases, "http://"+n.addr)
	}
	pub := &chaosPublisher{t: t, bases: bases, topics: topics, accepted: map[int64]accepted{},
		hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: chaosPublishers}}}
	t.Cleanup(pub.hc.CloseIdleConnections)
	pubCtx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()
	var pubs sync.WaitGroup
	pubs.Go(func() { pub.run(pubCtx, ctx, rate) })
	// On an early end, the publishers stop (ctx ends their publishes) before
	// the test does: they report through t.
	t.Cleanup(func() { cancel(); pubs.Wait() })

	// The chaos. A tenth of the way in, a node is SIGKILLed and started
	// again; nginx leaves it out for fail_timeout (10s) after it refused a
	// connection, then gives it streams again. Once it holds streams, and
	// half the time has passed, the broker is killed and started again;
	// publishing goes on for the rest of the time, 4s at least.
	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(time.Millisecond) }
	sleepUntil := func(at time.Duration) { time.Sleep(time.Until(start.Add(at))) }
	victim := nodes[len(nodes)-1]
	id := nodeID(t, victim.addr)
	sleepUntil(dur / 10)
	t.Logf("%v: SIGKILL node %s (%s), holding %v streams", since(), victim.addr, id, nodeMetrics(t, victim.addr)["herald_connections"])
	victim.kill(t)
	time.Sleep(1500 * time.Millisecond)
	victim.restart(t)
	if again := nodeID(t, victim.addr); again != id {
		t.Errorf("the restarted node's id is %q, want %q (same data dir)", again, id)
	}
	t.Logf("%v: node %s restarted", since(), victim.addr)
	sleepUntil(dur / 2)
	waitUntil(t, 30*time.Second, "nginx gives the restarted node streams again", func() bool {
		return nodeMetrics(t, victim.addr)["herald_connections"] > 0
	})
	var held []string
	for _, n := range nodes {
		held = append(held, fmt.Sprintf("%s: %v", n.addr, nodeMetrics(t, n.addr)["herald_connections"]))
	}
	t.Logf("%v: %s killed; streams per node: %s", since(), be.broker, strings.Join(held, ", "))
	be.stop()
	time.Sleep(1500 * time.Millisecond)
	be.start()
	t.Logf("%v: %s started again, %s", since(), be.broker, be.restart)
	sleepUntil(max(dur, since()+max(dur*3/10, 4*time.Second)))
	stopPublishing()
	waitDone(t, &pubs, chaosPublishBound+10*time.Second, "the publishers")
	t.Logf("%v: publishing stopped", since())

	// Every stream must reach its topics' heads.
	var heads map[string]engine.Position
	drained := time.Now()
	caught := func() bool {
		heads = be.heads(t, topics)
		if len(heads) != len(topics) {
			return false
		}
		for _, c := range clients {
			for _, tp := range c.topics {
				if c.position(tp) != heads[tp] {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !caught() && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("streams caught up with the heads %v after publishing stopped (or gave up)", time.Since(drained).Round(time.Millisecond))
	for _, c := range clients {
		c.s.Close()
		<-c.done
	}

	// The verdict. Where offsets have holes, each topic's history is read
	// from the back end and checked first, then each stream against it.
	var sum chaosStats
	var problems []string
	var logs map[string][]logEvent
	if be.history != nil {
		logs = map[string][]logEvent{}
		for _, tp := range topics {
			logs[tp] = be.history(t, tp)
			lost := ""
			if be.loses {
				lost = oldHeads[tp].Epoch
			}
			for _, e := range checkHistory(logs[tp], lost, heads[tp], pub.acceptedOn(tp)) {
				problems = append(problems, fmt.Sprintf("the history of %s: %s", tp, e))
			}
		}
	}
	for i, c := range clients {
		for _, tp := range c.topics {
			var st chaosStats
			var errs []string
			if be.history == nil {
				st, errs = checkTopic(c.start[tp], c.itemsOf(tp), oldHeads[tp].Epoch, heads[tp], pub.acceptedOn(tp))
			} else {
				lost := ""
				if be.loses {
					lost = oldHeads[tp].Epoch
				}
				st, errs = checkLog(c.start[tp], c.itemsOf(tp), lost, heads[tp], logs[tp], pub.acceptedOn(tp))
			}
			sum.add(st)
			for _, e := range errs {
				problems = append(problems, fmt.Sprintf("stream %d, %s: %s", i, tp, e))
			}
		}
		sum.reconnects += c.s.Reconnects()
		if err := c.s.Err(); err != nil {
			problems = append(problems, fmt.Sprintf("stream %d stopped: %v", i, err))
		}
	}
	newEpochs := 0
	for _, tp := range topics {
		if heads[tp].Epoch != oldHeads[tp].Epoch {
			newEpochs++
		}
	}
	t.Logf("clients=%d topics=%d (new epoch after the broker restart: %d) published=%d accepted=%d not_accepted=%d publish_retries=%d throttled_ticks=%d",
		chaosClients, len(topics), newEpochs, pub.published.Load(), pub.nAccepted.Load(), pub.notAccepted.Load(), pub.retries.Load(), pub.throttled.Load())
	t.Logf("delivered=%d reconnects=%d gaps=%d lost_with_broker_announced=%d duplicates=%d missing=%d mismatched=%d",
		sum.delivered, sum.reconnects, sum.gaps, sum.lostAnnounced, sum.dups, sum.missing, sum.mismatched)
	for _, n := range nodes {
		m := nodeMetrics(t, n.addr)
		t.Logf("node %s: %s", n.addr, metricsLine(m))
		if v := m["herald_engine_contract_violations_total"]; v != 0 {
			t.Errorf("node %s saw %v breaches of the engine contract (see its log)", n.addr, v)
		}
	}
	if sum.dups != 0 || sum.missing != 0 || sum.mismatched != 0 || len(problems) > 0 {
		for i, p := range problems {
			if i == 30 {
				t.Errorf("... and %d more", len(problems)-30)
				break
			}
			t.Error(p)
		}
		t.Errorf("duplicates=%d missing=%d mismatched=%d, want 0 each", sum.dups, sum.missing, sum.mismatched)
	}
	switch {
	case be.loses && newEpochs != len(topics):
		t.Errorf("%d of %d topics have a new epoch after the %s restart, want all (every one is read or written after it)", newEpochs, len(topics), be.broker)
	case be.loses && sum.gaps == 0:
		t.Errorf("no herald.gap after %s lost every topic's history", be.broker)
	case !be.loses && newEpochs != 0:
		t.Errorf("%d of %d topics have a new epoch after the %s restart, want none (it kept its store)", newEpochs, len(topics), be.broker)
	case !be.loses && sum.gaps != 0:
		t.Errorf("%d herald.gap after the %s restart, want none (it kept its store)", sum.gaps, be.broker)
	}
	if pub.nAccepted.Load() < int64(rate*dur.Seconds()/4) {
		t.Errorf("only %d publishes accepted in %v at %v/s", pub.nAccepted.Load(), dur, rate)
	}
	t.Logf("whole test: %v", time.Since(began).Round(time.Millisecond))
}

// chaosClient is one stream and what it received.
type chaosClient struct {
	topics [2]string
	s      *client.Stream
	done   chan struct{}

	mu     sync.Mutex
	start  map[string]engine.Position // per topic, at the first connection
	items  []item
	last   map[string]engine.Position // per topic, after the last item
	epochs map[string]string          // interned epochs
}

// item is an event or a herald.gap as a stream received it: for an event,
// its topic, number and position; for a gap, one item per topic it names,
// with the position it resumes from.
type item struct {
	topic string
	gap   bool
	seq   int64
	pos   engine.Position
}

func (c *chaosClient) read() {
	defer close(c.done)
	for ev := range c.s.Events() {
		c.mu.Lock()
		c.add(ev)
		c.mu.Unlock()
	}
}

// add records ev; an event it cannot read is recorded with seq -1 and an
// empty topic, which the check reports.
func (c *chaosClient) add(ev client.Event) {
	cur, err := hub.ParseCursor(ev.ID)
	if err != nil {
		c.items = append(c.items, item{seq: -1})
		return
	}
	posOf := func(tp string) engine.Position {
		p, _ := cur.Lookup(tp)
		if e, ok := c.epochs[p.Epoch]; ok {
			p.Epoch = e
		} else {
			c.epochs[p.Epoch] = p.Epoch
		}
		return p
	}
	if c.last == nil {
		c.last = map[string]engine.Position{}
	}
	if ev.Type == hub.GapType {
		var g struct{ Topics []string }
		if json.Unmarshal([]byte(ev.Data), &g) != nil || len(g.Topics) == 0 {
			c.items = append(c.items, item{seq: -1})
			return
		}
		for _, tp := range g.Topics {
			p := posOf(tp)
			c.items = append(c.items, item{topic: tp, gap: true, pos: p})
			c.last[tp] = p
		}
		return
	}
	seq, err := strconv.ParseInt(ev.Data, 10, 64)
	if err != nil || ev.Topic == "" {
		seq = -1
	}
	p := posOf(ev.Topic)
	c.items = append(c.items, item{topic: ev.Topic, seq: seq, pos: p})
	c.last[ev.Topic] = p
}

// setStart records the positions of the first connection's cursor.
func (c *chaosClient) setStart() error {
	cur, err := hub.ParseCursor(c.s.LastEventID())
	if err != nil {
		return fmt.Errorf("the first cursor of a stream: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.items) > 0 {
		return errors.New("a stream received events before publishing started")
	}
	c.start = map[string]engine.Position{}
	for _, tp := range c.topics {
		p, ok := cur.Lookup(tp)
		if !ok {
			return fmt.Errorf("the first cursor lacks %s", tp)
		}
		c.start[tp] = p
	}
	return nil
}

func (c *chaosClient) position(tp string) engine.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.last[tp]; ok {
		return p
	}
	return c.start[tp]
}

func (c *chaosClient) itemsOf(tp string) []item {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []item
	for _, it := range c.items {
		if it.topic == tp || it.seq == -1 && !it.gap {
			out = append(out, it)
		}
	}
	return out
}

// accepted is a publish answered 2xx: where Herald said it stored the event.
type accepted struct {
	topic string
	pos   engine.Position
}

type chaosStats struct {
	delivered, gaps, lostAnnounced, dups, missing, mismatched uint64
	reconnects                                                int
}

func (s *chaosStats) add(o chaosStats) {
	s.delivered += o.delivered
	s.gaps += o.gaps
	s.lostAnnounced += o.lostAnnounced
	s.dups += o.dups
	s.missing += o.missing
	s.mismatched += o.mismatched
}

// checkTopic checks what one stream received of one topic: from start (the
// first connection's position), each event's offset follows the one before
// in the same epoch; a gap may move the stream from old (the epoch Redis
// lost) to another epoch, and only that way; the stream ends at head. Events
// accepted in the old epoch that the stream did not get before its gap are
// counted as lost with Redis; any other hole is missing, any repeat a
// duplicate, and an event whose number Herald acknowledged at another
// position of the same epoch a mismatch.
func checkTopic(start engine.Position, items []item, old string, head engine.Position, acc map[int64]accepted) (st chaosStats, errs []string) {
	cur := start
	// entry is, per epoch, the offset the stream entered it after: events
	// at or before it were never sent to the stream.
	entry := map[string]uint64{start.Epoch: start.Offset}
	lastOld, gapped := uint64(0), false
	if start.Epoch == old {
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
			case it.pos.Epoch == cur.Epoch:
				errs = append(errs, fmt.Sprintf("herald.gap within epoch %s (at offset %d, resuming at %d)", cur.Epoch, cur.Offset, it.pos.Offset))
			case cur.Epoch != old:
				errs = append(errs, fmt.Sprintf("herald.gap from epoch %s, which Redis did not lose", cur.Epoch))
			}
			cur, gapped = it.pos, true
			entry[cur.Epoch] = cur.Offset
			continue
		}
		if it.pos.Epoch != cur.Epoch {
			errs = append(errs, fmt.Sprintf("event %d of epoch %s at offset %d after epoch %s at %d, without a herald.gap", it.seq, it.pos.Epoch, it.pos.Offset, cur.Epoch, cur.Offset))
			cur = it.pos
			st.delivered++
			continue
		}
		switch {
		case it.pos.Offset <= cur.Offset:
			st.dups++
			if len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("event %d at offset %d again after offset %d", it.seq, it.pos.Offset, cur.Offset))
			}
			continue
		case it.pos.Offset > cur.Offset+1:
			st.missing += it.pos.Offset - cur.Offset - 1
			errs = append(errs, fmt.Sprintf("offsets %d to %d of epoch %s missing before event %d", cur.Offset+1, it.pos.Offset-1, cur.Epoch, it.seq))
		}
		cur = it.pos
		if cur.Epoch == old {
			lastOld = cur.Offset
		}
		st.delivered++
		if a, ok := acc[it.seq]; ok && a.pos.Epoch == it.pos.Epoch && a.pos.Offset != it.pos.Offset {
			st.mismatched++
			errs = append(errs, fmt.Sprintf("event %d at offset %d, acknowledged at %d", it.seq, it.pos.Offset, a.pos.Offset))
		}
	}
	switch {
	case cur.Epoch == head.Epoch:
		if cur.Offset < head.Offset {
			st.missing += head.Offset - cur.Offset
			errs = append(errs, fmt.Sprintf("ends at offset %d of epoch %s, short of the head %d", cur.Offset, cur.Epoch, head.Offset))
		}
	default:
		st.missing += head.Offset
		errs = append(errs, fmt.Sprintf("ends in epoch %s, never reached the head's epoch %s (offset %d)", cur.Epoch, head.Epoch, head.Offset))
	}
	for seq, a := range acc {
		if e, ok := entry[a.pos.Epoch]; ok && a.pos.Epoch == head.Epoch && a.pos.Offset <= e {
			st.missing++
			errs = append(errs, fmt.Sprintf("event %d, acknowledged at offset %d of epoch %s, before where the stream entered it (%d)", seq, a.pos.Offset, a.pos.Epoch, e))
		}
	}
	if head.Epoch != old {
		for seq, a := range acc {
			if a.pos.Epoch != old || a.pos.Offset <= lastOld {
				continue
			}
			if gapped {
				st.lostAnnounced++
			} else {
				st.missing++
				errs = append(errs, fmt.Sprintf("event %d, acknowledged at offset %d of the lost epoch, missing and no herald.gap announced it", seq, a.pos.Offset))
			}
		}
	}
	return st, errs
}

// chaosPublisher publishes numbered events at a bounded rate to random
// topics and random targets (nginx or a node), retrying a failed publish on
// other targets with the same idempotency key for up to chaosPublishBound.
type chaosPublisher struct {
	t      *testing.T
	bases  []string
	topics []string
	hc     *http.Client

	seq                                                   atomic.Int64
	published, nAccepted, notAccepted, retries, throttled atomic.Int64

	mu       sync.Mutex
	accepted map[int64]accepted
}

// run publishes at rate until pubCtx ends, then waits for the publishes in
// flight; ctx bounds those.
func (p *chaosPublisher) run(pubCtx, ctx context.Context, rate float64) {
	jobs := make(chan int64)
	var wg sync.WaitGroup
	for range chaosPublishers {
		wg.Go(func() {
			for seq := range jobs {
				p.publish(ctx, seq)
			}
		})
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
loop:
	for {
		select {
		case <-pubCtx.Done():
			break loop
		case <-tick.C:
		}
		seq := p.seq.Add(1)
		select {
		case jobs <- seq:
		default:
			p.throttled.Add(1) // every publisher busy (retrying): skip the tick
		}
	}
	close(jobs)
	wg.Wait()
}

func (p *chaosPublisher) publish(ctx context.Context, seq int64) {
	p.published.Add(1)
	// Half to the rooms, half to the users' topics.
	var tp string
	if rand.IntN(2) == 0 {
		tp = p.topics[chaosClients+rand.IntN(chaosRooms)]
	} else {
		tp = p.topics[rand.IntN(chaosClients)]
	}
	m := client.Message{Topic: tp, Data: []byte(strconv.FormatInt(seq, 10)), Key: "chaos-" + strconv.FormatInt(seq, 10)}
	deadline := time.Now().Add(chaosPublishBound)
	for {
		pc := &client.Publisher{URL: p.bases[rand.IntN(len(p.bases))], Key: publishKey, HTTPClient: p.hc,
			MaxAttempts: 2, MaxElapsed: time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
		res, err := pc.Publish(ctx, m)
		if err == nil {
			cur, perr := hub.ParseCursor(res.ID)
			pos, ok := cur.Lookup(tp)
			if perr != nil || !ok || pos.Offset != res.Offset {
				p.t.Errorf("publish %d answered %+v: its id is not a cursor of %s at its offset", seq, res, tp)
				return
			}
			p.mu.Lock()
			p.accepted[seq] = accepted{topic: tp, pos: pos}
			p.mu.Unlock()
			p.nAccepted.Add(1)
			return
		}
		var perr *client.PublishError
		if errors.As(err, &perr) && !perr.Temporary() {
			p.t.Errorf("publish %d: %v", seq, err)
			p.notAccepted.Add(1)
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			p.notAccepted.Add(1)
			return
		}
		p.retries.Add(1)
	}
}

func (p *chaosPublisher) acceptedOn(tp string) map[int64]accepted {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[int64]accepted{}
	for seq, a := range p.accepted {
		if a.topic == tp {
			out[seq] = a
		}
	}
	return out
}

// redisClient is a client of a private Redis, closed when the test ends.
func redisClient(t *testing.T, rawURL string) rueidis.Client {
	t.Helper()
	co, err := rueidis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	co.DisableCache = true
	c, err := rueidis.NewClient(co)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// readHeads reads the heads of topics from their meta hashes: a zero
// Position for a topic without one.
func readHeads(t *testing.T, rc rueidis.Client, topics []string) map[string]engine.Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmds := make(rueidis.Commands, 0, len(topics))
	for _, tp := range topics {
		cmds = append(cmds, rc.B().Hmget().Key(chaosPrefix+"{"+tp+"}:m").Field("e", "s").Build())
	}
	heads := map[string]engine.Position{}
	for i, r := range rc.DoMulti(ctx, cmds...) {
		v, err := r.ToArray()
		if err != nil || len(v) != 2 {
			t.Fatalf("HMGET of %s's head: %v", topics[i], err)
		}
		epoch, err := v[0].ToString()
		if err != nil {
			continue
		}
		off, err := v[1].AsUint64()
		if err != nil {
			t.Fatalf("%s's head offset: %v", topics[i], err)
		}
		heads[topics[i]] = engine.Position{Epoch: epoch, Offset: off}
	}
	return heads
}

// nodeID is the node id a node's /healthz answers.
func nodeID(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("healthz of %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var v struct{ Node string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Node == "" {
		t.Fatalf("healthz of %s: no node id (%v)", addr, err)
	}
	return v.Node
}

// nodeMetrics reads a node's metrics without labels (Herald's have none).
func nodeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	defer resp.Body.Close()
	re := regexp.MustCompile(`^(herald_\w+) (\S+)$`)
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := re.FindStringSubmatch(sc.Text()); f != nil {
			v, _ := strconv.ParseFloat(f[2], 64)
			m[f[1]] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	return m
}

// engineMetrics is a node's herald_engine_<name>_total counters, by name.
func engineMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for k, v := range nodeMetrics(t, addr) {
		if name, ok := strings.CutPrefix(k, "herald_engine_"); ok {
			if name, ok := strings.CutSuffix(name, "_total"); ok {
				m[name] = v
			}
		}
	}
	return m
}

// chaosMetrics are the metrics the chaos test reports per node.
var chaosMetrics = []string{"herald_connections", "herald_delivered_events_total", "herald_replayed_events_total",
	"herald_gaps_total", "herald_lost_rereads_total", "herald_holes_total", "herald_recovered_events_total",
	"herald_engine_contract_violations_total", "herald_engine_reconnects_total", "herald_engine_lost_topics_total"}

func metricsLine(m map[string]float64) string {
	var b strings.Builder
	for _, k := range chaosMetrics {
		fmt.Fprintf(&b, "%s=%v ", strings.TrimSuffix(strings.TrimPrefix(k, "herald_"), "_total"), m[k])
	}
	return strings.TrimSpace(b.String())
}

// waitUntil polls cond every 20ms until it holds, or fails the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitDone(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not stop within %v", what, d)
	}
}

// TestClusterQuietTopic cuts every Pub/Sub connection of the nodes (CLIENT
// KILL TYPE pubsub) right before one event is published to a topic on which
// nothing else is published: no later frame can reveal the loss, so the
// stream on the other node gets the event only because the engine, once it
// has dialled its connection again and resubscribed, has its subscribers
// re-read history. The bound is quietBound: the engine redials after 50ms
// (rounds are more than a second apart, so the backoff starts over each
// time) and resubscribes in a round trip; the rest is slack for a noisy
// machine. Whether the event came by the re-read (published while node A's
// connection was down) or by fan-out (after it was back) shows in A's
// herald_recovered_events_total; at least one round of three must be a
// re-read.
func TestClusterQuietTopic(t *testing.T) {
	rs := redistest.Start(t)
	bin := buildHerald(t)
	engineURL := rs.URL() + "?prefix=" + url.QueryEscape(chaosPrefix)
	a := startNode(t, bin, engineURL)
	b := startNode(t, bin, engineURL)
	rc := redisClient(t, rs.URL())
	const quietBound = 5 * time.Second

	reread := 0
	for round := range 3 {
		tp := fmt.Sprintf("quiet/%d", round)
		s := a.stream(t, tp, "")
		time.Sleep(1200 * time.Millisecond) // the connections up for over a second
		before := nodeMetrics(t, a.addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := rc.Do(ctx, rc.B().ClientKill().TypePubsub().Build()).AsInt64()
		cancel()
		if err != nil || n < 4 {
			t.Fatalf("CLIENT KILL TYPE pubsub: %d killed, %v; want the 2 connections of each node", n, err)
		}
		sent := time.Now()
		b.publish(t, tp, "only")
		ev := s.next(t, quietBound)
		took := time.Since(sent)
		if ev.data != "only" || ev.typ != "" {
			t.Fatalf("round %d: got %+v, want the event published after the cut", round, ev)
		}
		var after map[string]float64
		waitUntil(t, 10*time.Second, "node A's reconnects counted", func() bool {
			after = nodeMetrics(t, a.addr)
			return after["herald_engine_reconnects_total"] >= before["herald_engine_reconnects_total"]+2
		})
		how := "by fan-out, after the resubscribe"
		if after["herald_recovered_events_total"] > before["herald_recovered_events_total"] {
			how = "by the re-read after the resubscribe"
			reread++
		}
		t.Logf("round %d: the quiet topic's event reached node A's stream %v after the cut (bound %v), %s", round, took.Round(time.Millisecond), quietBound, how)
		if after["herald_engine_lost_topics_total"] <= before["herald_engine_lost_topics_total"] {
			t.Errorf("round %d: lost_topics %v then %v: the resubscribe did not have the topic re-read", round,
				before["herald_engine_lost_topics_total"], after["herald_engine_lost_topics_total"])
		}
		s.close()
	}
	if reread == 0 {
		t.Error("the event never came by the re-read: the publish always came after node A was back, and the case was not tested")
	}
}

// TestClusterBlackholedPubSub puts a TCP proxy between node A and Redis that,
// on command, stops forwarding on A's Pub/Sub connections (those that sent a
// SUBSCRIBE) in both directions, without closing them: no FIN, no RST, as a
// path that blackholes. A, started with probe=1s, must find the silence by
// its idle probe, dial again and have its streams re-read: an event
// published on node B right after the blackhole starts reaches A's stream
// within two probe intervals, plus the second the client takes to close the
// silent connection, plus slack for a noisy machine.
func TestClusterBlackholedPubSub(t *testing.T) {
	rs := redistest.Start(t)
	bin := buildHerald(t)
	const probe = time.Second
	const bound = 2*probe + time.Second + 3*time.Second
	px := redistest.NewBlackhole(t, rs.Addr())
	prefix := "?prefix=" + url.QueryEscape(chaosPrefix)
	a := startNode(t, bin, "redis://"+px.Addr()+"/0"+prefix+"&probe="+probe.String())
	b := startNode(t, bin, rs.URL()+prefix)

	s := a.stream(t, "dark", "")
	b.publish(t, "dark", "before")
	if ev := s.next(t, 5*time.Second); ev.data != "before" {
		t.Fatalf("got %+v, want the event before the blackhole", ev)
	}
	// A few quiet probe intervals with the path healthy: the probes arrive.
	time.Sleep(3 * probe)
	before := engineMetrics(t, a.addr)
	if before["probes_sent"] == 0 || before["probes_failed"] != 0 || before["reconnects"] != 0 {
		t.Errorf("metrics before the blackhole %v: want probes sent, none failed, no reconnect", before)
	}

	if n := px.Blackhole(); n != 2 {
		t.Fatalf("blackholed %d Pub/Sub connections, want node A's 2", n)
	}
	start := time.Now()
	b.publish(t, "dark", "during")
	ev := s.next(t, bound+5*time.Second)
	took := time.Since(start)
	if ev.data != "during" || ev.typ != "" {
		t.Fatalf("got %+v, want the event published during the blackhole", ev)
	}
	t.Logf("the event published on node B reached node A's stream %v after the blackhole started (probe %v, bound %v)", took.Round(time.Millisecond), probe, bound)
	if took > bound {
		t.Errorf("the event took %v, want within %v", took, bound)
	}
	after := engineMetrics(t, a.addr)
	t.Logf("node A's engine metrics: before %v, after %v", before, after)
	if after["probes_failed"] < before["probes_failed"]+1 || after["reconnects"] < before["reconnects"]+1 ||
		after["probes_sent"] <= before["probes_sent"] || after["lost_topics"] <= before["lost_topics"] {
		t.Errorf("the probe's metrics did not move: before %v, after %v", before, after)
	}
	// Live fan-out works again on the new connections.
	sent := time.Now()
	b.publish(t, "dark", "after")
	if ev := s.next(t, 5*time.Second); ev.data != "after" {
		t.Fatalf("got %+v, want the event after the reconnect", ev)
	}
	t.Logf("and the next one by fan-out after %v", time.Since(sent).Round(time.Millisecond))
}

// TestChaosCheck checks the chaos test's verdict on made-up histories: it
// must catch what it is there to catch.
func TestChaosCheck(t *testing.T) {
	p := func(e string, o uint64) engine.Position { return engine.Position{Epoch: e, Offset: o} }
	ev := func(seq int64, e string, o uint64) item { return item{topic: "t", seq: seq, pos: p(e, o)} }
	gap := func(e string, o uint64) item { return item{topic: "t", gap: true, pos: p(e, o)} }
	acc := map[int64]accepted{1: {"t", p("a", 1)}, 2: {"t", p("a", 2)}, 3: {"t", p("a", 3)}, 4: {"t", p("b", 1)}, 5: {"t", p("b", 2)}}
	for _, c := range []struct {
		name  string
		items []item
		head  engine.Position
		want  chaosStats
		fails bool
	}{
		{"complete", []item{ev(1, "a", 1), ev(2, "a", 2), ev(3, "a", 3), gap("b", 0), ev(4, "b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 5, gaps: 1}, false},
		{"lost behind a gap", []item{ev(1, "a", 1), gap("b", 0), ev(4, "b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 3, gaps: 1, lostAnnounced: 2}, false},
		{"lost without a gap", []item{ev(1, "a", 1), ev(4, "b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 3, missing: 2}, true},
		{"never left the lost epoch", []item{ev(1, "a", 1), ev(2, "a", 2), ev(3, "a", 3)}, p("b", 2),
			chaosStats{delivered: 3, missing: 2}, true},
		{"hole", []item{ev(1, "a", 1), ev(3, "a", 3), gap("b", 0), ev(4, "b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 4, gaps: 1, missing: 1}, true},
		{"duplicate", []item{ev(1, "a", 1), ev(2, "a", 2), ev(2, "a", 2), ev(3, "a", 3), gap("b", 0), ev(4, "b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 5, gaps: 1, dups: 1}, true},
		{"short of the head", []item{ev(1, "a", 1), ev(2, "a", 2), ev(3, "a", 3), gap("b", 0), ev(4, "b", 1)}, p("b", 2),
			chaosStats{delivered: 4, gaps: 1, missing: 1}, true},
		{"gap within an epoch", []item{ev(1, "a", 1), gap("a", 2), ev(3, "a", 3), gap("b", 0), ev(4, "b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 4, gaps: 2}, true},
		{"a new epoch's start missing", []item{ev(1, "a", 1), ev(2, "a", 2), ev(3, "a", 3), gap("b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 4, gaps: 1, missing: 1}, true},
		{"mismatch", []item{ev(2, "a", 1), ev(1, "a", 2), ev(3, "a", 3), gap("b", 0), ev(4, "b", 1), ev(5, "b", 2)}, p("b", 2),
			chaosStats{delivered: 5, gaps: 1, mismatched: 2}, true},
	} {
		st, errs := checkTopic(p("a", 0), c.items, "a", c.head, acc)
		if st != c.want || (len(errs) > 0) != c.fails {
			t.Errorf("%s: %+v %q, want %+v, failing %v", c.name, st, errs, c.want, c.fails)
		}
	}
}
