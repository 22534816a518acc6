package redis

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/redistest"
	"github.com/herald-hub/herald/presence"
	"github.com/herald-hub/herald/presence/presencetest"
)

// presenceOpener opens registries of engines that share a key prefix per
// test: the nodes of one Herald.
func presenceOpener(rawURL string, tune func(*Options)) presencetest.Opener {
	var mu sync.Mutex
	opts := map[*testing.T]Options{}
	return presencetest.Opener{
		Shared: true,
		Open: func(t *testing.T, popt presence.Options) presence.Registry {
			mu.Lock()
			opt, ok := opts[t]
			if !ok {
				opt = testOptions(t, rawURL)
				if tune != nil {
					tune(&opt)
				}
				opts[t] = opt
			}
			mu.Unlock()
			r := mustOpen(t, opt).Presence(popt)
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
}

func TestPresenceConformance(t *testing.T) {
	presencetest.Run(t, presenceOpener(testURL(t), nil))
}

// On a Redis Cluster, each script call touches one hash tag.
func TestPresenceConformanceOnRedisCluster(t *testing.T) {
	presencetest.Run(t, presenceOpener(redistest.StartCluster(t, 3).URL(), nil))
}

// abandon stops r as a killed node would: no more heartbeats, nothing removed.
func (r *registry) abandon() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stop()
	<-r.done
}

func fastPresence(o *Options) {
	o.PresenceBeat, o.PresenceTTL = 100*time.Millisecond, time.Second // margins for a loaded machine
}

// A node that dies without a word: its users go offline once its heartbeat
// is older than the TTL, and a live node removes its entries, announcing
// the last stream's leave.
func TestPresenceOfAKilledNode(t *testing.T) {
	o := presenceOpener(testURL(t), fastPresence)
	var rec presencetest.Recorder
	dead := o.Open(t, presence.Options{Node: "dead"}).(*registry)
	live := o.Open(t, presence.Options{Node: "live", OnChange: rec.Record})
	c := presence.Conn{ID: presence.NewID(), User: "u1", Topics: []string{"rooms/1"}}
	dead.Join(c)
	presencetest.WantUser(t, live, "u1", map[string]int{"dead": 1})
	killed := time.Now()
	dead.abandon()
	presencetest.WantUser(t, live, "u1", nil)
	t.Logf("offline %v after the kill (TTL %v, heartbeat %v)", time.Since(killed).Round(time.Millisecond), dead.ttl, dead.beat)
	rec.Want(t, presence.Change{Topic: "rooms/1", User: "u1"})
	// Removed, not only hidden: nothing of it is left in Redis.
	presencetest.Eventually(t, "reaped", func() error {
		return wantEmptyHashes(dead, "u1", "rooms/1")
	})
	if got := dead.e.presenceReaped.Load() + live.(*registry).e.presenceReaped.Load(); got != 1 {
		t.Errorf("reaped %d streams, want 1", got)
	}
}

func wantEmptyHashes(r *registry, user, topic string) error {
	c := r.e.client
	for _, k := range []string{r.userKey(user), r.topicKey(topic), r.topicKey(topic) + ":n"} {
		n, err := c.Do(context.Background(), c.B().Hlen().Key(k).Build()).AsInt64()
		if err != nil {
			return err
		}
		if n != 0 {
			return &leftover{k, n}
		}
	}
	return nil
}

type leftover struct {
	key string
	n   int64
}

func (l *leftover) Error() string { return l.key + " still has entries" }

// A flushed or restarted Redis loses the registry: every node writes its
// streams again, and the users come back online without reconnecting.
func TestPresenceAfterRedisLostIt(t *testing.T) {
	srv := redistest.Start(t)
	o := presenceOpener(srv.URL(), fastPresence)
	r := o.Open(t, presence.Options{Node: "n1"}).(*registry)
	r.Join(presence.Conn{ID: presence.NewID(), User: "u1", Topics: []string{"rooms/1"}})
	presencetest.WantUser(t, r, "u1", map[string]int{"n1": 1})
	c := r.e.client
	if err := c.Do(context.Background(), c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	presencetest.WantUser(t, r, "u1", map[string]int{"n1": 1})
	presencetest.WantTopic(t, r, "rooms/1", map[string]int{"u1": 1})
	if r.e.presenceLost.Load() == 0 {
		t.Error("the loss was not counted")
	}

	// Redis down: joins and leaves wait, and are written once it is back.
	srv.Stop()
	gone := presence.Conn{ID: presence.NewID(), User: "u2", Topics: []string{"rooms/1"}}
	r.Join(gone)
	r.Join(presence.Conn{ID: presence.NewID(), User: "u3", Topics: []string{"rooms/1"}})
	time.Sleep(3 * r.beat)
	r.Leave(gone.ID)
	srv.Run()
	presencetest.WantTopic(t, r, "rooms/1", map[string]int{"u1": 1, "u3": 1})
}

// A node that was judged dead (cut off longer than the TTL) while another
// removed its entries comes back under a new incarnation: the removal,
// which compares values, cannot take the entries it writes again.
func TestPresenceNewIncarnation(t *testing.T) {
	o := presenceOpener(testURL(t), fastPresence)
	r := o.Open(t, presence.Options{Node: "n1"}).(*registry)
	other := o.Open(t, presence.Options{Node: "n2"}).(*registry)
	r.Join(presence.Conn{ID: presence.NewID(), User: "u1", Topics: []string{"rooms/1"}})
	presencetest.WantUser(t, other, "u1", map[string]int{"n1": 1})
	old := r.currentMember()
	// Judged dead: its member is removed, as a reaper does last.
	c := r.e.client
	if err := c.Do(context.Background(), c.B().Zrem().Key(r.nodesKey()).Member(old).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	presencetest.Eventually(t, "new incarnation", func() error {
		if r.currentMember() == old {
			return &leftover{"member", 1}
		}
		return nil
	})
	// The old incarnation's leftovers are reaped; the stream stays, once.
	other.reap(context.Background(), []string{old})
	presencetest.WantUser(t, other, "u1", map[string]int{"n1": 1})
	presencetest.WantTopic(t, other, "rooms/1", map[string]int{"u1": 1})
}
