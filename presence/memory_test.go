package presence_test

import (
	"testing"

	"github.com/herald-hub/herald/presence"
	"github.com/herald-hub/herald/presence/presencetest"
)

func TestMemory(t *testing.T) {
	presencetest.Run(t, presencetest.Opener{
		Open: func(t *testing.T, opt presence.Options) presence.Registry {
			r := presence.NewMemory(opt)
			t.Cleanup(func() { r.Close() })
			return r
		},
	})
}

func TestEventTopics(t *testing.T) {
	for topic, want := range map[string]bool{"presence/rooms/7": true, "presence/": false, "presence": false, "rooms/presence/x": false, "rooms/7": false} {
		if got := presence.IsEventTopic(topic); got != want {
			t.Errorf("IsEventTopic(%q) = %v, want %v", topic, got, want)
		}
	}
}
