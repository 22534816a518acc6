package server

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/auth"
)

// metric reads one sample of /metrics, e.g. herald_limit_exceeded_total{limit="publish_rate"}.
func (n *testNode) metric(sample string) float64 {
	n.t.Helper()
	resp, err := http.Get(n.srv.URL + "/metrics")
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	n.t.Fatalf("no sample %s in /metrics", sample)
	return 0
}

func limitSample(l string) string { return `herald_limit_exceeded_total{limit="` + l + `"}` }

// open opens a stream and returns a func that closes it.
func (n *testNode) open(path string, header ...string) (status int, closeIt func()) {
	n.t.Helper()
	req := mustReq(n.t, n.srv.URL+path, header...)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, func() { resp.Body.Close() }
}

// eventually retries open until it is accepted: a closed stream gives its slot
// back once the server has noticed the client left.
func (n *testNode) eventually(path string, header ...string) func() {
	n.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, c := n.open(path, header...)
		if st == 200 {
			return c
		}
		c()
		if time.Now().After(deadline) {
			n.t.Fatalf("%s still refused: %d", path, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectionsPerIPLimit(t *testing.T) {
	const max = 3
	n := newTestNode(t, nodeOptions{server: Config{MaxConnsPerIP: max}})
	var closers []func()
	for i := range max {
		st, c := n.open(q(fmt.Sprintf("rooms/%d", i)))
		if st != 200 {
			t.Fatalf("stream %d refused: %d", i+1, st)
		}
		closers = append(closers, c)
	}
	resp := n.get(q("rooms/x"))
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	wantError(t, resp, 429, "too_many_connections_per_ip")
	if v := n.metric(limitSample("connections_per_ip")); v != 1 {
		t.Fatalf("metric %v, want 1", v)
	}
	closers[0]()
	n.eventually(q("rooms/x"))()
	for _, c := range closers[1:] {
		c()
	}
}

func TestConnectionsPerUserLimit(t *testing.T) {
	const max = 2
	n := newTestNode(t, nodeOptions{server: Config{MaxConnsPerUser: max, Tokens: verifier(t, auth.Options{}), AnonymousSubscribe: []auth.Pattern{auth.MustParsePattern("**")}}})
	alice := bearerH(token(t, "alice", nil, nil))
	var closers []func()
	for i := range max {
		st, c := n.open(q("users/alice"), alice...)
		if st != 200 {
			t.Fatalf("stream %d refused: %d", i+1, st)
		}
		closers = append(closers, c)
	}
	wantError(t, n.get(q("users/alice"), alice...), 429, "too_many_connections_per_user")
	// Other users and anonymous clients are not affected.
	st, c := n.open(q("users/bob"), bearerH(token(t, "bob", nil, nil))...)
	if st != 200 {
		t.Fatalf("bob refused: %d", st)
	}
	c()
	for range 3 {
		st, c := n.open(q("rooms/1"))
		if st != 200 {
			t.Fatalf("anonymous refused: %d", st)
		}
		defer c()
	}
	if v := n.metric(limitSample("connections_per_user")); v != 1 {
		t.Fatalf("metric %v, want 1", v)
	}
	closers[0]()
	n.eventually(q("users/alice"), alice...)()
	closers[1]()
}

// clock is a settable time for rate limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestPublishRateLimitPerCredential(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	n := newTestNode(t, nodeOptions{server: Config{
		Tokens:      verifier(t, auth.Options{}),
		PublishRate: 2, PublishBurst: 3,
		KeyPublishRate: 0.5, KeyPublishBurst: 5,
		now: clk.now,
	}})
	g := &auth.Grants{Publish: []string{"rooms/*"}}
	alice, bob := token(t, "alice", g, nil), token(t, "alice", g, nil)
	body := []byte(`{"topic":"rooms/1","data":"x"}`)
	pub := func(cred string) (int, string) {
		resp, raw := n.post("application/json", body, cred)
		if resp.StatusCode == 429 && !strings.Contains(string(raw), "rate_limited") {
			t.Fatalf("429 body %s", raw)
		}
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	// Burst 3: three pass, the fourth is refused. A second token of the same
	// subject shares the bucket: the limit is per credential holder.
	for i := range 3 {
		if st, _ := pub(alice); st != 200 {
			t.Fatalf("publish %d: %d", i+1, st)
		}
	}
	if st, ra := pub(bob); st != 429 || ra != "1" {
		t.Fatalf("fourth publish: %d Retry-After %q", st, ra)
	}
	// Half a second at 2/s gives one token back.
	clk.add(500 * time.Millisecond)
	if st, _ := pub(alice); st != 200 {
		t.Fatalf("after refill: %d", st)
	}
	if st, _ := pub(alice); st != 429 {
		t.Fatalf("after refill, second: %d", st)
	}
	// Publish keys have their own rate: burst 5, then one per 2 s.
	for i := range 5 {
		if st, _ := pub(testKey); st != 200 {
			t.Fatalf("key publish %d: %d", i+1, st)
		}
	}
	if st, ra := pub(testKey); st != 429 || ra != "2" {
		t.Fatalf("key over burst: %d Retry-After %q", st, ra)
	}
	clk.add(2 * time.Second)
	if st, _ := pub(testKey); st != 200 {
		t.Fatalf("key after refill: %d", st)
	}
	if v := n.metric(limitSample("publish_rate")); v != 3 {
		t.Fatalf("metric %v, want 3", v)
	}
}

func TestSizeLimitsAreCounted(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{MaxTopics: 2, MaxEventSize: 10, MaxBodySize: 100, MaxBatch: 2}})
	wantError(t, n.get(q("a", "b")+"&topic=c"), 400, "too_many_topics")
	for _, c := range []struct{ body, code string }{
		{`{"topic":"a","data":"` + strings.Repeat("x", 11) + `"}`, "event_too_large"},
		{`{"topic":"a","data":"` + strings.Repeat("x", 101) + `"}`, "body_too_large"},
		{`[{"topic":"a"},{"topic":"a"},{"topic":"a"}]`, "batch_too_large"},
	} {
		resp, raw := n.post("application/json", []byte(c.body), testKey)
		if resp.StatusCode != 413 || !strings.Contains(string(raw), c.code) {
			t.Fatalf("%d %s, want 413 %s", resp.StatusCode, raw, c.code)
		}
	}
	// Exactly at each limit passes.
	if resp, raw := n.post("application/json", []byte(`[{"topic":"a","data":"`+strings.Repeat("x", 10)+`"},{"topic":"a"}]`), testKey); resp.StatusCode != 200 {
		t.Fatalf("at the limits: %d %s", resp.StatusCode, raw)
	}
	for _, l := range []string{"topics_per_stream", "event_size", "body_size", "batch_size"} {
		if v := n.metric(limitSample(l)); v != 1 {
			t.Errorf("%s counted %v times, want 1", l, v)
		}
	}
	if v := n.metric(`herald_rejected_requests_total{code="too_many_topics"}`); v != 1 {
		t.Errorf("rejected too_many_topics %v", v)
	}
}

func TestClientIPBehindTrustedProxy(t *testing.T) {
	s := &Server{}
	s.cfg.TrustedProxies = mustPrefixes("127.0.0.0/8", "10.0.0.0/8")
	for _, c := range []struct {
		remote, xff, want string
	}{
		{"127.0.0.1:5000", "", "127.0.0.1"},
		{"127.0.0.1:5000", "203.0.113.7", "203.0.113.7"},
		{"127.0.0.1:5000", "198.51.100.1, 203.0.113.7, 10.1.1.1", "203.0.113.7"}, // the client chose 198.51.100.1
		{"192.0.2.9:5000", "203.0.113.7", "192.0.2.9"},                           // not a trusted proxy: its header is ignored
		{"127.0.0.1:5000", "garbage", "127.0.0.1"},
		{"[::ffff:127.0.0.1]:5000", "203.0.113.7", "203.0.113.7"},
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := s.clientIP(r); got != c.want {
			t.Errorf("%s + %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

func TestAddressKeyGroupsIPv6By64(t *testing.T) {
	if addressKey("2001:db8:1:2:aaaa::1") != addressKey("2001:db8:1:2:bbbb::9") || addressKey("2001:db8:1:2::1") == addressKey("2001:db8:1:3::1") {
		t.Fatal("IPv6 addresses must count by /64")
	}
	if addressKey("203.0.113.7") != "203.0.113.7" || addressKey("203.0.113.7") == addressKey("203.0.113.8") {
		t.Fatal("IPv4 addresses count one by one")
	}
}

func mustPrefixes(s ...string) []netip.Prefix {
	p, err := ParsePrefixes(s)
	if err != nil {
		panic(err)
	}
	return p
}
