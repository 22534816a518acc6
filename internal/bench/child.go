package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// child is a `herald serve` process the bench started for itself, on a free
// loopback port with a throw-away data dir and publish key.
type child struct {
	cmd  *exec.Cmd
	url  string
	key  string
	dir  string
	logs *tail
	tls  *tls.Config   // the client side of a child serving HTTPS
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, set before done is closed
}

// startChild runs exe serve … and waits until /healthz answers.
// With tlsConf it serves HTTPS: extra must then hold -tls-cert and -tls-key,
// and tlsConf trust that certificate.
func startChild(ctx context.Context, exe string, env, extra []string, tlsConf *tls.Config) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herald-bench-")
	if err != nil {
		return nil, err
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	c := &child{
		url:  fmt.Sprintf("%s://127.0.0.1:%d", map[bool]string{false: "http", true: "https"}[tlsConf != nil], port),
		tls:  tlsConf,
		key:  hex.EncodeToString(raw[:]),
		dir:  dir,
		logs: &tail{max: 16 << 10},
		done: make(chan struct{}),
	}
	args := append([]string{"serve", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-data-dir", dir,
		"-publish-key", c.key, "-log-level", "warn"}, extra...)
	c.cmd = exec.Command(exe, args...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := c.waitHealthy(ctx, 30*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) waitHealthy(ctx context.Context, limit time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	for {
		resp, err := hc.Get(c.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("herald serve did not become healthy within %v:\n%s", limit, c.logs)
		}
		select {
		case <-c.done:
			return fmt.Errorf("herald serve exited: %v\n%s", c.err, c.logs)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop ends the process (SIGTERM, then SIGKILL after 5 s) and removes its
// data dir.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	os.RemoveAll(c.dir)
}

// freePort asks the kernel for a loopback port that is free now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the last max bytes written to it: the end of a child's log.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

var errNoServer = errors.New("bench: no server: give a URL or the herald executable to start")
