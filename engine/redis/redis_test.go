package redis

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/enginetest"
	"github.com/herald-hub/herald/internal/redistest"
)

func testURL(t *testing.T) string { return redistest.URL(t) }

// testOptions are engine options on rawURL under a fresh random key prefix,
// whose keys are deleted when the test ends.
func testOptions(t *testing.T, rawURL string) Options {
	t.Helper()
	co, err := rueidis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Client: co, Prefix: redistest.Prefix(t, co, "redis")}
}

func mustOpen(t *testing.T, opt Options) *Engine {
	t.Helper()
	e, err := Open(opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestConformance(t *testing.T) { conformance(t, testURL(t), nil) }

// The same suite on a Redis Cluster of three masters: the topics of one
// Append land in different slots, and a frame published on one node reaches
// the others' subscribers later.
func TestConformanceOnRedisCluster(t *testing.T) {
	// rueidis closes the connections a topology refresh replaced 5 s later.
	conformance(t, redistest.StartCluster(t, 3).URL(), []string{"github.com/redis/rueidis.(*clusterClient)._refresh.func2"})
}

func conformance(t *testing.T, raw string, ignore []string) {
	reopen := func(t *testing.T, e engine.Engine) engine.Engine {
		opt := e.(*Engine).opt
		e.Close()
		return mustOpen(t, opt)
	}
	enginetest.Run(t, enginetest.Harness{
		Open: func(t *testing.T, o enginetest.Options) engine.Engine {
			opt := testOptions(t, raw)
			opt.MaxLen = o.MaxLen
			return mustOpen(t, opt)
		},
		OpenPeer: func(t *testing.T, e engine.Engine) engine.Engine {
			return mustOpen(t, e.(*Engine).opt)
		},
		Reopen: reopen,
		Aging: &enginetest.Aging{
			Open: func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine {
				opt := testOptions(t, raw)
				opt.MaxAge, opt.Now = maxAge, now
				return mustOpen(t, opt)
			},
			// Retention by age is applied by Read on the engine's clock
			// (and physically by later appends): nothing to run.
			Trim: func(*testing.T, engine.Engine) {},
		},
		Dense:            true,
		IgnoreGoroutines: ignore,
	})
}

func TestRegisteredSchemes(t *testing.T) {
	for _, raw := range []string{"redis://127.0.0.1:1/0?pubsub=0", "redis://127.0.0.1:1/0?meta-ttl=x", "redis://127.0.0.1:1/0?prefix=", "redis://127.0.0.1:1/0?probe=0", "redis://127.0.0.1:1/0?probe=x", "redis://127.0.0.1:1/0?sweep=0"} {
		if _, err := engine.Open(raw, engine.Config{}); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", raw)
		}
	}
	u, _ := url.Parse("rediss://h:1/0")
	if _, err := openURL(u, engine.Config{}); err == nil {
		t.Errorf("Open(%q) with no server succeeded", u)
	}
}

// Every master of a cluster is checked, not only the one a command lands on.
func TestRefusesAnEvictingClusterNode(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	last := cl.Nodes[2]
	co, err := rueidis.ParseURL(last.URL())
	if err != nil {
		t.Fatal(err)
	}
	co.ForceSingleClient = true
	c, err := rueidis.NewClient(co)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(context.Background(), c.B().ConfigSet().ParameterValue().ParameterValue("maxmemory-policy", "allkeys-lru").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	opt := testOptions(t, cl.URL())
	e, err := Open(opt)
	if err == nil {
		e.Close()
		t.Fatal("Open succeeded on a cluster with an evicting node")
	}
	if !strings.Contains(err.Error(), last.Addr()) || !strings.Contains(err.Error(), "noeviction") {
		t.Fatalf("Open: %v, want the node and noeviction named", err)
	}
}

// The Sentinel form of the URL: the engine finds the master through the
// Sentinel, and appends, reads and fans out there.
func TestThroughSentinel(t *testing.T) {
	_, raw := redistest.StartSentinel(t, "herald")
	e := mustOpen(t, testOptions(t, raw))
	if m := e.client.Mode(); m != rueidis.ClientModeSentinel {
		t.Fatalf("client mode %q, want sentinel", m)
	}
	got := make(chan engine.Event, 1)
	cancel, err := e.Subscribe("s/1", func(ev engine.Event) { got <- ev }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	pos, err := e.Append(context.Background(), []engine.Event{{Topic: "s/1", Type: "t", Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Pos != pos[0] {
			t.Fatalf("delivered at %v, appended at %v", ev.Pos, pos[0])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
	evs, err := e.Read(context.Background(), "s/1", engine.Position{}, 10)
	if err != nil || len(evs) != 1 || string(evs[0].Data) != "x" {
		t.Fatalf("Read: %v %v", evs, err)
	}
}
