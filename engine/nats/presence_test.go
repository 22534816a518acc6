package nats

import (
	"context"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/natstest"
	"github.com/herald-hub/herald/presence"
	"github.com/herald-hub/herald/presence/presencetest"
)

func TestPresence(t *testing.T) {
	raw := natstest.URL(t)
	presencetest.Run(t, presencetest.Opener{
		Shared: true,
		Open: func() func(t *testing.T, opt presence.Options) presence.Registry {
			return func(t *testing.T, opt presence.Options) presence.Registry {
				// Registries of one test share a stream: the first Open of
				// a test names it.
				e := sharedEngine(t, raw)
				r := e.Presence(opt)
				t.Cleanup(func() { r.Close() })
				return r
			}
		}(),
	})
}

// sharedEngine opens an engine on the test's stream, one per call: each is
// a node.
func sharedEngine(t *testing.T, raw string) *Engine {
	t.Helper()
	name, ok := streams[t]
	if !ok {
		name = natstest.Name(t, raw, "presence")
		streams[t] = name
		t.Cleanup(func() { delete(streams, t) })
	}
	return mustOpen(t, Options{URL: raw, Stream: name})
}

var streams = map[*testing.T]string{} // the stream of each test

// A node that stops without closing (a crash) stops counting once its
// heartbeat is older than the TTL.
func TestPresenceDeadNodeStopsCounting(t *testing.T) {
	raw := natstest.URL(t)
	e1, e2 := sharedEngine(t, raw), sharedEngine(t, raw)
	r1 := e1.Presence(presence.Options{Node: "n1"}).(*registry)
	r2 := e2.Presence(presence.Options{Node: "n2"})
	t.Cleanup(func() { r2.Close() })
	r1.Join(presence.Conn{ID: presence.NewID(), User: "u1", Topics: []string{"rooms/1"}})
	presencetest.WantUser(t, r2, "u1", map[string]int{"n1": 1})
	// The crash: the registry's goroutine stops, nothing is removed.
	r1.stop()
	<-r1.done
	start := time.Now()
	deadline := start.Add(DefaultPresenceTTL + 2*DefaultPresenceBeat + 5*time.Second)
	for {
		u, err := r2.User(context.Background(), "u1")
		if err != nil {
			t.Fatal(err)
		}
		if u.Streams == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("u1 still online %v after n1 stopped", time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); d < DefaultPresenceTTL-DefaultPresenceBeat {
		t.Fatalf("u1 offline after %v, before the TTL", d)
	}
	presencetest.WantTopic(t, r2, "rooms/1", nil)
}

// A bucket deleted under the nodes is created again, and each node writes
// its streams again.
func TestPresenceBucketLost(t *testing.T) {
	raw := natstest.URL(t)
	e := sharedEngine(t, raw)
	r := e.Presence(presence.Options{Node: "n1"})
	t.Cleanup(func() { r.Close() })
	r.Join(presence.Conn{ID: presence.NewID(), User: "u1", Topics: []string{"rooms/1"}})
	presencetest.WantUser(t, r, "u1", map[string]int{"n1": 1})
	natstest.Delete(t, raw, "KV_"+e.opt.Stream+"_presence")
	deadline := time.Now().Add(30 * time.Second)
	for {
		u, _ := r.User(context.Background(), "u1")
		if u.Streams == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("u1 not written again after the bucket was deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	presencetest.WantTopic(t, r, "rooms/1", map[string]int{"u1": 1})
}
