package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine/local"
	"github.com/herald-hub/herald/engine/redis"
	"github.com/herald-hub/herald/internal/hub"
	"github.com/herald-hub/herald/internal/redistest"
	"github.com/herald-hub/herald/internal/testenv"
)

// nextStats waits for the next stats event of s, skipping others.
func nextStats(t *testing.T, s *client.Stream) statsEvent {
	t.Helper()
	ev := testenv.NextOfType(t, s, "stats")
	if ev.Topic != StatsTopic {
		t.Fatalf("stats on %q", ev.Topic)
	}
	var st statsEvent
	if err := json.Unmarshal([]byte(ev.Data), &st); err != nil {
		t.Fatalf("stats %s: %v", ev.Data, err)
	}
	return st
}

// Each node appends its statistics to herald/stats; a stream opened with the
// publish key reads them.
func TestStatsArriveOnHeraldStats(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{AdminStats: 50 * time.Millisecond, NodeID: "n1"}})
	admin := n.dialAs(testKey, StatsTopic)
	other := n.dial("", "rooms/7")
	eventually(t, "streams open", func() bool { return admin.LastEventID() != "" && other.LastEventID() != "" })
	st := nextStats(t, admin)
	if st.Node != "n1" || st.IntervalMS != 50 || st.Streams < 1 || st.Topics < 1 || len(st.TopTopics) == 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", st.At); err != nil || !strings.HasSuffix(st.At, "Z") {
		t.Fatalf("at %q: %v", st.At, err)
	}
	// The keys are the documented ones.
	raw, _ := json.Marshal(st)
	for _, k := range []string{`"node"`, `"at"`, `"interval_ms"`, `"uptime_s"`, `"streams"`, `"topics"`, `"publishes_total"`, `"events_total"`, `"deliveries_total"`, `"drops_total"`, `"gaps_total"`, `"rates":{"publishes":`, `"events":`, `"deliveries":`, `"drops":`, `"top_topics":[{"topic":`} {
		if !strings.Contains(string(raw), k) {
			t.Errorf("stats lack %s: %s", k, raw)
		}
	}
	// Publishing shows in the totals.
	before := st.PublishesTotal
	n.publish("rooms/7", "x", "1")
	n.postWith("application/json", `[{"topic":"rooms/7","data":"2"},{"topic":"rooms/8","data":"3"}]`)
	next(t, other, 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for st.PublishesTotal < before+2 || st.EventsTotal < 3 || st.DeliveriesTotal < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("publishes not counted: %+v", st)
		}
		st = nextStats(t, admin)
	}
	if st.TopTopics[0].Streams < 1 {
		t.Fatalf("top topics %+v", st.TopTopics)
	}
}

// herald/ is Herald's: nobody publishes there, and only a publish key or a
// grant that names herald/ reads it.
func TestHeraldTopicsAreReserved(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), AnonymousSubscribe: []auth.Pattern{auth.MustParsePattern("**")}}})
	for _, body := range []string{
		`{"topic":"herald/stats","type":"stats","data":"{}"}`,
		`{"topic":"herald/other","data":"x"}`,
		`[{"topic":"rooms/1","data":"x"},{"topic":"herald/stats","data":"x"}]`,
	} {
		resp, raw := n.postWith("application/json", body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(raw), "reserved_topic") {
			t.Errorf("publish %s: %d %s, want 403 reserved_topic", body, resp.StatusCode, raw)
		}
	}
	all := token(t, "ops", &auth.Grants{Subscribe: []string{"**"}, Publish: []string{"**"}}, nil)
	if code, raw := n.call("POST", "/v1/publish", all, `{"topic":"herald/stats","data":"x"}`); code != http.StatusForbidden || !strings.Contains(string(raw), "reserved_topic") {
		t.Errorf("publish with a ** token: %d %s", code, raw)
	}
	// Reading: a ** or * grant does not reach it, anonymous ** neither.
	for _, g := range []string{"**", "*/stats", "*/*"} {
		tok := token(t, "ops", &auth.Grants{Subscribe: []string{g}}, nil)
		wantError(t, n.get(q(StatsTopic), bearerH(tok)...), http.StatusForbidden, "forbidden_topic")
	}
	wantError(t, n.get(q(StatsTopic)), http.StatusUnauthorized, "missing_credentials")
	// A grant that names it, or the publish key, does.
	for _, cred := range []string{testKey, token(t, "ops", &auth.Grants{Subscribe: []string{"herald/*"}}, nil), token(t, "ops", &auth.Grants{Subscribe: []string{"herald/stats"}}, nil)} {
		resp := n.get(q(StatsTopic), bearerH(cred)...)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("stream on herald/stats: %d", resp.StatusCode)
		}
	}
}

// Without a JWT key (development), anonymous clients read every topic but
// users/** and herald/**.
func TestHeraldStatsIsClosedToAnonymousInDevelopment(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	wantError(t, n.get(q(StatsTopic)), http.StatusUnauthorized, "missing_credentials")
	wantError(t, n.get("/v1/presence?topic="+StatsTopic), http.StatusUnauthorized, "missing_credentials")
}

// The statistics goroutine is the server's: Close stops it, and nothing is
// appended after.
func TestStatsStopOnClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	eng, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	h := hub.New(eng, hub.Options{})
	api := New(h, Config{AdminStats: 5 * time.Millisecond})
	eventually(t, "stats appended", func() bool {
		head, err := eng.Head(context.Background(), StatsTopic)
		return err == nil && head.Offset >= 2
	})
	_ = h.Shutdown(context.Background())
	api.Close()
	head, _ := eng.Head(context.Background(), StatsTopic)
	time.Sleep(50 * time.Millisecond)
	if again, _ := eng.Head(context.Background(), StatsTopic); again != head {
		t.Fatalf("appended after Close: %v then %v", head, again)
	}
}

// An append that fails is counted and logged, and the next interval tries
// again: statistics never stop a node.
func TestStatsAppendFailureIsCounted(t *testing.T) {
	eng, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fe := &failingEngine{Engine: eng}
	fe.setFailing(StatsTopic)
	var logs syncBuffer
	n := newTestNodeOn(t, fe, nodeOptions{server: Config{AdminStats: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}})
	eventually(t, "failures counted", func() bool { return n.metric("herald_admin_stats_dropped_total") >= 3 })
	dropped := n.metric("herald_admin_stats_dropped_total")
	if c := strings.Count(logs.String(), "admin statistics not published"); c == 0 || float64(c) >= dropped {
		t.Errorf("%d warnings logged for %v failures, want some, rate-limited:\n%s", c, dropped, logs.String())
	}
	fe.setFailing()
	admin := n.dialAs(testKey, StatsTopic)
	nextStats(t, admin)
}

// The statistics go through the engine: a stream on one node of a cluster
// receives every node's.
func TestStatsOfEveryNodeOnRedis(t *testing.T) {
	co, err := rueidis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := redistest.Prefix(t, co, "server")
	var nodes []*testNode
	for _, id := range []string{"a", "b"} {
		eng, err := redis.Open(redis.Options{Client: co, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, newTestNodeOn(t, eng, nodeOptions{server: Config{NodeID: id, AdminStats: 50 * time.Millisecond}}))
	}
	admin := nodes[0].dialAs(testKey, StatsTopic)
	seen := map[string]bool{}
	for len(seen) < 2 {
		seen[nextStats(t, admin).Node] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("stats from %v", seen)
	}
}
