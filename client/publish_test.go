package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
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

// heraldBin builds the herald binary once for the tests that run it: a test
// of package client cannot double as the binary the way cmd/herald's do.
var heraldBin = sync.OnceValues(func() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
	tmp, err := os.MkdirTemp("", "herald-client-test-")
	if err != nil {
		return "", err
	}
	heraldTmp = tmp
	bin := filepath.Join(tmp, "herald")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/herald")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/herald: %v\n%s", err, out)
	}
	return bin, nil
})

// heraldTmp holds the built binary; TestMain removes it.
var heraldTmp string

const heraldKey = "client-test-publish-key"

// herald is a real herald process on a loopback port.
type herald struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed once the process has exited
}

func startHerald(t *testing.T, dataDir string) *herald {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts herald")
	}
	bin, err := heraldBin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-addr", "127.0.0.1:0", "-data-dir", dataDir, "-publish-key", heraldKey, "-retry", "100ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &herald{cmd: cmd, done: make(chan struct{})}
	addrc := make(chan string, 1)
	var logs strings.Builder // written by the goroutine until done
	go func() {
		re := regexp.MustCompile(`msg=listening addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(h.kill)
	select {
	case h.addr = <-addrc:
	case <-h.done:
		t.Fatalf("herald exited before listening:\n%s", logs.String())
	case <-time.After(20 * time.Second):
		h.kill()
		t.Fatalf("herald did not listen within 20s:\n%s", logs.String())
	}
	return h
}

// kill ends the process at once, as a crash would, and waits for it.
func (h *herald) kill() {
	h.cmd.Process.Kill()
	<-h.done
}

func (h *herald) url() string { return "http://" + h.addr }

func (h *herald) publisher() *Publisher {
	return &Publisher{URL: h.url(), Key: heraldKey, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
}

// subscribe streams topic from after the cursor from (from its newest event
// when empty) and waits until the stream is connected.
func (h *herald) subscribe(t *testing.T, topic, from string) *Stream {
	t.Helper()
	s := Dial(context.Background(), Config{URL: h.url() + "/v1/events?topic=" + topic, LastEventID: from, Header: http.Header{"Authorization": {"Bearer " + heraldKey}}})
	t.Cleanup(func() { s.Close() })
	return s
}

// receiveUntil returns the events of s up to the first of type last.
func receiveUntil(t *testing.T, s *Stream, last string) []Event {
	t.Helper()
	var got []Event
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("stream stopped after %d events: %v", len(got), s.Err())
			}
			got = append(got, ev)
			if ev.Type == last {
				return got
			}
		case <-timeout:
			t.Fatalf("no %q event within 15s; got %+v", last, got)
		}
	}
}

// End to end: what Publish and PublishBatch send is what subscribers get, and
// a key published twice is one event.
func TestPublishToHerald(t *testing.T) {
	t.Parallel()
	h := startHerald(t, t.TempDir())
	p := h.publisher()
	ctx := context.Background()
	first, err := p.Publish(ctx, Message{Topic: "rooms/7", Type: "first"})
	if err != nil {
		t.Fatal(err)
	}
	s := h.subscribe(t, "rooms/7", first.ID)

	res, err := p.Publish(ctx, Message{Topic: "rooms/7", Type: "state", Data: []byte(`{"phase": "night"}`), Key: "order-42"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Topic != "rooms/7" || res.Offset != first.Offset+1 || res.ID == "" {
		t.Fatalf("result %+v after %+v", res, first)
	}
	again, err := p.Publish(ctx, Message{Topic: "rooms/7", Type: "state", Data: []byte("other"), Key: "order-42"})
	if err != nil || again != res {
		t.Fatalf("same key again: %+v, %v; first %+v", again, err, res)
	}
	batch, err := p.PublishBatch(ctx, []Message{{Topic: "rooms/7", Type: "b", Data: []byte("line 1\nline 2")}, {Topic: "rooms/7", Type: "end"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != 2 || batch[0].Offset != res.Offset+1 || batch[1].Offset != res.Offset+2 {
		t.Fatalf("batch results %+v", batch)
	}
	got := receiveUntil(t, s, "end")
	if len(got) != 3 {
		t.Fatalf("received %+v", got)
	}
	// Data is delivered as given, not re-encoded.
	if got[0].Type != "state" || got[0].Data != `{"phase": "night"}` || got[1].Data != "line 1\nline 2" {
		t.Fatalf("received %+v", got)
	}

	_, err = p.Publish(ctx, Message{Topic: "rooms/7", Type: "error"})
	var perr *PublishError
	if !errors.As(err, &perr) || perr.Status != http.StatusBadRequest || perr.Code != "invalid_type" {
		t.Fatalf("reserved type: %v", err)
	}
	bad := h.publisher()
	bad.Key = "wrong"
	if _, err = bad.Publish(ctx, Message{Topic: "rooms/7"}); !errors.As(err, &perr) || perr.Status != http.StatusUnauthorized {
		t.Fatalf("wrong key: %v", err)
	}
}

// dropProxy forwards loopback TCP connections to a backend. Armed, it lets
// the next request through but drops its answer, then refuses every
// connection until it is given a backend again: the publisher cannot know
// whether its event was stored.
type dropProxy struct {
	ln      net.Listener
	dropped chan struct{} // closed once an answer was dropped

	mu      sync.Mutex
	backend string // "" while down
	armed   bool
	conns   int
	wg      sync.WaitGroup
}

func newDropProxy(t *testing.T, backend string) *dropProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, backend: backend, dropped: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *dropProxy) setBackend(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backend = addr
}

func (p *dropProxy) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = true
}

func (p *dropProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

func (p *dropProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns++
		backend, drop := p.backend, p.armed
		if drop {
			p.armed = false
			p.backend = "" // down until the test restarts the server
		}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c, backend, drop)
		}()
	}
}

func (p *dropProxy) forward(c net.Conn, backend string, drop bool) {
	defer c.Close()
	if backend == "" {
		return
	}
	b, err := net.DialTimeout("tcp", backend, 5*time.Second)
	if err != nil {
		return
	}
	defer b.Close()
	go func() {
		io.Copy(b, c)
		b.Close()
	}()
	if !drop {
		io.Copy(c, b)
		return
	}
	// The first bytes of the answer mean the server stored the event: drop
	// them and the connection.
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf [1]byte
	if n, _ := b.Read(buf[:]); n == 1 {
		close(p.dropped)
	}
}

// A server killed after it stored an event but before its answer arrived,
// then restarted on the same data: the publisher's retries carry the same
// key, so the event is stored once.
func TestPublishServerKilledMidRetry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := startHerald(t, dir)
	const topic = "orders/42"
	ctx := context.Background()
	marker, err := h.publisher().Publish(ctx, Message{Topic: topic, Type: "marker"})
	if err != nil {
		t.Fatal(err)
	}

	proxy := newDropProxy(t, h.addr)
	proxy.arm()
	p := &Publisher{URL: "http://" + proxy.ln.Addr().String(), Key: heraldKey, MaxAttempts: 1000, MaxElapsed: 30 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := p.Publish(ctx, Message{Topic: topic, Type: "shipped", Data: []byte("once")})
		done <- outcome{res, err}
	}()
	select {
	case <-proxy.dropped:
	case o := <-done:
		t.Fatalf("publish returned before its answer was dropped: %+v %v", o.res, o.err)
	case <-time.After(15 * time.Second):
		t.Fatal("no answer to drop within 15s")
	}
	h.kill()
	// Let the publisher fail against the dead server a few times.
	for deadline := time.Now().Add(10 * time.Second); proxy.connections() < 4; {
		if time.Now().After(deadline) {
			t.Fatal("the publisher did not retry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h2 := startHerald(t, dir)
	proxy.setBackend(h2.addr)
	var o outcome
	select {
	case o = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("publish did not return within 30s of the restart")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.res.Offset != marker.Offset+1 {
		t.Fatalf("result %+v, marker %+v", o.res, marker)
	}

	if _, err := h2.publisher().Publish(ctx, Message{Topic: topic, Type: "end"}); err != nil {
		t.Fatal(err)
	}
	got := receiveUntil(t, h2.subscribe(t, topic, marker.ID), "end")
	if len(got) != 2 || got[0].Type != "shipped" || got[0].Data != "once" {
		t.Fatalf("history after the marker: %+v, want the event once then end", got)
	}
}

// An answer that does not come within the HTTP client's timeout is retried
// with the same key: the event may have been stored.
func TestPublishRetriesTimeout(t *testing.T) {
	t.Parallel()
	srv := newPublishServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			<-r.Context().Done() // until the client gives up on this attempt
			return
		}
		ok(w, Result{ID: "c1", Topic: "a", Offset: 1})
	})
	p := srv.publisher()
	p.HTTPClient = &http.Client{Transport: srv.Client().Transport, Timeout: 100 * time.Millisecond}
	if _, err := p.Publish(context.Background(), Message{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].key != reqs[1].key {
		t.Fatalf("requests %+v", reqs)
	}
}

// Errors that the same request meets again are not retried: a server that
// demands a client certificate, a URL the client cannot use.
func TestPublishDoesNotRetryWhatCannotChange(t *testing.T) {
	var handshakes atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		handshakes.Add(1)
		return nil, nil
	}}
	srv.StartTLS()
	defer srv.Close()
	for _, tc := range []struct {
		name string
		p    *Publisher
	}{
		{"client certificate required", &Publisher{URL: srv.URL, Key: "k", HTTPClient: srv.Client()}},
		{"unsupported scheme", &Publisher{URL: "ftp://127.0.0.1:1", Key: "k"}},
	} {
		before := handshakes.Load()
		tc.p.MaxAttempts, tc.p.MinBackoff, tc.p.MaxBackoff = 5, time.Millisecond, time.Millisecond
		_, err := tc.p.Publish(context.Background(), Message{Topic: "a", Data: []byte("x")})
		if err == nil || strings.Contains(err.Error(), "gave up after") {
			t.Errorf("%s: %v, want a failure without retries", tc.name, err)
		}
		if n := handshakes.Load() - before; n > 1 {
			t.Errorf("%s: %d TLS handshakes, want 1", tc.name, n)
		}
	}
}
