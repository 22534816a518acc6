package nats

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/enginetest"
	"github.com/herald-hub/herald/internal/natstest"
)

// testOptions are engine options on the test server with a fresh stream,
// deleted when the test ends.
func testOptions(t *testing.T, url string) Options {
	t.Helper()
	return Options{URL: url, Stream: natstest.Name(t, url, "engine")}
}

func mustOpen(t *testing.T, opt Options) *Engine {
	t.Helper()
	e, err := Open(opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestConformance(t *testing.T) {
	raw := natstest.URL(t)
	enginetest.Run(t, enginetest.Harness{
		Open: func(t *testing.T, o enginetest.Options) engine.Engine {
			opt := testOptions(t, raw)
			opt.MaxLen = o.MaxLen
			return mustOpen(t, opt)
		},
		OpenPeer: func(t *testing.T, e engine.Engine) engine.Engine {
			return mustOpen(t, e.(*Engine).opt)
		},
		Reopen: func(t *testing.T, e engine.Engine) engine.Engine {
			opt := e.(*Engine).opt
			e.Close()
			return mustOpen(t, opt)
		},
		Aging: &enginetest.Aging{
			Open: func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine {
				opt := testOptions(t, raw)
				opt.MaxAge, opt.Now = maxAge, now
				return mustOpen(t, opt)
			},
			// Read hides expired events on the engine's clock; the age
			// sweep removes them, keeping each topic's last.
			Trim: func(t *testing.T, e engine.Engine) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := e.(*Engine).sweepAge(ctx); err != nil {
					t.Fatalf("age sweep: %v", err)
				}
			},
		},
		Dense: false,
	})
}

func TestRegisteredScheme(t *testing.T) {
	for _, raw := range []string{"nats://127.0.0.1:1?stream=", "nats://127.0.0.1:1?replicas=0", "nats://127.0.0.1:1?sweep=0", "nats://127.0.0.1:1?bogus=1", "nats://127.0.0.1:1?stream=a.b"} {
		if _, err := engine.Open(raw, engine.Config{}); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", raw)
		}
	}
	u, _ := url.Parse("nats://127.0.0.1:1")
	if _, err := openURL(u, engine.Config{}); err == nil {
		t.Errorf("Open(%q) with no server succeeded", u)
	}
}
