package hub

import (
	"strconv"
	"testing"
)

// BenchmarkTopics is the walk behind the admin statistics, which holds the
// hub's lock (streams connecting and leaving wait for it) once per interval.
func BenchmarkTopics(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := &Hub{topics: make(map[string]*topicState, n), busy: map[*topicState]struct{}{}}
			for i := range n {
				t := "users/" + strconv.Itoa(i)
				h.topics[t] = &topicState{topic: t, refs: 1 + i%3}
			}
			for b.Loop() {
				if total, top := h.Topics(10); total != n || len(top) != 10 {
					b.Fatal(total, len(top))
				}
			}
		})
	}
}
