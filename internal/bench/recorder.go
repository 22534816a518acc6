package bench

import (
	"sync/atomic"
	"time"
)

// recorder collects the latencies of one phase: all of them, and one
// histogram per second since the phase began for the chart of latency over
// time. The per-second histograms are made when their second first sees an
// event, so an idle phase costs nothing.
type recorder struct {
	start  time.Time
	all    Histogram
	series []atomic.Pointer[Histogram]
}

func newRecorder(start time.Time, seconds int) *recorder {
	return &recorder{start: start, series: make([]atomic.Pointer[Histogram], max(seconds, 1))}
}

func (r *recorder) record(now time.Time, us int64) {
	r.all.Record(us)
	sec := int(now.Sub(r.start) / time.Second)
	if sec < 0 || sec >= len(r.series) {
		return
	}
	h := r.series[sec].Load()
	if h == nil {
		h = new(Histogram)
		if !r.series[sec].CompareAndSwap(nil, h) {
			h = r.series[sec].Load()
		}
	}
	h.Record(us)
}

// Second is one second of a phase: the events received in it and their
// latency in milliseconds.
type Second struct {
	Second    int     `json:"second"`
	Delivered uint64  `json:"delivered"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
}

// timeline returns the seconds up to the last one that saw an event.
func (r *recorder) timeline() []Second {
	last := -1
	for i := range r.series {
		if r.series[i].Load() != nil {
			last = i
		}
	}
	out := make([]Second, 0, last+1)
	for i := 0; i <= last; i++ {
		s := Second{Second: i}
		if h := r.series[i].Load(); h != nil {
			p := h.Summary()
			s.Delivered, s.P50, s.P99, s.Max = h.Count(), p.P50, p.P99, p.Max
		}
		out = append(out, s)
	}
	return out
}
