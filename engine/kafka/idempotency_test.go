package kafka

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

// The same Event.ID appended through two nodes at once: both Appends answer
// with one position, and both replicas hold the event once, since each
// node skips the repeat in the same place of the log.
func TestIdempotencyAcrossNodes(t *testing.T) {
	c := newCluster(t)
	opt := testOptions(t, c)
	e1 := openEngine(t, opt)
	peer := opt
	peer.Dir = t.TempDir()
	e2 := openEngine(t, peer)
	for round := range 20 {
		topic := fmt.Sprintf("idx/%d", round%4)
		id := fmt.Sprintf("key-%d", round)
		var wg sync.WaitGroup
		pos := make([]engine.Position, 4)
		errs := make([]error, 4)
		for i, e := range []*Engine{e1, e2, e1, e2} {
			wg.Go(func() {
				p, err := e.Append(testCtx(t), []engine.Event{{Topic: topic, Type: "test", ID: id, Data: fmt.Appendf(nil, "%d", i)}})
				if err == nil {
					pos[i] = p[0]
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i := range pos {
			if errs[i] != nil {
				t.Fatalf("round %d, Append %d: %v", round, i, errs[i])
			}
			if pos[i] != pos[0] {
				t.Fatalf("round %d: positions %v, want one", round, pos)
			}
		}
	}
	for i := range 4 {
		topic := fmt.Sprintf("idx/%d", i)
		a, b := readAllOf(t, e1, topic), readAllOf(t, e2, topic)
		if len(a) != 5 || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s: node 1 holds %v, node 2 %v; want the same 5 events", topic, a, b)
		}
	}
	if e1.Metrics()[1].Value != 60 || e2.Metrics()[1].Value != 60 {
		t.Fatalf("duplicates_skipped = %d and %d, want 60 on both nodes", e1.Metrics()[1].Value, e2.Metrics()[1].Value)
	}
}

func readAllOf(t *testing.T, e engine.Engine, topic string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, err := e.Read(ctx, topic, engine.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%d:%s:%s", ev.Pos.Offset, ev.ID, ev.Data))
	}
	return out
}

// An ID is remembered for the window after its first record's time (the
// record's, not a node's clock): a repeat after it is a new event, on every
// node alike, also on a node that reads the log later.
func TestIdempotencyWindowFollowsRecordTimes(t *testing.T) {
	c := newCluster(t)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	opt := testOptions(t, c)
	opt.Now, opt.IdempotencyWindow = clock, time.Minute
	e1 := openEngine(t, opt)
	app := func(data string) engine.Position {
		t.Helper()
		p, err := e1.Append(testCtx(t), []engine.Event{{Topic: "win/a", Type: "test", ID: "k", Data: []byte(data)}})
		if err != nil {
			t.Fatal(err)
		}
		return p[0]
	}
	first := app("1")
	advance(30 * time.Second)
	if p := app("2"); p != first {
		t.Fatalf("repeat within the window at %v, want %v", p, first)
	}
	advance(31 * time.Second)
	second := app("3")
	if second.Offset <= first.Offset {
		t.Fatalf("repeat after the window at %v, want a new event after %v", second, first)
	}
	if err := e1.trim(); err != nil { // expires keys older than the window
		t.Fatal(err)
	}
	advance(10 * time.Second)
	if p := app("4"); p != second {
		t.Fatalf("repeat within the new window at %v, want %v", p, second)
	}
	peer := opt
	peer.Dir = t.TempDir()
	e2 := openEngine(t, peer)
	a, b := readAllOf(t, e1, "win/a"), readAllOf(t, e2, "win/a")
	if len(a) != 2 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("node 1 holds %v, a node started later %v; want the same 2 events", a, b)
	}
}
