package redis

import (
	"strconv"
	"testing"
	"time"
)

// suppressed writes an event to a topic the way the append script does but
// publishes no frame, as if Pub/Sub had dropped it.
func suppressed(t *testing.T, e *Engine, tp, epoch string) {
	t.Helper()
	k := e.key(tp)
	off, _ := do(t, e, "HINCRBY", k+"m", "s", "1").AsInt64()
	if epoch != "" {
		do(t, e, "HSET", k+"m", "e", epoch)
	}
	if err := do(t, e, "XADD", k+"l", strconv.FormatInt(off, 10)+"-0", "t", strconv.FormatInt(time.Now().UnixMilli(), 10), "y", "t", "d", "hidden").Error(); err != nil {
		t.Fatal(err)
	}
}

// The sweep calls lost for a topic whose head is past what was delivered
// (an event whose frame never came), once, and for a topic whose first
// event's frame never came; a topic that delivered everything, or that has
// no event, is left alone.
func TestSweepFindsATopicBehindItsHead(t *testing.T) {
	const sweep = 200 * time.Millisecond
	opt := testOptions(t, testURL(t))
	opt.SweepInterval = sweep
	e := mustOpen(t, opt)
	recs := map[string]*recorder{}
	for _, tp := range []string{"behind", "fresh", "fine", "empty"} {
		recs[tp] = &recorder{}
		cancel, err := e.Subscribe(tp, recs[tp].fn, recs[tp].lost)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
	}
	appendOK(t, e, ev("behind", "", "1"), ev("fine", "", "1"))
	waitFor(t, "the first events", func() bool { return recs["behind"].len() == 1 && recs["fine"].len() == 1 })
	time.Sleep(3 * sweep)
	for tp, r := range recs {
		if n := r.losses.Load(); n != 0 {
			t.Fatalf("%s: %d lost calls with nothing missed", tp, n)
		}
	}
	start := time.Now()
	suppressed(t, e, "behind", "")
	suppressed(t, e, "fresh", newEpoch())
	waitFor(t, "lost from the sweep", func() bool { return recs["behind"].losses.Load() > 0 && recs["fresh"].losses.Load() > 0 })
	t.Logf("the sweep found both topics after %v (interval %v)", time.Since(start), sweep)
	time.Sleep(3 * sweep)
	for tp, want := range map[string]int64{"behind": 1, "fresh": 1, "fine": 0, "empty": 0} {
		if n := recs[tp].losses.Load(); n != want {
			t.Errorf("%s: %d lost calls, want %d", tp, n, want)
		}
	}
	// A later event is delivered as usual, and is no loss. It is appended
	// right after a sweep, so that its frame has a whole interval to arrive
	// before the next sweep reads the head (a frame still on its way then
	// would make a needless re-read, which is not what this checks).
	swept := metrics(e)["sweeps"]
	waitFor(t, "a sweep", func() bool { return metrics(e)["sweeps"] > swept })
	appendOK(t, e, ev("behind", "", "3"))
	waitFor(t, "the next event", func() bool { return recs["behind"].len() == 2 })
	time.Sleep(3 * sweep)
	if n := recs["behind"].losses.Load(); n != 1 {
		t.Errorf("behind: %d lost calls after a delivered event, want 1", n)
	}
	if m := metrics(e); m["sweeps"] < 5 || m["sweep_behind_topics"] != 2 || m["lost_topics"] != 2 || m["reconnects"] != 0 {
		t.Errorf("metrics %v, want several sweeps, two topics found behind, two lost topics, no reconnect", m)
	}
}
