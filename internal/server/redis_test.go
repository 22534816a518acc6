package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine/redis"
	"github.com/herald-hub/herald/internal/redistest"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redisNode serves a Redis engine on rawURL under a key prefix of its own,
// deleted when the test ends.
func redisNode(t *testing.T, rawURL string, opt redis.Options, o ...nodeOptions) *testNode {
	t.Helper()
	co, err := rueidis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	opt.Client, opt.Prefix = co, redistest.Prefix(t, co, "server")
	eng, err := redis.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	var no nodeOptions
	if len(o) > 0 {
		no = o[0]
	}
	return newTestNodeOn(t, eng, no)
}

// readyz asks n's /readyz, and decodes an error body, if any.
func (n *testNode) readyz() (int, errorBody) {
	n.t.Helper()
	resp := n.get("/readyz")
	defer resp.Body.Close()
	var b errorBody
	_ = json.NewDecoder(resp.Body).Decode(&b)
	return resp.StatusCode, b
}

// A node on Redis is not ready while Redis is down, and its publishes answer
// 503 engine_unavailable with Retry-After; once Redis is back, it is ready
// and publishes again.
func TestReadinessFollowsRedis(t *testing.T) {
	r := redistest.Start(t)
	n := redisNode(t, r.URL(), redis.Options{})
	publish := func() (*http.Response, errorBody) {
		resp, raw := n.postWith("application/json", `{"topic":"ready/t","data":"x"}`)
		var b errorBody
		_ = json.Unmarshal(raw, &b)
		return resp, b
	}
	ready := func() bool { code, _ := n.readyz(); return code == http.StatusOK }

	eventually(t, "ready on a running Redis", ready)
	if resp, b := publish(); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish on a running Redis: %d %+v", resp.StatusCode, b)
	}

	r.Stop()
	stopped := time.Now()
	var body errorBody
	eventually(t, "not ready once Redis is stopped", func() bool {
		var code int
		code, body = n.readyz()
		return code == http.StatusServiceUnavailable
	})
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("not ready only %v after Redis stopped", d)
	}
	t.Logf("/readyz with Redis stopped: %+v", body)
	if body.Error.Code != "engine_unavailable" || body.Error.Message == "" {
		t.Errorf("/readyz 503 body %+v, want engine_unavailable and a message", body)
	}
	resp, b := publish()
	if resp.StatusCode != http.StatusServiceUnavailable || b.Error.Code != "engine_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("publish with Redis stopped: %d %+v Retry-After %q, want 503 engine_unavailable with Retry-After", resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}

	r.Run()
	eventually(t, "ready once Redis is back", ready)
	if resp, b := publish(); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish once Redis is back: %d %+v", resp.StatusCode, b)
	}
}

// A node on Redis exports the engine's own counters on /metrics.
func TestMetricsShowRedisEngineCounters(t *testing.T) {
	n := redisNode(t, redistest.URL(t), redis.Options{SweepInterval: 50 * time.Millisecond})
	scrape := func() string {
		resp := n.get("/metrics")
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := scrape()
	for _, name := range []string{"reconnects", "lost_topics", "probes_sent", "probes_failed", "sweeps", "sweep_behind_topics"} {
		if !strings.Contains(m, "# TYPE herald_engine_"+name+"_total counter") {
			t.Errorf("/metrics lacks the counter herald_engine_%s_total", name)
		}
	}
	eventually(t, "a sweep counted", func() bool { return !strings.Contains(scrape(), "herald_engine_sweeps_total 0\n") })
}
