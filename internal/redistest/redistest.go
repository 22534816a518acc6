// Package redistest is what Herald's tests on Redis share: the Redis they run
// against, key prefixes of their own, and private redis-server processes for
// tests that stop, restart or reconfigure Redis (never the shared one).
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/internal/testenv"
)

// URL is the Redis of HERALD_TEST_REDIS_URL. Without it the test fails under
// CI=true (.ci/run sets it), and is skipped otherwise: a test on Redis never
// passes without having run.
func URL(t testing.TB) string {
	t.Helper()
	return testenv.Get(t, "HERALD_TEST_REDIS_URL", "the tests on Redis", "redis://127.0.0.1:6379/0")
}

// DeletePrefix deletes every key under prefix, on every node of a cluster.
func DeletePrefix(t testing.TB, co rueidis.ClientOption, prefix string) {
	co.DisableCache = true
	c, err := rueidis.NewClient(co)
	if err != nil {
		t.Errorf("cleanup of %s: %v", prefix, err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range c.Nodes() {
		if err := deletePrefix(ctx, n, prefix); err != nil {
			t.Errorf("cleanup of %s: %v", prefix, err)
			return
		}
	}
}

func deletePrefix(ctx context.Context, c rueidis.Client, prefix string) error {
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		cmds := make(rueidis.Commands, len(e.Elements))
		for i, k := range e.Elements { // one key a command: keys of a cluster node lie in many slots
			cmds[i] = c.B().Unlink().Key(k).Build()
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return err
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// Server is a redis-server of the test's own on a free loopback port,
// without persistence, stopped when the test ends.
type Server struct {
	Port int
	t    testing.TB
	args []string
	cmd  *exec.Cmd
}

// Start starts a private redis-server with extra arguments. Like URL, it
// fails under CI=true and skips otherwise when the tests on Redis cannot run.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	URL(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed")
		}
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Port: port, t: t, args: append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, extra...)}
	s.Run()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Run starts the server (again, after Stop) and waits until it answers PING.
func (s *Server) Run() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !s.answers() {
		if time.Now().After(deadline) {
			s.t.Fatal("the private redis-server does not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) answers() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	c.Write([]byte("PING\r\n"))
	b := make([]byte, 7)
	n, _ := c.Read(b)
	return strings.HasPrefix(string(b[:n]), "+PONG")
}

// Stop kills the server: what it held is gone, as after a crash.
func (s *Server) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Cluster is a Redis Cluster of the test's own: masters on free loopback
// ports, no replicas, the slots spread evenly; stopped when the test ends.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts a Redis Cluster of n masters (at least 3, as
// redis-cli --cluster create wants), and waits until it serves every slot.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-cli is not installed")
		}
		t.Skip("redis-cli is not installed")
	}
	dir := t.TempDir()
	c := &Cluster{}
	addrs := make([]string, n)
	for i := range n {
		s := Start(t, "--cluster-enabled", "yes", "--dir", dir, "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", i), "--cluster-node-timeout", "2000")
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr()
	}
	out, err := exec.Command("redis-cli", append([]string{"--cluster", "create"}, append(addrs, "--cluster-yes")...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		for {
			info, _ := exec.Command("redis-cli", "-p", strconv.Itoa(s.Port), "cluster", "info").Output()
			if strings.Contains(string(info), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the private Redis Cluster is not ok after 30s:\n%s", info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL is a redis:// URL naming every node of the cluster.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr() + "?addr=" + c.Nodes[1].Addr()
	for _, s := range c.Nodes[2:] {
		u += "&addr=" + s.Addr()
	}
	return u
}

// StartSentinel starts a private master and one Sentinel watching it under
// the name master; the URL names the Sentinel and the master's name, as a
// deployment on Sentinel would.
func StartSentinel(t testing.TB, master string) (primary *Server, url string) {
	t.Helper()
	primary = Start(t)
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n", master, primary.Port, master)
	path := t.TempDir() + "/sentinel.conf"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Port: port, t: t, args: []string{path, "--sentinel", "--port", strconv.Itoa(port), "--bind", "127.0.0.1"}}
	s.Run()
	t.Cleanup(s.Stop)
	return primary, "redis://" + s.Addr() + "?master_set=" + master
}

// Prefix returns a fresh random key prefix "heraldtest:<scope>:<random>:" on
// the Redis of co, whose keys are deleted when the test ends.
func Prefix(t testing.TB, co rueidis.ClientOption, scope string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "heraldtest:" + scope + ":" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { DeletePrefix(t, co, prefix) })
	return prefix
}
