package redis

import (
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/redistest"
)

// A Pub/Sub connection that was up for a while and breaks is dialled again
// after the shortest backoff, however many times that happened before: the
// backoff that grows while redials fail starts over after a healthy
// connection. (It used to grow for the life of the engine, so that after a
// few incidents every loss kept streams without live events for 2s.)
func TestBackoffStartsOverAfterAHealthyConnection(t *testing.T) {
	r := redistest.Start(t)
	opt := testOptions(t, r.URL())
	opt.PubSubConns = 1
	e := mustOpen(t, opt)
	s := e.shards[0]
	up := func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.up }
	waitFor(t, "the Pub/Sub connection up", up)
	for round := range 6 {
		time.Sleep(healthyAfter + 200*time.Millisecond)
		before := e.reconnects.Load()
		killed := time.Now()
		if err := do(t, e, "CLIENT", "KILL", "TYPE", "pubsub").Error(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the connection redialled and subscribed", func() bool { return e.reconnects.Load() > before && up() })
		took := time.Since(killed)
		t.Logf("round %d: up again after %v", round, took)
		// The shortest backoff is 50ms; the 6th loss in a row used to wait 1.6s.
		if took > time.Second {
			t.Errorf("round %d: the connection was up again only after %v, want about the shortest backoff (50ms)", round, took)
		}
	}
}
