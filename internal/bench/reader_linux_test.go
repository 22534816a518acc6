package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// epollFDs counts this process's epoll and eventfd descriptors.
func epollFDs(t *testing.T) int {
	t.Helper()
	names, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		if target, err := os.Readlink(name); err == nil &&
			(strings.Contains(target, "[eventpoll]") || strings.Contains(target, "[eventfd]")) {
			n++
		}
	}
	return n
}

// The loops end with the fleet and close their epoll and eventfd
// descriptors; goleak (TestMain) checks that their goroutines ended.
func TestEpollReaderCloses(t *testing.T) {
	before := epollFDs(t)
	r, err := newEpollReader(3)
	if err != nil {
		t.Fatal(err)
	}
	if got := epollFDs(t) - before; got != 6 {
		t.Errorf("%d descriptors for 3 loops, want 6", got)
	}
	r.close()
	r.close()
	if got := epollFDs(t); got != before {
		t.Errorf("%d epoll and eventfd descriptors after close, %d before", got, before)
	}

	url := rawServer(t, func(c net.Conn, _ *http.Request, _ int) {
		io.WriteString(c, streamHeader+"Transfer-Encoding: chunked\r\n\r\n")
		hold(c)
	})
	f, err := newFleet(fleetConfig{urls: func(int) string { return url }, topicOf: func(int) int { return 0 }, n: 10, concurrency: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.start(ctx, make(chan connectResult, 10))
	waitFor(t, "every stream", func() bool { return f.upCount() == 10 })
	cancel()
	f.wait()
	if got := epollFDs(t); got != before {
		t.Errorf("%d epoll and eventfd descriptors after the fleet, %d before", got, before)
	}
}
