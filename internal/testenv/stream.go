package testenv

import (
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
)

// NextOfType reads s until an event of type typ, skipping others, for 10 s
// at most.
func NextOfType(t testing.TB, s *client.Stream, typ string) client.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("stream stopped: %v", s.Err())
			}
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within 10s", typ)
		}
	}
}
