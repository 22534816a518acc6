package hub

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// writerIdle is the pool's sizing interval: every writerIdle it retires the
// idle writers beyond the most that were busy at once during the interval.
const writerIdle = 100 * time.Millisecond

// writers runs claimed streams on a pool of goroutines. An idle writer waits
// on one channel receive, the cheapest park and wake-up the runtime has (a
// two-case select with a per-writer idle timer cost ~15 % of a broadcast's
// CPU). Writers outlive a job so the next one reuses their goroutines and
// grown stacks (spawning a writer and growing its stack cost a quarter of a
// broadcast's CPU), while one timer for the whole pool keeps it to the size
// recent work needed, and a hub with nothing to write keeps none. A writer
// blocked on a client slow to read holds only itself: the next job finds
// another writer or starts one.
type writers struct {
	work    chan job     // the zero job tells an idle writer to exit
	running atomic.Int64 // writer goroutines alive, busy or idle
	busy    atomic.Int64 // writers running a job
	peak    atomic.Int64 // most writers busy at once since the last tick

	mu    sync.Mutex
	reap  *time.Timer
	armed bool
}

// job is one stream to run, or a fan-out's share of streams to write without
// waiting (see Subscriber.runTry).
type job struct {
	one  *Subscriber
	many []*Subscriber
}

// runSoon runs a stream its caller has claimed on a writer goroutine.
func (h *Hub) runSoon(s *Subscriber) { h.writers.hand(job{one: s}) }

// minShare is the fewest streams worth a writer goroutine of their own in a
// fan-out: below it, handing over costs more than the writes it spreads.
const minShare = 256

// inlineWrites is the most streams a fan-out writes on its caller's
// goroutine (the engine's delivery goroutine), without waiting: an event to
// one user's stream costs a write, not a writer's wake-up and then a write.
const inlineWrites = 8

// yieldEvery is how many streams a share writes between yields, about a
// millisecond of writes.
const yieldEvery = 256

// runBatch runs the streams a fan-out claimed. The streams whose writer can
// write without waiting are written at once when they are few (inlineWrites),
// else split into shares of at least minShare streams,
// at most one per CPU, each written by one writer goroutine: a fan-out to
// 10,000 streams wakes two goroutines rather than 10,000. The others each get
// a writer goroutine of their own, since they may block.
func (h *Hub) runBatch(b []*Subscriber) {
	n := 0
	for _, s := range b {
		if s.tw == nil {
			h.runSoon(s)
			continue
		}
		b[n] = s
		n++
	}
	b = b[:n]
	switch {
	case n == 0:
		return
	case n <= inlineWrites:
		for _, s := range b {
			s.runTry()
		}
		return
	}
	shares := min(runtime.GOMAXPROCS(0), (n+minShare-1)/minShare)
	for i := range shares {
		h.writers.hand(job{many: b[i*n/shares : (i+1)*n/shares]})
	}
}

// hand gives j to an idle writer goroutine, or to a new one when none is idle.
func (w *writers) hand(j job) {
	select {
	case w.work <- j:
	default:
		w.running.Add(1)
		w.arm()
		go w.writer(j)
	}
}

func (w *writers) writer(j job) {
	defer w.running.Add(-1)
	for j.one != nil || j.many != nil {
		b := w.busy.Add(1)
		for p := w.peak.Load(); b > p; p = w.peak.Load() {
			if w.peak.CompareAndSwap(p, b) {
				break
			}
		}
		if j.one != nil {
			j.one.run()
		}
		for i, s := range j.many {
			s.runTry()
			j.many[i] = nil
			if i%yieldEvery == yieldEvery-1 {
				// A share of a large fan-out runs for tens of
				// milliseconds: let a publish request or the
				// engine's goroutines run in between, or they
				// wait for the whole fan-out (publish p50 75 ms).
				runtime.Gosched()
			}
		}
		w.busy.Add(-1)
		j = <-w.work
	}
}

// arm starts the sizing timer unless it is running.
func (w *writers) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed {
		return
	}
	w.armed = true
	if w.reap == nil {
		w.reap = time.AfterFunc(writerIdle, w.retire)
	} else {
		w.reap.Reset(writerIdle)
	}
}

// retire runs on the sizing timer while writers are alive: it tells the idle
// writers beyond the interval's peak to exit.
func (w *writers) retire() {
	excess := w.running.Load() - w.peak.Swap(w.busy.Load())
	for ; excess > 0; excess-- {
		select {
		case w.work <- job{}:
		default:
			excess = 0 // none idle
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running.Load() == 0 {
		w.armed = false
		return
	}
	w.reap.Reset(writerIdle)
}
