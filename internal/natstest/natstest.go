// Package natstest is what Herald's tests on NATS share: the NATS server
// they run against, streams and buckets of their own, and private
// nats-server processes for tests that stop, restart or wipe the server
// (never the shared one).
package natstest

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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-hub/herald/internal/testenv"
)

// URL is the NATS server of HERALD_TEST_NATS_URL, which must have
// JetStream. Without it the test fails under CI=true (.ci/run sets it), and
// is skipped otherwise: a test on NATS never passes without having run.
func URL(t testing.TB) string {
	t.Helper()
	return testenv.Get(t, "HERALD_TEST_NATS_URL", "the tests on NATS", "nats://127.0.0.1:4222")
}

// Name returns a fresh random name "HT_<scope>_<random>" for a stream,
// which is deleted on the server at url when the test ends, with the
// presence bucket the NATS engine keeps beside it (KV_<name>_presence).
func Name(t testing.TB, url, scope string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "HT_" + scope + "_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { Delete(t, url, name, "KV_"+name+"_presence") })
	return name
}

// Delete deletes the streams named, if they exist, on the server at url.
func Delete(t testing.TB, url string, streams ...string) {
	nc, err := nats.Connect(url, nats.MaxReconnects(0))
	if err != nil {
		t.Errorf("cleanup of %v: %v", streams, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("cleanup of %v: %v", streams, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range streams {
		if err := js.DeleteStream(ctx, s); err != nil && err != jetstream.ErrStreamNotFound {
			t.Errorf("cleanup of stream %s: %v", s, err)
		}
	}
}

// Server is a nats-server of the test's own with JetStream, on a free
// loopback port, its store in a directory of the test; stopped when the test
// ends.
type Server struct {
	Port int
	Name string // the server's name, in a cluster
	Dir  string // the JetStream store directory
	t    testing.TB
	args []string
	cmd  *exec.Cmd
}

// Start starts a private nats-server with JetStream. Like URL, it fails
// under CI=true and skips otherwise when the tests on NATS cannot run.
func Start(t testing.TB) *Server {
	t.Helper()
	needServer(t)
	s := newServer(t)
	s.Run()
	t.Cleanup(s.Stop)
	return s
}

func needServer(t testing.TB) {
	t.Helper()
	URL(t)
	if _, err := exec.LookPath("nats-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nats-server is not installed")
		}
		t.Skip("nats-server is not installed")
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newServer(t testing.TB) *Server {
	port := freePort(t)
	dir := t.TempDir()
	return &Server{Port: port, Dir: dir, t: t, args: []string{"-js", "-sd", dir, "-p", strconv.Itoa(port), "-a", "127.0.0.1"}}
}

// StartCluster starts a NATS cluster of n private servers with JetStream
// (names s0, s1, ...), and waits until JetStream answers on each.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	needServer(t)
	routes := make([]string, n)
	cports := make([]int, n)
	for i := range n {
		cports[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", cports[i])
	}
	servers := make([]*Server, n)
	for i := range n {
		s := newServer(t)
		s.Name = fmt.Sprintf("s%d", i)
		s.args = append(s.args, "--server_name", s.Name, "--cluster_name", "herald-test",
			"--cluster", routes[i], "--routes", strings.Join(routes, ","))
		servers[i] = s
		t.Cleanup(s.Stop)
	}
	for _, s := range servers {
		s.start()
	}
	for _, s := range servers {
		s.wait()
	}
	return servers
}

// URL is the server's nats:// URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// Run starts the server (again, after Stop, on the same port and store
// directory) and waits until JetStream answers.
func (s *Server) Run() {
	s.t.Helper()
	s.start()
	s.wait()
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command("nats-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) wait() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !s.answers() {
		if time.Now().After(deadline) {
			s.t.Fatal("the private nats-server does not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) answers() bool {
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(0), nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err == nil
}

// Stop kills the server, as a crash would; its store stays in Dir.
func (s *Server) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Wipe empties the store directory of a stopped server.
func (s *Server) Wipe() {
	s.t.Helper()
	if err := os.RemoveAll(s.Dir); err != nil {
		s.t.Fatal(err)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		s.t.Fatal(err)
	}
}
