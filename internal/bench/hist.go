package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Histogram counts durations in microseconds in log-linear buckets: exact below
// 32µs, then 32 buckets per power of two (about 3% wide). Its counters are
// atomics so thousands of readers can record without a lock, and its size is
// fixed (15 KiB) whatever the number of samples.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Int64
}

const (
	subBits     = 5
	subCount    = 1 << subBits
	histBuckets = (64 - subBits + 1) * subCount
)

// bucketOf returns the bucket index of v (µs, v ≥ 0).
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// bucketBounds returns the lowest value of bucket i and its width.
func bucketBounds(i int) (low, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	shift := i/subCount - 1
	top := uint64(i%subCount + subCount)
	return top << shift, 1 << shift
}

// Record adds one sample of us microseconds; negative values (clock skew
// between hosts) count as zero.
func (h *Histogram) Record(us int64) {
	us = max(us, 0)
	h.counts[bucketOf(uint64(us))].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest sample, in microseconds.
func (h *Histogram) Max() int64 { return h.max.Load() }

// Quantile returns the value below which a fraction q of the samples fall,
// as the middle of the bucket that holds it (exact below 32µs), capped at Max.
func (h *Histogram) Quantile(q float64) float64 {
	total := h.total.Load()
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = min(max(rank, 1), total)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := bucketBounds(i)
			return min(float64(low)+float64(width-1)/2, float64(h.max.Load()))
		}
	}
	return float64(h.max.Load())
}

// Bucket is one non-empty histogram bucket, in microseconds.
type Bucket struct {
	LowUS   uint64 `json:"low_us"`
	WidthUS uint64 `json:"width_us"`
	Count   uint64 `json:"count"`
}

// Buckets returns the non-empty buckets in order.
func (h *Histogram) Buckets() []Bucket {
	var out []Bucket
	for i := range h.counts {
		if n := h.counts[i].Load(); n > 0 {
			low, width := bucketBounds(i)
			out = append(out, Bucket{low, width, n})
		}
	}
	return out
}

// Percentiles are a latency summary in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Summary returns the histogram's percentiles in milliseconds.
func (h *Histogram) Summary() Percentiles {
	ms := func(us float64) float64 { return math.Round(us) / 1000 }
	return Percentiles{
		P50: ms(h.Quantile(0.50)),
		P90: ms(h.Quantile(0.90)),
		P99: ms(h.Quantile(0.99)),
		Max: ms(float64(h.Max())),
	}
}
