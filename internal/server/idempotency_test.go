package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/local"
)

// postWith publishes body with the test key and extra headers.
func (n *testNode) postWith(contentType, body string, header ...string) (*http.Response, []byte) {
	n.t.Helper()
	return n.post(contentType, []byte(body), testKey, header...)
}

// A publish retried with the same Idempotency-Key gets the first answer, and
// a stream of the topic receives the event once.
func TestIdempotencyKeyPublishesOnce(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	s := n.dial("", "a")
	waitConnected(t, n, 1)
	var answers []publishResult
	for _, c := range []struct{ contentType, body string }{
		{"application/json", `{"topic":"a","type":"t","data":"once"}`},
		{"application/json", `{"topic":"a","type":"t","data":"once"}`},
		{"application/x-www-form-urlencoded", "topic=a&type=t&data=once"},
		{"application/json", `{"topic":"a","type":"t","data":"once","id":"order-42"}`}, // the same key in the body
	} {
		resp, raw := n.postWith(c.contentType, c.body, "Idempotency-Key", "order-42")
		var r publishResult
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &r) != nil {
			t.Fatalf("publish %s: %d %s", c.body, resp.StatusCode, raw)
		}
		answers = append(answers, r)
	}
	for _, r := range answers[1:] {
		if r != answers[0] {
			t.Fatalf("retries answered %+v, want the first answer %+v", r, answers[0])
		}
	}
	// Another key appends; then the stream has seen exactly two events.
	second := n.publish("a", "t", "next")
	if ev := next(t, s, 5*time.Second); ev.Data != "once" || offsetOf(t, ev.ID, "a") != answers[0].Offset {
		t.Fatalf("first event %+v, want data once at offset %d", ev, answers[0].Offset)
	}
	if ev := next(t, s, 5*time.Second); ev.Data != "next" || offsetOf(t, ev.ID, "a") != second.Offset {
		t.Fatalf("second event %+v, want the next publish, not a retry", ev)
	}
	expectQuiet(t, s, 100*time.Millisecond)
	if head := headOffset(t, n, "a"); head != 2 {
		t.Fatalf("head %d, want 2", head)
	}
}

// In a batch each event has its own "id": a retried batch appends only the
// events the first did not.
func TestBatchIDsDedupePerEvent(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	post := func(body string) []publishResult {
		t.Helper()
		resp, raw := n.postWith("application/json", body)
		var out []publishResult
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("batch %s: %d %s", body, resp.StatusCode, raw)
		}
		return out
	}
	first := post(`[{"topic":"a","data":"1","id":"k1"},{"topic":"b","data":"2","id":"k1"},{"topic":"a","data":"3"}]`)
	again := post(`[{"topic":"a","data":"1","id":"k1"},{"topic":"b","data":"2","id":"k1"},{"topic":"a","data":"3","id":"k3"},{"topic":"a","data":"3","id":"k3"}]`)
	if again[0] != first[0] || again[1] != first[1] {
		t.Fatalf("retried events answered %+v, want %+v", again[:2], first[:2])
	}
	if again[2] != again[3] || again[2].Offset != 3 {
		t.Fatalf("one id twice in a batch: %+v, want one new event at offset 3", again[2:])
	}
	if a, b := headOffset(t, n, "a"), headOffset(t, n, "b"); a != 3 || b != 1 {
		t.Fatalf("heads a=%d b=%d, want 3 and 1", a, b)
	}
}

func TestBadIdempotencyKeysAreRefused(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	long := strings.Repeat("k", MaxIdempotencyKeyLen+1)
	for _, c := range []struct {
		name, contentType, body string
		header                  []string
		code                    string
	}{
		{"empty header", "application/json", `{"topic":"a"}`, []string{"Idempotency-Key", ""}, "invalid_idempotency_key"},
		{"too long", "application/json", `{"topic":"a"}`, []string{"Idempotency-Key", long}, "invalid_idempotency_key"},
		{"space", "application/json", `{"topic":"a"}`, []string{"Idempotency-Key", "a b"}, "invalid_idempotency_key"},
		{"not ASCII", "application/json", `{"topic":"a"}`, []string{"Idempotency-Key", "café"}, "invalid_idempotency_key"},
		{"two headers", "application/json", `{"topic":"a"}`, []string{"Idempotency-Key", "x", "Idempotency-Key", "y"}, "invalid_idempotency_key"},
		{"header on a batch", "application/json", `[{"topic":"a"}]`, []string{"Idempotency-Key", "x"}, "invalid_idempotency_key"},
		{"header and id differ", "application/json", `{"topic":"a","id":"x"}`, []string{"Idempotency-Key", "y"}, "invalid_idempotency_key"},
		{"form too long", "application/x-www-form-urlencoded", "topic=a", []string{"Idempotency-Key", long}, "invalid_idempotency_key"},
		{"empty id", "application/json", `{"topic":"a","id":""}`, nil, "invalid_idempotency_key"},
		{"id with control", "application/json", `{"topic":"a","id":"x\u0001"}`, nil, "invalid_idempotency_key"},
		{"id not a string", "application/json", `{"topic":"a","id":42}`, nil, "bad_json"},
		{"bad id in batch", "application/json", `[{"topic":"a","id":"ok"},{"topic":"a","id":"` + long + `"}]`, nil, "invalid_idempotency_key"},
	} {
		resp, raw := n.postWith(c.contentType, c.body, c.header...)
		var e errorBody
		_ = json.Unmarshal(raw, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want 400 %s", c.name, resp.StatusCode, raw, c.code)
		}
		if c.name == "bad id in batch" && !strings.Contains(e.Error.Message, "event 1") {
			t.Errorf("%s: message %q does not name the event", c.name, e.Error.Message)
		}
	}
	if head := headOffset(t, n, "a"); head != 0 {
		t.Fatalf("refused publishes appended %d events", head)
	}
	// The longest key and every visible character are fine.
	for _, k := range []string{strings.Repeat("k", MaxIdempotencyKeyLen), "!~azAZ09-_.:/{}\"\\"} {
		if resp, raw := n.postWith("application/json", `{"topic":"a"}`, "Idempotency-Key", k); resp.StatusCode != http.StatusOK {
			t.Errorf("key %q: %d %s", k, resp.StatusCode, raw)
		}
	}
}

// failingEngine appends like its local engine, except to the topics in fail:
// those events are left out and reported in an *engine.AppendError, the way
// an engine whose topics live on different partitions fails.
type failingEngine struct {
	*local.Engine
	mu   sync.Mutex
	fail map[string]bool
}

func (f *failingEngine) setFailing(topics ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = map[string]bool{}
	for _, t := range topics {
		f.fail[t] = true
	}
}

func (f *failingEngine) Append(ctx context.Context, events []engine.Event) ([]engine.Position, error) {
	var keep []engine.Event
	var at []int
	perr := &engine.AppendError{Topics: map[string]error{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, ev := range events {
		if f.fail[ev.Topic] {
			perr.Topics[ev.Topic] = fmt.Errorf("%w: partition down", engine.ErrUnavailable)
			continue
		}
		keep = append(keep, ev)
		at = append(at, i)
	}
	out := make([]engine.Position, len(events))
	if len(keep) > 0 {
		pos, err := f.Engine.Append(ctx, keep)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			out[i] = pos[j]
		}
	}
	if len(perr.Topics) > 0 {
		return out, perr
	}
	return out, nil
}

func TestBatchFailingForSomeTopicsSaysWhichEventsWereAccepted(t *testing.T) {
	eng, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fe := &failingEngine{Engine: eng}
	fe.setFailing("down")
	n := newTestNodeOn(t, fe, nodeOptions{})

	body := `[{"topic":"up","data":"1","id":"k1"},{"topic":"down","data":"2","id":"k2"},{"topic":"up","data":"3","id":"k3"}]`
	resp, raw := n.postWith("application/json", body)
	if resp.StatusCode != http.StatusMultiStatus || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("partial append: %d %v %s, want 207 with Retry-After", resp.StatusCode, resp.Header, raw)
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) != 3 {
		t.Fatalf("answer %s: %v", raw, err)
	}
	for i, want := range []string{`"up" 1`, `"down" error`, `"up" 2`} {
		got := string(items[i]["topic"]) + " " + string(items[i]["offset"])
		if _, failed := items[i]["error"]; failed {
			got = string(items[i]["topic"]) + " error"
			var f publishFailure
			if json.Unmarshal(mustMarshal(t, items[i]), &f) != nil || f.Error.Code != "engine_unavailable" || f.Error.Message == "" || items[i]["id"] != nil {
				t.Fatalf("event %d answered %s, want only topic and error", i, items[i])
			}
		} else if items[i]["id"] == nil {
			got += " without id"
		}
		if got != want {
			t.Fatalf("event %d answered %s (%s), want %s", i, got, raw, want)
		}
	}

	// Once the topic is back, the same batch appends only what is missing.
	fe.setFailing()
	resp, raw = n.postWith("application/json", body)
	var results []publishResult
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &results) != nil || results[0].Offset != 1 || results[2].Offset != 2 || results[1].Offset != 1 {
		t.Fatalf("retry: %d %s", resp.StatusCode, raw)
	}
	if up := headOffset(t, n, "up"); up != 2 {
		t.Fatalf("head of up %d after the retry, want 2", up)
	}

	// Nothing appended at all, or a single event, is a plain 503.
	fe.setFailing("down")
	for _, b := range []string{`[{"topic":"down"}]`, `{"topic":"down"}`} {
		resp, raw := n.postWith("application/json", b)
		var e errorBody
		if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(raw, &e) != nil || e.Error.Code != "engine_unavailable" {
			t.Fatalf("%s: %d %s, want 503", b, resp.StatusCode, raw)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
