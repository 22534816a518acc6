package engine

import (
	"slices"
	"testing"
)

func TestByTopicKeepsEachTopicsOrder(t *testing.T) {
	order, idx := ByTopic([]Event{{Topic: "b"}, {Topic: "a"}, {Topic: "b"}, {Topic: "c"}, {Topic: "a"}})
	if !slices.Equal(order, []string{"b", "a", "c"}) {
		t.Fatalf("order %v, want the topics by their first event", order)
	}
	if !slices.Equal(idx["b"], []int{0, 2}) || !slices.Equal(idx["a"], []int{1, 4}) || !slices.Equal(idx["c"], []int{3}) {
		t.Fatalf("indexes %v", idx)
	}
}
