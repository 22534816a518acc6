package hub

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// writerIdle is how long the writer goroutines may wait without any stream to
// run before they exit.
const writerIdle = 100 * time.Millisecond

// writers runs claimed streams on a pool of goroutines. An idle writer waits
// on one channel receive, the cheapest park and wake-up the runtime has (a
// two-case select with a per-writer idle timer cost ~15 % of a broadcast's
// CPU). Writers outlive a fan-out so the next one reuses their goroutines and
// grown stacks (spawning a writer and growing its stack cost a quarter of a
// broadcast's CPU), while a hub with nothing to write keeps none: one timer for
// the whole pool retires the idle writers once nothing has been handed over for
// writerIdle. A writer blocked on a client slow to read holds only itself: the
// next job finds another writer or starts one.
type writers struct {
	work    chan job     // the zero job tells an idle writer to exit
	last    atomic.Int64 // unix nanoseconds of the last hand-over
	running atomic.Int64 // writer goroutines alive, busy or idle

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

// yieldEvery is how many streams a share writes between yields, about a
// millisecond of writes.
const yieldEvery = 256

// runBatch runs the streams a fan-out claimed. A stream whose writer can write
// without waiting is written from a share of the batch, one share per CPU: a
// fan-out to 10,000 streams wakes two goroutines rather than 10,000. The
// others each get a writer goroutine of their own, since they may block.
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
	case n == 1:
		h.runSoon(b[0])
		return
	}
	shares := min(runtime.GOMAXPROCS(0), (n+minShare-1)/minShare)
	for i := range shares {
		h.writers.hand(job{many: b[i*n/shares : (i+1)*n/shares]})
	}
}

// hand gives j to an idle writer goroutine, or to a new one when none is idle.
func (w *writers) hand(j job) {
	w.last.Store(time.Now().UnixNano())
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
	for {
		switch {
		case j.one != nil:
			j.one.run()
		case j.many != nil:
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
		default:
			return
		}
		j = <-w.work
	}
}

// arm starts the reaping timer unless it is running.
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

// retire runs on the reaping timer: once nothing was handed over for
// writerIdle it tells every idle writer to exit, and it keeps checking while
// writers are left (busy ones become idle later).
func (w *writers) retire() {
	since := time.Duration(time.Now().UnixNano() - w.last.Load())
	if since >= writerIdle {
		for sent := true; sent; {
			select {
			case w.work <- job{}:
			default:
				sent = false
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running.Load() == 0 {
		w.armed = false
		return
	}
	w.reap.Reset(max(writerIdle-since, writerIdle/10))
}
