package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pump publishes numbered events over a few workers. Worker w owns the topics
// t with t % workers == w and sends their batches one after another, so each
// topic's events reach the server in sequence order even though the workers
// run in parallel.
type pump struct {
	pub      publisher
	topics   int
	workers  int
	seq      []uint64       // last sequence number issued per topic; the producer's
	accepted []atomic.Int64 // events accepted per topic; each written by its worker only
	next     int            // next topic in round-robin order; the producer's

	published atomic.Int64
	failed    atomic.Int64
	requests  Histogram // round trip of each publish request, µs
	errMu     sync.Mutex
	firstErr  error
}

func newPump(pub publisher, topics, workers int) *pump {
	return &pump{pub: pub, topics: topics, workers: max(min(workers, topics), 1),
		seq: make([]uint64, topics), accepted: make([]atomic.Int64, topics)}
}

// paced publishes rate×d events round-robin over the topics, spread evenly
// over d in ticks of tick, and returns when all were answered or ctx ended. An
// event's timestamp is the tick it was due in, not when a worker got to send
// it: a server slow to accept publishes shows as latency rather than as a
// lower offered rate.
func (p *pump) paced(ctx context.Context, rate float64, d, tick time.Duration) {
	total := int64(rate * d.Seconds())
	if total <= 0 {
		return
	}
	p.run(ctx, func(b *batcher) {
		start := time.Now()
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		var issued int64
		for issued < total {
			select {
			case <-ctx.Done():
				return
			case now := <-ticker.C:
				due := min(int64(rate*now.Sub(start).Seconds()), total)
				ts := now.UnixNano()
				for ; issued < due; issued++ {
					b.emit(p.next, ts)
					p.next = (p.next + 1) % p.topics
				}
				b.flush()
			}
		}
	})
}

// each publishes m events to every topic as fast as the server takes them.
func (p *pump) each(ctx context.Context, m int) {
	p.run(ctx, func(b *batcher) {
		for range m {
			ts := time.Now().UnixNano()
			for t := range p.topics {
				b.emit(t, ts)
			}
		}
	})
}

// expected returns the events accepted for topic t so far.
func (p *pump) expected(t int) int64 { return p.accepted[t].Load() }

func (p *pump) err() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.firstErr
}

// run starts the workers, lets produce emit events, then waits until every
// event has been answered.
func (p *pump) run(ctx context.Context, produce func(*batcher)) {
	b := &batcher{p: p, queues: make([]*queue, p.workers), pending: make([][]outEvent, p.workers)}
	var wg sync.WaitGroup
	for w := range b.queues {
		q := &queue{wake: make(chan struct{}, 1)}
		b.queues[w] = q
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				batch, ok := q.take(ctx, p.pub.maxBatch())
				if !ok {
					return
				}
				p.send(ctx, batch)
			}
		}()
	}
	produce(b)
	b.flush()
	for _, q := range b.queues {
		q.close()
	}
	wg.Wait()
}

func (p *pump) send(ctx context.Context, batch []outEvent) {
	start := time.Now()
	err := p.pub.send(ctx, batch)
	p.requests.Record(time.Since(start).Microseconds())
	if err != nil {
		p.failed.Add(int64(len(batch)))
		p.errMu.Lock()
		if p.firstErr == nil {
			p.firstErr = err
		}
		p.errMu.Unlock()
		return
	}
	for _, ev := range batch {
		p.accepted[ev.topic].Add(1)
	}
	p.published.Add(int64(len(batch)))
}

// queue holds a worker's events. A worker takes everything waiting (up to a
// batch) each time its previous request is answered, so when the server is
// slow to accept, events coalesce into fewer, larger requests instead of
// queueing as many small ones; their timestamps stay those of when they were
// due, so the latency reported includes the wait.
type queue struct {
	mu     sync.Mutex
	evs    []outEvent
	closed bool
	wake   chan struct{}
}

func (q *queue) put(evs []outEvent) {
	q.mu.Lock()
	q.evs = append(q.evs, evs...)
	q.mu.Unlock()
	q.signal()
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns up to n events, waiting for some; false once the queue is
// closed and empty or ctx has ended.
func (q *queue) take(ctx context.Context, n int) ([]outEvent, bool) {
	for {
		q.mu.Lock()
		if len(q.evs) > 0 {
			k := min(n, len(q.evs))
			batch := append([]outEvent(nil), q.evs[:k]...)
			q.evs = q.evs[:copy(q.evs, q.evs[k:])]
			q.mu.Unlock()
			return batch, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed || ctx.Err() != nil {
			return nil, false
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
		}
	}
}

// batcher collects emitted events per worker until the next flush.
type batcher struct {
	p       *pump
	queues  []*queue
	pending [][]outEvent
}

// emit issues the next event of topic, due now.
func (b *batcher) emit(topic int, now int64) {
	p := b.p
	p.seq[topic]++
	w := topic % p.workers
	b.pending[w] = append(b.pending[w], outEvent{topic, p.seq[topic], now})
	if len(b.pending[w]) >= p.pub.maxBatch() {
		b.queues[w].put(b.pending[w])
		b.pending[w] = b.pending[w][:0]
	}
}

// flush hands every pending event to its worker.
func (b *batcher) flush() {
	for w, evs := range b.pending {
		if len(evs) > 0 {
			b.queues[w].put(evs)
			b.pending[w] = evs[:0]
		}
	}
}
