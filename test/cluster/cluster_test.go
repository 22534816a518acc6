// Package cluster runs the shipped nginx configuration for several nodes,
// deploy/nginx/herald.conf, with the real nginx in front of two herald
// processes on one Redis engine: streams through nginx are not buffered,
// and a client resumes exactly from its Last-Event-ID on whichever node it
// lands, including after the other node is killed.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/internal/redistest"
)

const (
	confPath   = "../../deploy/nginx/herald.conf"
	nginxPath  = "/usr/sbin/nginx"
	publishKey = "cluster-test-publish-key"
	// The placeholders of deploy/nginx/herald.conf that the test replaces.
	nodePlaceholder1 = "10.0.0.1:8080"
	nodePlaceholder2 = "10.0.0.2:8080"
	listenDirective  = "listen 80;"
)

// need skips the test when what it needs is missing, or fails it under CI=true.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI=true: the nginx cluster test must run in CI (.ci/run sets it up)", why)
	}
	t.Skip(why)
}

// TestConfigTimeouts reads the shipped configuration: streams must be allowed
// to stay silent far longer than Herald's heartbeat (15s by default), or nginx
// would cut healthy idle streams; nginx's default is 60s.
func TestConfigTimeouts(t *testing.T) {
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	loc := regexp.MustCompile(`(?s)location = /v1/events \{(.*?)\n    \}`).FindSubmatch(conf)
	if loc == nil {
		t.Fatal("no location = /v1/events block in " + confPath)
	}
	block := string(loc[1])
	for _, d := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
		m := regexp.MustCompile(`(?m)^\s*` + d + `\s+(\S+);`).FindStringSubmatch(block)
		if m == nil {
			t.Errorf("/v1/events sets no %s (nginx's default, 60s, is too short a margin)", d)
			continue
		}
		v, err := time.ParseDuration(m[1])
		if err != nil {
			t.Errorf("%s %s: %v", d, m[1], err)
			continue
		}
		if v < 10*time.Minute {
			t.Errorf("%s is %v, want 10m at least: far above the heartbeat (15s)", d, v)
		}
	}
	for _, d := range []string{"proxy_buffering off;", "proxy_cache off;"} {
		if !strings.Contains(block, d) {
			t.Errorf("/v1/events lacks %q", d)
		}
	}
	if regexp.MustCompile(`(?m)^\s*proxy_ignore_headers`).Match(conf) {
		t.Error("the configuration must not ignore X-Accel-Buffering (proxy_ignore_headers)")
	}
}

func TestNginxInFrontOfTwoNodes(t *testing.T) {
	redisURL := os.Getenv("HERALD_TEST_REDIS_URL")
	need(t, redisURL != "", "set HERALD_TEST_REDIS_URL (for example redis://127.0.0.1:6379/0) to run the nginx cluster test")
	_, err := os.Stat(nginxPath)
	need(t, err == nil, nginxPath+" is missing: apt-get install nginx to run the nginx cluster test")

	nginxInFrontOfTwoNodes(t, buildHerald(t), redisEngine(t, redisURL))
}

// nginxInFrontOfTwoNodes runs the nginx checks on two nodes of engineURL.
func nginxInFrontOfTwoNodes(t *testing.T, bin, engineURL string) {
	nodeA := startNode(t, bin, engineURL)
	nodeB := startNode(t, bin, engineURL)
	nx := startNginx(t, nodeA.addr, nodeB.addr)

	t.Run("prompt", func(t *testing.T) {
		topic := "prompt"
		s := nx.stream(t, topic, "")
		for i, n := range []*node{nodeA, nodeB} {
			start := time.Now()
			n.publish(t, topic, fmt.Sprintf("p%d", i))
			ev := s.next(t, 2*time.Second)
			lat := time.Since(start)
			if ev.data != fmt.Sprintf("p%d", i) {
				t.Fatalf("got %+v, want p%d", ev, i)
			}
			t.Logf("published to node %s, received through nginx after %v", n.addr, lat)
			if lat > 500*time.Millisecond {
				t.Errorf("event took %v through nginx: buffered?", lat)
			}
		}
	})

	// Resume on either node: each leg through nginx goes to the next node
	// (round-robin), and the nginx log says which; the nodes are also asked
	// directly.
	t.Run("resume", func(t *testing.T) {
		topic := "resume"
		s := nx.stream(t, topic, "")
		nx.publish(t, topic, "r1")
		nx.publish(t, topic, "r2")
		got := s.take(t, 2)
		wantData(t, got, "r1", "r2")
		last := got[1].id
		s.close()
		nodeA.publish(t, topic, "r3")
		nodeB.publish(t, topic, "r4")
		nodeA.publish(t, topic, "r5")

		for leg := 0; leg < 2; leg++ {
			r := nx.stream(t, topic, last)
			wantData(t, r.take(t, 3), "r3", "r4", "r5")
			r.close()
		}
		ups := nx.upstreamsOf(t, "/v1/events?topic=resume", 3)
		t.Logf("resuming legs through nginx served by %q and %q", ups[1], ups[2])
		if ups[1] == ups[2] || !strings.HasSuffix(ups[1], nodeA.addr) && !strings.HasSuffix(ups[2], nodeA.addr) {
			t.Errorf("the two resuming legs went to %q and %q, want one on each node", ups[1], ups[2])
		}
		for _, n := range []*node{nodeA, nodeB} {
			r := n.stream(t, topic, last)
			wantData(t, r.take(t, 3), "r3", "r4", "r5")
			r.close()
		}
		// Nothing more than the missed events: the next one is the next
		// published, on a stream resumed through nginx.
		r := nx.stream(t, topic, last)
		wantData(t, r.take(t, 3), "r3", "r4", "r5")
		nodeB.publish(t, topic, "r6")
		wantData(t, r.take(t, 1), "r6")
		r.close()
	})

	t.Run("kill", func(t *testing.T) {
		topic := "kill"
		s := nx.stream(t, topic, "")
		nodeB.publish(t, topic, "k1")
		got := s.take(t, 1)
		wantData(t, got, "k1")
		last := got[0].id
		nodeA.kill(t)
		s.close()
		nodeB.publish(t, topic, "k2")
		nodeB.publish(t, topic, "k3")
		// Two legs: round-robin would send one of them to the dead node;
		// nginx must pass it on to the live one.
		for leg := 0; leg < 2; leg++ {
			r := nx.stream(t, topic, last)
			wantData(t, r.take(t, 2), "k2", "k3")
			r.close()
		}
		nodeB.publish(t, topic, "k4")
		r := nx.stream(t, topic, last)
		wantData(t, r.take(t, 3), "k2", "k3", "k4")
		r.close()
		ups := nx.upstreamsOf(t, "/v1/events?topic=kill", 4)
		t.Logf("legs through nginx after the kill served by %q", ups[1:])
		for i, u := range ups[1:] {
			addrs := strings.Split(u, ", ")
			if !strings.HasSuffix(addrs[len(addrs)-1], nodeB.addr) {
				t.Errorf("leg %d after the kill was served by %q, want %s", i+1, u, nodeB.addr)
			}
		}
	})
}

func wantData(t *testing.T, got []event, want ...string) {
	t.Helper()
	var g []string
	for _, e := range got {
		if e.typ != "" {
			g = append(g, e.typ+":"+e.data) // a herald.* event (a gap) fails
			continue
		}
		g = append(g, e.data)
	}
	if strings.Join(g, ",") != strings.Join(want, ",") {
		t.Fatalf("got events %q, want %q", g, want)
	}
}

// The herald binary, built once for the package's tests into binDir, which
// TestMain removes.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildHerald builds cmd/herald, once per run of the package's tests.
func buildHerald(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		var err error
		if binDir, err = os.MkdirTemp("", "herald-cluster-"); err != nil {
			binError = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		bin := filepath.Join(binDir, "herald")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/herald")
		build.Dir = filepath.Join("..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			binError = fmt.Errorf("go build ./cmd/herald: %v\n%s", err, out)
			return
		}
		binPath = bin
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

// redisEngine is the -engine URL on rawURL under a random key prefix, whose
// keys are deleted when the test ends.
func redisEngine(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	co, err := rueidis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("prefix", redistest.Prefix(t, co, "cluster"))
	u.RawQuery = q.Encode()
	return u.String()
}

// node is a herald process on a loopback port. restart starts it again on
// the same address and data dir (hence the same node id) after kill.
type node struct {
	bin  string
	args []string // serve's arguments but -addr
	dir  string   // its data dir
	addr string
	logs *logBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has exited
	err  error
}

// startNode starts a herald process on a free loopback port with its own data
// dir; extra flags follow the defaults (a later flag wins).
func startNode(t *testing.T, bin, engineURL string, extra ...string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{bin: bin, dir: dir, logs: new(logBuffer), args: append([]string{"-data-dir", dir,
		"-engine", engineURL, "-publish-key", publishKey, "-trusted-proxies", "127.0.0.1",
		"-retry", "100ms", "-heartbeat", "1s"}, extra...)}
	n.start(t, "127.0.0.1:0")
	return n
}

// start runs the process listening on addr and waits until it listens.
func (n *node) start(t *testing.T, addr string) {
	t.Helper()
	cmd := exec.Command(n.bin, append([]string{"serve", "-addr", addr}, n.args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done, n.err = cmd, done, nil
	n.mu.Unlock()
	addrc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg=listening addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			n.logs.WriteString(line + "\n")
			if m := re.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		err := cmd.Wait()
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("herald %s (pid %d) log:\n%s", n.addr, cmd.Process.Pid, n.logs)
		}
	})
	select {
	case n.addr = <-addrc:
	case <-done:
		t.Fatalf("herald exited before listening: %v\n%s", n.exitErr(), n.logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("herald did not listen within 20s\n%s", n.logs)
	}
}

func (n *node) exitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// restart starts the node again, after kill, on its address and data dir.
func (n *node) restart(t *testing.T) {
	t.Helper()
	n.logs.WriteString("-- restarted --\n")
	n.start(t, n.addr)
}

func (n *node) kill(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("herald did not exit within 10s of SIGKILL")
	}
}

func (n *node) publish(t *testing.T, topic, data string) { publish(t, "http://"+n.addr, topic, data) }

func (n *node) stream(t *testing.T, topic, last string) *stream {
	return openStream(t, "http://"+n.addr, topic, last)
}

// logBuffer holds a process's log lines, read while the process writes them.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proxy is an nginx process running deploy/nginx/herald.conf.
type proxy struct {
	addr string
	dir  string
}

// startNginx runs deploy/nginx/herald.conf with its upstream block's two
// placeholder servers replaced by one server line per address of ups (with
// the placeholders' parameters), listening on a free loopback port.
func startNginx(t *testing.T, ups ...string) *proxy {
	t.Helper()
	if len(ups) == 0 {
		t.Fatal("startNginx: no upstream")
	}
	dir := t.TempDir()
	raw, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := string(raw)
	for _, p := range []string{nodePlaceholder1, nodePlaceholder2, listenDirective} {
		if c := strings.Count(conf, p); c != 1 {
			t.Fatalf("%s holds %q %d times, want once: the placeholder the test replaces", confPath, p, c)
		}
	}
	// The placeholders' server lines: "    server 10.0.0.1:8080 <params>;\n".
	line := regexp.MustCompile(`(?m)^([ \t]*server[ \t]+)` + regexp.QuoteMeta(nodePlaceholder1) + `([^\n]*\n)`).FindStringSubmatch(conf)
	line2 := regexp.MustCompile(`(?m)^[ \t]*server[ \t]+` + regexp.QuoteMeta(nodePlaceholder2) + `[^\n]*\n`).FindString(conf)
	if line == nil || line2 == "" {
		t.Fatalf("%s: the placeholders %s and %s are not on server lines", confPath, nodePlaceholder1, nodePlaceholder2)
	}
	var servers strings.Builder
	for _, u := range ups {
		servers.WriteString(line[1] + u + line[2])
	}
	conf = strings.Replace(conf, line[0], servers.String(), 1)
	conf = strings.Replace(conf, line2, "", 1)
	conf = strings.Replace(conf, listenDirective, "listen 127.0.0.1:"+port+";", 1)
	if err := os.WriteFile(filepath.Join(dir, "herald.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"logs", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	main := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log info;
events { worker_connections 4096; }
http {
    log_format upstream '$request_uri $status "$upstream_addr"';
    access_log %[1]s/logs/access.log upstream;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/herald.conf;
}
`, dir)
	mainPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(mainPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", mainPath, "-e", filepath.Join(dir, "logs", "error.log")}
	if out, err := exec.Command(nginxPath, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginxPath, args...)
	var out logBuffer
	cmd.Stdout = &writer{&out}
	cmd.Stderr = &writer{&out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p := &proxy{addr: "127.0.0.1:" + port, dir: dir}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			e, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			a, _ := os.ReadFile(filepath.Join(dir, "logs", "access.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s\naccess.log:\n%s", out.String(), e, a)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %s within 10s: %s", p.addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type writer struct{ l *logBuffer }

func (w *writer) Write(b []byte) (int, error) { w.l.WriteString(string(b)); return len(b), nil }

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func (p *proxy) publish(t *testing.T, topic, data string) { publish(t, "http://"+p.addr, topic, data) }

func (p *proxy) stream(t *testing.T, topic, last string) *stream {
	return openStream(t, "http://"+p.addr, topic, last)
}

// upstreamsOf waits for n access-log lines of requests for uri and returns
// their $upstream_addr, in order. nginx logs a stream when it ends.
func (p *proxy) upstreamsOf(t *testing.T, uri string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, _ := os.ReadFile(filepath.Join(p.dir, "logs", "access.log"))
		var ups []string
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(l, uri+" ") {
				if i := strings.Index(l, `"`); i >= 0 {
					ups = append(ups, strings.Trim(l[i:], `"`))
				}
			}
		}
		if len(ups) >= n {
			return ups
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx logged %d requests for %s, want %d:\n%s", len(ups), uri, n, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func publish(t *testing.T, base, topic, data string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"topic": topic, "data": data})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/publish", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+publishKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publish to %s: %v", base, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("publish to %s: %d %s", base, resp.StatusCode, raw)
	}
}

// event is one SSE event of a stream.
type event struct{ id, typ, data string }

// stream is an SSE stream read in the background; its events, but for
// herald.connected, come on evs.
type stream struct {
	cancel context.CancelFunc
	evs    chan event
	done   chan struct{}
	err    error
}

// openStream subscribes to topic at base, resuming after last when it is
// set, and returns once the stream's herald.connected event has arrived.
func openStream(t *testing.T, base, topic, last string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events?topic="+url.QueryEscape(topic), nil)
	req.Header.Set("Accept", "text/event-stream")
	// As browsers do: a configuration that gzips streams holds events back.
	req.Header.Set("Accept-Encoding", "gzip")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, ResponseHeaderTimeout: 10 * time.Second}}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s events: %v", base, err)
	}
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s events: %d %s", base, resp.StatusCode, raw)
	}
	s := &stream{cancel: cancel, evs: make(chan event, 64), done: make(chan struct{})}
	connected := make(chan struct{})
	go func() {
		defer close(s.done)
		defer close(s.evs)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev event
		seen := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.typ == "herald.connected" && !seen {
					seen = true
					close(connected)
				} else if ev.data != "" || ev.typ != "" {
					s.evs <- ev
				}
				ev = event{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id:"):
				ev.id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
			case strings.HasPrefix(line, "event:"):
				ev.typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			}
		}
		s.err = sc.Err()
	}()
	t.Cleanup(s.close)
	select {
	case <-connected:
	case <-s.done:
		t.Fatalf("stream from %s ended before herald.connected: %v", base, s.err)
	case <-time.After(10 * time.Second):
		s.close()
		t.Fatalf("no herald.connected from %s within 10s", base)
	}
	return s
}

func (s *stream) close() {
	s.cancel()
	<-s.done
}

func (s *stream) next(t *testing.T, d time.Duration) event {
	t.Helper()
	select {
	case ev, ok := <-s.evs:
		if !ok {
			t.Fatalf("stream ended: %v", s.err)
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	return event{}
}

func (s *stream) take(t *testing.T, n int) []event {
	t.Helper()
	var got []event
	for len(got) < n {
		got = append(got, s.next(t, 10*time.Second))
	}
	return got
}
