package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
)

// The test binary doubles as the herald binary: with HERALD_TEST_AS_SERVER set it
// runs `herald` with its arguments, so process tests need no separate build.
func TestMain(m *testing.M) {
	if os.Getenv("HERALD_TEST_AS_SERVER") == "1" {
		os.Exit(runAsMain())
	}
	os.Exit(m.Run())
}

// process is a real herald process on a loopback port.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	logs *logBuffer
	done chan struct{} // closed when the process has exited; then err is set
	err  error
}

const processKey = "process-test-key"

func startProcess(t *testing.T, dataDir string, extra ...string) *process {
	t.Helper()
	args := append([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", dataDir, "-publish-key", processKey, "-retry", "100ms"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HERALD_TEST_AS_SERVER=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, cmd: cmd, logs: new(logBuffer), done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg=listening addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.WriteString(line + "\n")
			if m := re.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	select {
	case p.addr = <-addrc:
	case <-p.done:
		t.Fatalf("herald exited before listening: %v\n%s", p.err, p.logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("herald did not listen within 20s\n%s", p.logs)
	}
	return p
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

func (p *process) url(path string) string { return "http://" + p.addr + path }

// post publishes one event and returns the answer's status and body.
func (p *process) post(topic, data string) (int, []byte) {
	p.t.Helper()
	body, _ := json.Marshal(map[string]string{"topic": topic, "data": data})
	req, _ := http.NewRequest("POST", p.url("/v1/publish"), bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+processKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (p *process) publish(topic, data string) string {
	p.t.Helper()
	status, raw := p.post(topic, data)
	if status != 200 {
		p.t.Fatalf("publish: %d %s", status, raw)
	}
	var r struct{ ID string }
	_ = json.Unmarshal(raw, &r)
	return r.ID
}

func receive(t *testing.T, s *client.Stream, n int) []client.Event {
	t.Helper()
	var got []client.Event
	timeout := time.After(15 * time.Second)
	for len(got) < n {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("stream stopped after %d events: %v", len(got), s.Err())
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("got %d events, want %d", len(got), n)
		}
	}
	return got
}

// An event acknowledged before a SIGKILL is replayed after restart, and a client
// resuming with its last id gets everything it missed once, in order.
func TestProcessKilledAndRestartedLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	dir := t.TempDir()
	p := startProcess(t, dir)
	const topic = "rooms/7"
	s := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=" + topic), MaxBackoff: 100 * time.Millisecond})
	defer s.Close()
	// The opening herald.connected event proves the stream is live before publishing.
	waitFor(t, func() bool { return s.LastEventID() != "" })
	for i := range 50 {
		p.publish(topic, fmt.Sprint("before-", i))
	}
	seen := receive(t, s, 20)
	last := seen[len(seen)-1].ID
	s.Close()

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p2 := startProcess(t, dir)
	for i := range 30 {
		p2.publish(topic, fmt.Sprint("after-", i))
	}
	s2 := client.Dial(context.Background(), client.Config{URL: p2.url("/v1/events?topic=" + topic), LastEventID: last})
	defer s2.Close()
	got := receive(t, s2, 60)
	for i, ev := range got {
		want := fmt.Sprint("before-", 20+i)
		if i >= 30 {
			want = fmt.Sprint("after-", i-30)
		}
		if ev.Data != want {
			t.Fatalf("event %d after restart = %q, want %q", i, ev.Data, want)
		}
	}
	select {
	case ev := <-s2.Events():
		t.Fatalf("duplicate or extra event %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

// SIGTERM: open streams are told to come back later and closed; the process
// exits cleanly.
func TestProcessGracefulStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	p := startProcess(t, t.TempDir())
	resp, err := http.Get(p.url("/v1/events?topic=a"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the stream is open
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "retry: ") {
		t.Fatalf("stream closed without a retry: hint; it sent %q", rest)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit: %v\n%s", p.err, p.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("herald did not stop within 15s of SIGTERM")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Requests that Go's HTTP/1 parser refuses never reach Herald's handler, and
// http.Server has no hook for them: they are answered with a plain-text body,
// as docs/api.md says. This pins what exactly they get.
func TestHTTPLayerErrorsArePlainText(t *testing.T) {
	p := startProcess(t, t.TempDir(), "-max-header-bytes", "4096")
	big := strings.Repeat("a", 10<<10)
	for _, c := range []struct{ name, req, status, body string }{
		{"headers over the limit", "GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: " + big + "\r\n\r\n",
			"431 Request Header Fields Too Large", "431 Request Header Fields Too Large"},
		{"bad header name", "GET /healthz HTTP/1.1\r\nHost: h\r\nBad\x01Name: v\r\n\r\n",
			"400 Bad Request", "400 Bad Request"},
		{"bad header value", "GET /healthz HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
			"400 Bad Request", "400 Bad Request"},
		{"bad Content-Length", "POST /v1/publish HTTP/1.1\r\nHost: h\r\nContent-Length: ten\r\n\r\n", "400 Bad Request", "400 Bad Request"},
		{"bad method", "G(T /healthz HTTP/1.1\r\nHost: h\r\n\r\n", "400 Bad Request", "400 Bad Request"},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n",
			"400 Bad Request: missing required Host header", "400 Bad Request: missing required Host header"},
		{"malformed Host", "GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n",
			"400 Bad Request: malformed Host header", "400 Bad Request: malformed Host header"},
		// At least 24 bytes: with h2c on, the server first reads that much to
		// compare with the HTTP/2 preface.
		{"malformed request line", "THIS IS NOT AN HTTP REQUEST\r\n\r\n", "400 Bad Request", "400 Bad Request"},
		{"unknown transfer coding", "POST /v1/publish HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: zip\r\n\r\n",
			"501 Not Implemented", "Unsupported transfer encoding"},
		{"HTTP/3 on HTTP/1", "GET /healthz HTTP/3.0\r\nHost: h\r\n\r\n",
			"505 HTTP Version Not Supported: unsupported protocol version", "505 HTTP Version Not Supported: unsupported protocol version"},
	} {
		status, header, body := rawRequest(t, p.addr, c.req)
		if status != "HTTP/1.1 "+c.status || body != c.body || header.Get("Content-Type") != "text/plain; charset=utf-8" || header.Get("Connection") != "close" {
			t.Errorf("%s: %q %v %q, want %q with a plain-text body %q", c.name, status, header, body, c.status, c.body)
		}
	}
	// Go allows 4096 bytes of headers beyond -max-header-bytes.
	if status, _, _ := rawRequest(t, p.addr, "GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Big: "+big[:7000]+"\r\n\r\n"); status != "HTTP/1.1 200 OK" {
		t.Errorf("7000 bytes of headers with -max-header-bytes 4096: %q", status)
	}
}

// rawRequest writes req on a new connection and reads the answer until the
// server closes it.
func rawRequest(t *testing.T, addr, req string) (status string, header http.Header, body string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	tp := textproto.NewReader(br)
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("headers: %v", err)
	}
	rest, _ := io.ReadAll(br)
	if mh.Get("Content-Length") != "" { // a real answer: its body only
		rest = rest[:min(len(rest), atoi(mh.Get("Content-Length")))]
	}
	return strings.TrimRight(line, "\r\n"), http.Header(mh), string(rest)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// SIGHUP (systemctl reload) does not stop a node that has nothing to reload.
func TestProcessSurvivesSIGHUPWithoutTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a herald process")
	}
	p := startProcess(t, t.TempDir())
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.logs.String(), "nothing to reload") {
		select {
		case <-p.done:
			t.Fatalf("herald exited on SIGHUP: %v\n%s", p.err, p.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no word of the SIGHUP within 5s\n%s", p.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.publish("a", "still here")
}
