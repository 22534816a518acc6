package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine/redis"
	"github.com/herald-hub/herald/internal/hub"
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

// A node on Redis is not ready while Redis is down, and its publishes answer
// 503 engine_unavailable with Retry-After; once Redis is back, it is ready
// and publishes again.
func TestReadinessFollowsRedis(t *testing.T) {
	r := redistest.Start(t)
	co, err := rueidis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	eng, err := redis.Open(redis.Options{Client: co, Prefix: "herald-test-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(eng, hub.Options{Retry: 50 * time.Millisecond})
	srv := httptest.NewServer(New(h, Config{PublishKeys: []string{testKey}}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
		_ = eng.Close()
		srv.Client().CloseIdleConnections()
	})
	get := func(path string) (int, errorBody) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b errorBody
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &b)
		return resp.StatusCode, b
	}
	publish := func() (*http.Response, errorBody) {
		body := []byte(`{"topic":"ready/t","data":"x"}`)
		req, _ := http.NewRequest("POST", srv.URL+"/v1/publish", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b errorBody
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &b)
		return resp, b
	}
	ready := func() bool { code, _ := get("/readyz"); return code == http.StatusOK }

	eventually(t, "ready on a running Redis", ready)
	if resp, b := publish(); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish on a running Redis: %d %+v", resp.StatusCode, b)
	}

	r.Stop()
	stopped := time.Now()
	var body errorBody
	eventually(t, "not ready once Redis is stopped", func() bool {
		var code int
		code, body = get("/readyz")
		return code == http.StatusServiceUnavailable
	})
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("not ready only %v after Redis stopped", d)
	}
	t.Logf("/readyz with Redis stopped: %+v", body)
	if body.Error.Code == "" || body.Error.Message == "" {
		t.Errorf("/readyz 503 body %+v, want the error shape", body)
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
	raw := os.Getenv("HERALD_TEST_REDIS_URL")
	if raw == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("HERALD_TEST_REDIS_URL is not set, and CI=true: the Redis tests must run in CI")
		}
		t.Skip("set HERALD_TEST_REDIS_URL to run the Redis tests")
	}
	co, err := rueidis.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := redis.Open(redis.Options{Client: co, Prefix: "herald-test-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":", SweepInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(eng, hub.Options{})
	srv := httptest.NewServer(New(h, Config{PublishKeys: []string{testKey}}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
		_ = eng.Close()
		srv.Client().CloseIdleConnections()
	})
	scrape := func() string {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
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
