package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeHub is a minimal SSE server that misbehaves on purpose: it never
// delivers the events whose sequence number is in drop and delivers those in
// repeat twice. Events are numbered per topic, and a stream that sends
// Last-Event-ID first gets every event after that one.
type fakeHub struct {
	drop, repeat map[uint64]bool

	mu      sync.Mutex
	cut     chan struct{} // closed by cutAll: ends the streams open then
	subs    map[string]map[chan string]bool
	latest  map[string]string   // topic -> last payload published, for /state
	history map[string][]string // topic -> every event published, framed
}

func newFakeHub(drop, repeat []uint64) *fakeHub {
	h := &fakeHub{drop: map[uint64]bool{}, repeat: map[uint64]bool{}, subs: map[string]map[chan string]bool{}, cut: make(chan struct{}),
		latest: map[string]string{}, history: map[string][]string{}}
	for _, s := range drop {
		h.drop[s] = true
	}
	for _, s := range repeat {
		h.repeat[s] = true
	}
	return h
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	topic := r.URL.Query().Get("topic")
	switch r.URL.Path {
	case "/pub":
		b, _ := io.ReadAll(r.Body)
		seq, _, ok := parsePayload(string(b))
		if !ok {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		times := 1
		if h.drop[seq] {
			times = 0
		} else if h.repeat[seq] {
			times = 2
		}
		h.mu.Lock()
		h.latest[topic] = string(b)
		ev := fmt.Sprintf("id: %d\nevent: bench\ndata: %s\n\n", len(h.history[topic])+1, b)
		h.history[topic] = append(h.history[topic], ev)
		for c := range h.subs[topic] {
			for range times {
				c <- ev
			}
		}
		h.mu.Unlock()
	case "/state":
		h.mu.Lock()
		v, ok := h.latest[topic]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, v)
	case "/sse":
		c := make(chan string, 1000)
		var replay []string
		h.mu.Lock()
		if h.subs[topic] == nil {
			h.subs[topic] = map[chan string]bool{}
		}
		h.subs[topic][c] = true
		cut := h.cut
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			n, _ := strconv.Atoi(id)
			replay = slices.Clone(h.history[topic][min(n, len(h.history[topic])):])
		}
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			delete(h.subs[topic], c)
			h.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, ": hello\n\n")
		fmt.Fprint(w, strings.Join(replay, ""))
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-c:
				fmt.Fprint(w, ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			case <-cut:
				return
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// cutAll ends every stream open now, as a node that dies would; streams
// that connect later are not cut.
func (h *fakeHub) cutAll() {
	h.mu.Lock()
	close(h.cut)
	h.cut = make(chan struct{})
	h.mu.Unlock()
}

// The counters see exactly what the server dropped and repeated, per stream.
func TestLossAndDuplicatesAgainstAMisbehavingServer(t *testing.T) {
	for _, c := range []struct {
		layout      string
		conns, rate int
	}{
		{"shared", 20, 20},   // one topic, seq 1..20
		{"rooms:5", 20, 40},  // 4 topics, seq 1..10 each
		{"per-user", 10, 50}, // 10 topics, seq 1..5 each
	} {
		t.Run(c.layout, func(t *testing.T) {
			srv := httptest.NewServer(newFakeHub([]uint64{4}, []uint64{2, 3}))
			defer srv.Close()
			l, _ := ParseLayout(c.layout)
			res, err := Run(context.Background(), Config{
				SubscribeTemplate: srv.URL + "/sse?topic={topic}",
				Publish:           &HTTPTemplate{URL: srv.URL + "/pub?topic={topic}", Body: "{data}"},
				Connections:       c.conns,
				Layout:            l,
				Rate:              float64(c.rate),
				Duration:          time.Second,
				Settle:            time.Millisecond,
				Drain:             300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			perStream := int64(c.rate) / int64(l.Topics(c.conns)) // events per topic
			n := int64(c.conns)
			if res.Published != int64(c.rate) || res.Expected != n*perStream {
				t.Fatalf("published %d, expected %d; want %d, %d", res.Published, res.Expected, c.rate, n*perStream)
			}
			if res.Lost != n || res.ConnectionsWithLoss != c.conns {
				t.Errorf("lost %d on %d connections, want %d on %d", res.Lost, res.ConnectionsWithLoss, n, c.conns)
			}
			if res.Duplicates != 2*n {
				t.Errorf("duplicates %d, want %d", res.Duplicates, 2*n)
			}
			if want := n * (perStream - 1 + 2); res.Delivered != want {
				t.Errorf("delivered %d, want %d", res.Delivered, want)
			}
			if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.Latency.P99 < res.Latency.P50 {
				t.Errorf("latency %+v", res.Latency)
			}
			if res.ConnectErrors != 0 || res.ConnectSeconds <= 0 {
				t.Errorf("connect: %d errors in %vs", res.ConnectErrors, res.ConnectSeconds)
			}
		})
	}
}

// A server that refuses streams is reported, not waited for.
func TestConnectErrorsAreReported(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "go away", http.StatusForbidden)
	}))
	defer srv.Close()
	_, err := Run(context.Background(), Config{
		SubscribeTemplate: srv.URL + "/sse?topic={topic}",
		Publish:           &HTTPTemplate{URL: srv.URL + "/pub"},
		Connections:       3,
	})
	if err == nil {
		t.Fatal("Run succeeded against a server refusing every stream")
	}
}

// Polling the same updates costs requests that SSE does not make, and sees
// them later.
func TestComparePolling(t *testing.T) {
	srv := httptest.NewServer(newFakeHub(nil, nil))
	defer srv.Close()
	res, err := Run(context.Background(), Config{
		SubscribeTemplate: srv.URL + "/sse?topic={topic}",
		Publish:           &HTTPTemplate{URL: srv.URL + "/pub?topic={topic}", Body: "{data}"},
		Compare:           "polling",
		PollTemplate:      srv.URL + "/state?topic={topic}",
		PollInterval:      100 * time.Millisecond,
		Connections:       10,
		Rate:              10,
		Duration:          1500 * time.Millisecond,
		Settle:            time.Millisecond,
		Drain:             300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Compare
	if c == nil {
		t.Fatal("no comparison")
	}
	if c.SSE.Requests != 0 || c.SSE.Updates != 150 || c.SSE.Bytes <= 0 {
		t.Errorf("SSE: %+v", c.SSE)
	}
	// 10 users at 10 polls/s each.
	if c.Polling.RequestsPerSec < 60 || c.Polling.RequestsPerSec > 110 || c.Polling.Errors != 0 {
		t.Errorf("polling: %+v", c.Polling)
	}
	if c.Polling.Updates == 0 || c.Polling.Staleness.P50 <= 0 || c.Polling.Staleness.Max > 1000 {
		t.Errorf("polling staleness: %+v, %d updates", c.Polling.Staleness, c.Polling.Updates)
	}
	var b strings.Builder
	if err := WriteTable(&b, res); err != nil || !strings.Contains(b.String(), "median staleness") {
		t.Errorf("table lacks the comparison:\n%s", b.String())
	}
}

func TestComparePollingNeedsAnEndpoint(t *testing.T) {
	_, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Compare: "polling"})
	if err == nil || !strings.Contains(err.Error(), "poll URL template") {
		t.Errorf("err = %v", err)
	}
}

// A storm drops every stream; each comes back with its last event id and gets
// what it missed, once.
func TestStorm(t *testing.T) {
	srv := httptest.NewServer(newFakeHub(nil, nil))
	defer srv.Close()
	l, _ := ParseLayout("rooms:5")
	res, err := Run(context.Background(), Config{
		SubscribeTemplate: srv.URL + "/sse?topic={topic}",
		Publish:           &HTTPTemplate{URL: srv.URL + "/pub?topic={topic}", Body: "{data}"},
		Connections:       20,
		Layout:            l,
		Rate:              40,
		Duration:          500 * time.Millisecond,
		Settle:            time.Millisecond,
		Drain:             300 * time.Millisecond,
		Storm:             true,
		StormMissed:       30,
		StormLimit:        5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Storm
	if res.Lost != 0 || st == nil || st.Connections != 20 || st.Published != 4*30 || st.Expected != 20*30 {
		t.Fatalf("lost %d; storm %+v", res.Lost, st)
	}
	if !st.Recovered || st.Lost != 0 || st.Duplicates != 0 {
		t.Errorf("storm %+v", st)
	}
}

// Streams cut while publishing are reported as drops: each comes back with
// its last event id and resumes, and nothing is lost or repeated.
func TestDropsWhilePublishing(t *testing.T) {
	h := newFakeHub(nil, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	l, _ := ParseLayout("per-user")
	var cut atomic.Bool
	cfg := Config{
		SubscribeTemplate: srv.URL + "/sse?topic={topic}",
		Publish:           &HTTPTemplate{URL: srv.URL + "/pub?topic={topic}", Body: "{data}"},
		Connections:       10,
		Layout:            l,
		Rate:              100,
		Duration:          2500 * time.Millisecond,
		Settle:            time.Millisecond,
		Drain:             2 * time.Second,
		Progress: progressFunc(func(line string) {
			if strings.HasPrefix(line, "publishing") {
				time.AfterFunc(500*time.Millisecond, func() { h.cutAll(); cut.Store(true) })
			}
		}),
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 0 || res.Duplicates != 0 || res.Reconnects != 10 {
		t.Fatalf("lost %d, duplicates %d, reconnects %d", res.Lost, res.Duplicates, res.Reconnects)
	}
	d := res.Drops
	if d == nil || d.Streams != 10 || d.Back != 10 || d.Resumed != 10 {
		t.Fatalf("drops %+v", d)
	}
	// Without a retry field the bench waits 0.5–1.5 s, as a browser would
	// wait about its default.
	if d.Reconnect.P50 < 400 || d.Reconnect.Max > 2500 || d.Resume.Max < d.Reconnect.Max ||
		d.AllBackSeconds*1000 < d.Reconnect.Max || d.AllResumedSeconds < d.AllBackSeconds {
		t.Errorf("drops %+v", d)
	}
	if !cut.Load() {
		t.Error("the cut never happened")
	}
	var b strings.Builder
	if err := WriteTable(&b, res); err != nil || !strings.Contains(b.String(), "dropped while publishing") {
		t.Errorf("table lacks the drops:\n%s", b.String())
	}
}

// A run without drops reports none.
func TestNoDropsReported(t *testing.T) {
	srv := httptest.NewServer(newFakeHub(nil, nil))
	defer srv.Close()
	res, err := Run(context.Background(), Config{
		SubscribeTemplate: srv.URL + "/sse?topic={topic}",
		Publish:           &HTTPTemplate{URL: srv.URL + "/pub?topic={topic}", Body: "{data}"},
		Connections:       5,
		Rate:              20,
		Duration:          300 * time.Millisecond,
		Settle:            time.Millisecond,
		Drain:             300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Drops != nil {
		t.Errorf("drops %+v in a run without any", res.Drops)
	}
}

// progressFunc calls its function with each progress line.
type progressFunc func(line string)

func (p progressFunc) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		p(line)
	}
	return len(b), nil
}
