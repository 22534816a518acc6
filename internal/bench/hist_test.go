package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 31, 32, 33, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := bucketOf(v)
		low, width := bucketBounds(i)
		if v < low || v-low >= width {
			t.Errorf("value %d in bucket %d = [%d, %d+%d)", v, i, low, low, width)
		}
		if i < prev {
			t.Errorf("bucket of %d = %d, before the previous value's %d", v, i, prev)
		}
		prev = i
		if i >= histBuckets {
			t.Fatalf("bucket %d out of range", i)
		}
	}
}

func TestQuantilesMatchSortedSamples(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	samples := make([]int64, 100000)
	for i := range samples {
		samples[i] = int64(r.ExpFloat64() * 5000) // µs, median about 3.5ms
		h.Record(samples[i])
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := float64(samples[int(math.Ceil(q*float64(len(samples))))-1])
		got := h.Quantile(q)
		if math.Abs(got-want) > 0.035*want+1 {
			t.Errorf("q%.3f = %.0fµs, want %.0fµs within 3.5%%", q, got, want)
		}
	}
	if h.Max() != samples[len(samples)-1] {
		t.Errorf("max = %d, want %d", h.Max(), samples[len(samples)-1])
	}
	if h.Count() != uint64(len(samples)) {
		t.Errorf("count = %d", h.Count())
	}
}

func TestQuantileSmallExact(t *testing.T) {
	var h Histogram
	for _, v := range []int64{5, 1, 3, 2, 4, -7} {
		h.Record(v)
	}
	if got := h.Quantile(0.5); got != 2 {
		t.Errorf("median of {0,1,2,3,4,5} = %v, want 2", got)
	}
	if got := h.Quantile(1); got != 5 {
		t.Errorf("q1 = %v, want 5", got)
	}
	var empty Histogram
	if p := empty.Summary(); p != (Percentiles{}) {
		t.Errorf("empty summary = %+v", p)
	}
}
