package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// publishRequest is a request as the fake publish server saw it.
type publishRequest struct {
	key, auth string
	body      string
	at        time.Time
}

// publishServer is an httptest server whose handler sees the request number,
// starting at 0.
type publishServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []publishRequest
}

func newPublishServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *publishServer {
	s := &publishServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/publish" {
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.reqs)
		s.reqs = append(s.reqs, publishRequest{key: r.Header.Get("Idempotency-Key"), auth: r.Header.Get("Authorization"), body: string(body), at: time.Now()})
		s.mu.Unlock()
		h(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *publishServer) requests() []publishRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]publishRequest(nil), s.reqs...)
}

func (s *publishServer) publisher() *Publisher {
	return &Publisher{URL: s.URL, Key: "k", HTTPClient: s.Client(), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func apiError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": code + " message"}})
}

func ok(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// A 503 with Retry-After and a 500 are retried with the same key and body,
// the first after the delay the server asked for, far above MaxBackoff.
func TestPublishRetries5xxWithSameKey(t *testing.T) {
	t.Parallel()
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			w.Header().Set("Retry-After", "1")
			apiError(w, http.StatusServiceUnavailable, "engine_unavailable")
		case 1:
			apiError(w, http.StatusInternalServerError, "internal")
		default:
			ok(w, Result{ID: "c1", Topic: "rooms/7", Offset: 3})
		}
	})
	res, err := srv.publisher().Publish(context.Background(), Message{Topic: "rooms/7", Type: "state", Data: []byte(`{"phase":"night"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{ID: "c1", Topic: "rooms/7", Offset: 3}) {
		t.Fatalf("result %+v", res)
	}
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if r.key == "" || r.key != reqs[0].key || r.body != reqs[0].body {
			t.Fatalf("request %d: key %q body %s; first: key %q body %s", i, r.key, r.body, reqs[0].key, reqs[0].body)
		}
		if r.auth != "Bearer k" {
			t.Fatalf("Authorization %q", r.auth)
		}
	}
	if err := checkKey(reqs[0].key); err != nil {
		t.Fatal(err)
	}
	if d := reqs[1].at.Sub(reqs[0].at); d < 900*time.Millisecond {
		t.Fatalf("retried %v after a 503 with Retry-After: 1", d)
	}
	// Data is sent as a JSON string, so it reaches subscribers as given.
	var body map[string]string
	if err := json.Unmarshal([]byte(reqs[0].body), &body); err != nil || body["data"] != `{"phase":"night"}` || body["type"] != "state" || body["topic"] != "rooms/7" {
		t.Fatalf("body %s (%v)", reqs[0].body, err)
	}
	// A second call is another event: another key.
	if _, err := srv.publisher().Publish(context.Background(), Message{Topic: "rooms/7"}); err != nil {
		t.Fatal(err)
	}
	if reqs = srv.requests(); reqs[3].key == reqs[0].key {
		t.Fatal("two calls sent the same generated key")
	}
}

// A 429 is retried after its Retry-After.
func TestPublishRetries429AfterRetryAfter(t *testing.T) {
	t.Parallel()
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			apiError(w, http.StatusTooManyRequests, "rate_limited")
			return
		}
		ok(w, Result{ID: "c1", Topic: "a", Offset: 1})
	})
	if _, err := srv.publisher().Publish(context.Background(), Message{Topic: "a", Key: "order-42-shipped"}); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].key != "order-42-shipped" || reqs[1].key != "order-42-shipped" {
		t.Fatalf("requests %+v", reqs)
	}
	if d := reqs[1].at.Sub(reqs[0].at); d < 900*time.Millisecond {
		t.Fatalf("retried %v after a 429 with Retry-After: 1", d)
	}
}

// A 4xx other than 408 and 429 means nothing was stored and the same request
// fails again: one attempt, and the server's code in a *PublishError.
func TestPublishDoesNotRetry4xx(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge} {
		srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
			apiError(w, status, "invalid_type")
		})
		_, err := srv.publisher().Publish(context.Background(), Message{Topic: "a", Type: "error"})
		var perr *PublishError
		if !errors.As(err, &perr) || perr.Status != status || perr.Code != "invalid_type" || perr.Message != "invalid_type message" || perr.Temporary() {
			t.Fatalf("status %d: err %#v", status, err)
		}
		if n := len(srv.requests()); n != 1 {
			t.Fatalf("status %d: %d attempts, want 1", status, n)
		}
	}
}

// A connection dropped before the answer may have stored the event: it is
// retried with the same key.
func TestPublishRetriesDroppedConnection(t *testing.T) {
	t.Parallel()
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		ok(w, Result{ID: "c1", Topic: "a", Offset: 1})
	})
	if _, err := srv.publisher().Publish(context.Background(), Message{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].key != reqs[1].key {
		t.Fatalf("requests %+v", reqs)
	}
}

// A refused connection is retried until MaxAttempts, and the error says why.
func TestPublishGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	p := &Publisher{URL: url, Key: "k", MaxAttempts: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	start := time.Now()
	_, err := p.Publish(context.Background(), Message{Topic: "a"})
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// Retries stop when ctx ends; the last answer is still in the error.
func TestPublishStopsAtContextEnd(t *testing.T) {
	t.Parallel()
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusServiceUnavailable, "engine_unavailable")
	})
	p := srv.publisher()
	p.MaxAttempts = 1 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Publish(ctx, Message{Topic: "a"})
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned %v after a 200ms deadline", d)
	}
	var perr *PublishError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &perr) || perr.Code != "engine_unavailable" {
		t.Fatalf("err %v", err)
	}
	if n := len(srv.requests()); n < 2 {
		t.Fatalf("%d attempts in 200ms", n)
	}
}

// Each event of a batch carries an id, distinct within the batch, kept across
// retries; caller keys are sent as given; the header is not sent.
func TestPublishBatchKeys(t *testing.T) {
	t.Parallel()
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			apiError(w, http.StatusServiceUnavailable, "engine_unavailable")
			return
		}
		ok(w, []Result{{ID: "c1", Topic: "a", Offset: 1}, {ID: "c2", Topic: "b", Offset: 1}, {ID: "c3", Topic: "a", Offset: 2}})
	})
	res, err := srv.publisher().PublishBatch(context.Background(), []Message{{Topic: "a"}, {Topic: "b", Key: "row-7"}, {Topic: "a", Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[2].ID != "c3" {
		t.Fatalf("results %+v", res)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].body != reqs[1].body {
		t.Fatalf("requests %+v", reqs)
	}
	var sent []map[string]string
	if err := json.Unmarshal([]byte(reqs[0].body), &sent); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 3 || sent[1]["id"] != "row-7" || sent[0]["id"] == "" || sent[0]["id"] == sent[2]["id"] || reqs[0].key != "" {
		t.Fatalf("sent %s with Idempotency-Key %q", reqs[0].body, reqs[0].key)
	}
	for _, ev := range sent {
		if err := checkKey(ev["id"]); err != nil {
			t.Fatal(err)
		}
	}
}

// A 207 is retried whole with the same ids; if it persists, the error holds
// which events were appended and which were not.
func TestPublishBatchPartial(t *testing.T) {
	t.Parallel()
	partial := []any{
		Result{ID: "c1", Topic: "a", Offset: 1},
		map[string]any{"topic": "b", "error": map[string]string{"code": "engine_unavailable", "message": "retry later"}},
	}
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMultiStatus)
		json.NewEncoder(w).Encode(partial)
	})
	p := srv.publisher()
	p.MaxAttempts = 3
	_, err := p.PublishBatch(context.Background(), []Message{{Topic: "a"}, {Topic: "b"}})
	var berr *BatchError
	if !errors.As(err, &berr) {
		t.Fatalf("err %v", err)
	}
	if berr.Errs[0] != nil || berr.Results[0] != (Result{ID: "c1", Topic: "a", Offset: 1}) {
		t.Fatalf("event 0: %+v %v", berr.Results[0], berr.Errs[0])
	}
	if e := berr.Errs[1]; e == nil || e.Code != "engine_unavailable" || berr.Results[1].Topic != "b" {
		t.Fatalf("event 1: %+v %v", berr.Results[1], e)
	}
	if f := berr.Failed(); len(f) != 1 || f[0] != 1 {
		t.Fatalf("Failed() = %v", f)
	}
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d attempts, want 3", len(reqs))
	}
	for _, r := range reqs {
		if r.body != reqs[0].body {
			t.Fatalf("retry sent %s, first %s", r.body, reqs[0].body)
		}
	}
}

// What the server would refuse on every attempt is refused before sending.
func TestPublishRefusesBeforeSending(t *testing.T) {
	t.Parallel()
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		ok(w, Result{})
	})
	p := srv.publisher()
	for _, m := range []Message{
		{Topic: "a", Key: "has space"},
		{Topic: "a", Key: strings.Repeat("k", 129)},
		{Topic: "a", Data: []byte{0xff}},
		{Topic: ""},
	} {
		if _, err := p.Publish(context.Background(), m); err == nil {
			t.Errorf("%+v: no error", m)
		}
		if _, err := p.PublishBatch(context.Background(), []Message{{Topic: "a"}, m}); err == nil {
			t.Errorf("batch with %+v: no error", m)
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}
