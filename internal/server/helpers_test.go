package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/local"
	"github.com/herald-hub/herald/internal/hub"
)

const testKey = "test-publish-key"

type testNode struct {
	t   *testing.T
	eng engine.Engine
	hub *hub.Hub
	srv *httptest.Server
}

type nodeOptions struct {
	hub       hub.Options
	server    Config
	retention int
}

func newTestNode(t *testing.T, o nodeOptions) *testNode {
	t.Helper()
	eng, err := local.Open(t.TempDir(), local.Options{MaxLen: o.retention, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return newTestNodeOn(t, eng, o)
}

// newTestNodeOn serves eng; the node closes it at cleanup.
func newTestNodeOn(t *testing.T, eng engine.Engine, o nodeOptions) *testNode {
	t.Helper()
	if o.hub.Retry == 0 {
		o.hub.Retry = 50 * time.Millisecond
	}
	h := hub.New(eng, o.hub)
	o.server.PublishKeys = []string{testKey}
	api := New(h, o.server)
	srv := httptest.NewServer(api)
	n := &testNode{t: t, eng: eng, hub: h, srv: srv}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
		api.Close()
		_ = eng.Close()
	})
	return n
}

// eventsURL is the stream URL for topics.
func (n *testNode) eventsURL(topics ...string) string {
	q := url.Values{}
	for _, t := range topics {
		q.Add("topic", t)
	}
	return n.srv.URL + "/v1/events?" + q.Encode()
}

// publish posts one event and returns its answer; it fails the test on non-200.
func (n *testNode) publish(topic, typ, data string) publishResult {
	n.t.Helper()
	body, _ := json.Marshal(map[string]any{"topic": topic, "type": typ, "data": data})
	resp, raw := n.post("application/json", body, testKey)
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("publish: %d %s", resp.StatusCode, raw)
	}
	var r publishResult
	if err := json.Unmarshal(raw, &r); err != nil {
		n.t.Fatalf("publish answer %s: %v", raw, err)
	}
	return r
}

// post publishes body with key (none when empty) and extra headers (name,
// value pairs).
func (n *testNode) post(contentType string, body []byte, key string, header ...string) (*http.Response, []byte) {
	n.t.Helper()
	req, _ := http.NewRequest("POST", n.srv.URL+"/v1/publish", bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// dial opens a Go client stream that the test closes at cleanup.
func (n *testNode) dial(lastID string, topics ...string) *client.Stream {
	s := client.Dial(context.Background(), client.Config{
		URL:         n.eventsURL(topics...),
		LastEventID: lastID,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  200 * time.Millisecond,
	})
	n.t.Cleanup(func() { s.Close() })
	return s
}

// offsetOf reads the position of topic out of an event id (tests may look inside
// the cursor; clients may not).
func offsetOf(t testing.TB, id, topic string) uint64 {
	t.Helper()
	c, err := hub.ParseCursor(id)
	if err != nil {
		t.Fatalf("event id %q is not a cursor: %v", id, err)
	}
	p, ok := c.Lookup(topic)
	if !ok {
		t.Fatalf("cursor %q has no position for %q", id, topic)
	}
	return p.Offset
}

// next waits for the next event of s.
func next(t testing.TB, s *client.Stream, within time.Duration) client.Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatalf("stream stopped: %v", s.Err())
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
	}
	panic("unreachable")
}

// collect reads events until want of them arrived for each topic that is named in
// want (counting only events of that topic), or fails after within.
func collect(t testing.TB, s *client.Stream, want map[string]int, within time.Duration) map[string][]client.Event {
	t.Helper()
	got := map[string][]client.Event{}
	deadline := time.After(within)
	done := func() bool {
		for topic, n := range want {
			if len(got[topic]) < n {
				return false
			}
		}
		return true
	}
	for !done() {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("stream stopped: %v", s.Err())
			}
			got[ev.Topic] = append(got[ev.Topic], ev)
		case <-deadline:
			t.Fatalf("timed out: got %s, want %v", counts(got), want)
		}
	}
	return got
}

func counts(m map[string][]client.Event) string {
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, "%s=%d ", k, len(v))
	}
	return b.String()
}
