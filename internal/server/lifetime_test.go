package server

import (
	"bufio"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/hub"
)

// An idle stream gets heartbeat comments, so proxies do not cut it.
func TestIdleStreamGetsHeartbeats(t *testing.T) {
	n := newTestNode(t, nodeOptions{hub: hub.Options{Heartbeat: 50 * time.Millisecond}})
	resp, err := http.Get(n.eventsURL("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	beats := 0
	deadline := time.Now().Add(5 * time.Second)
	for beats < 3 && time.Now().Before(deadline) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == ": heartbeat\n" {
			beats++
		}
	}
	if beats < 3 {
		t.Fatalf("%d heartbeats in 5s at a 50ms interval", beats)
	}
}

// With a maximum lifetime, streams are closed with a retry: hint and the client
// resumes from its cursor without losing or repeating an event.
func TestMaxLifetimeClosesStreamsAndClientsResume(t *testing.T) {
	n := newTestNode(t, nodeOptions{hub: hub.Options{MaxLifetime: 100 * time.Millisecond, Retry: 10 * time.Millisecond}})
	s := n.dial("", "a")
	waitFor(t, 5*time.Second, "stream open", func() bool { return n.hub.Stats().Connections == 1 })
	const total = 60
	go func() {
		for i := range total {
			n.publish("a", "t", fmt.Sprint(i))
			time.Sleep(10 * time.Millisecond) // spans several lifetimes
		}
	}()
	for i := range total {
		ev := next(t, s, 5*time.Second)
		if ev.Data != fmt.Sprint(i) {
			t.Fatalf("event %d: got %q", i, ev.Data)
		}
	}
	if r := s.Reconnects(); r < 2 {
		t.Fatalf("stream reconnected %d times in 600ms with a 100ms lifetime", r)
	}
}
