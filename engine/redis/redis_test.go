package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/enginetest"
)

// testURL is the Redis the tests use, from HERALD_TEST_REDIS_URL. Without
// it the tests skip, except under CI=true, where they fail: CI must not
// pass without having run them.
func testURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("HERALD_TEST_REDIS_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("HERALD_TEST_REDIS_URL is not set, and CI=true: the Redis engine tests must run in CI (.ci/run sets it)")
		}
		t.Skip("set HERALD_TEST_REDIS_URL (for example redis://127.0.0.1:6379/0) to run the Redis engine tests")
	}
	return u
}

// testOptions are engine options on rawURL under a fresh random key prefix,
// whose keys are deleted when the test ends.
func testOptions(t *testing.T, rawURL string) Options {
	t.Helper()
	co, err := rueidis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	rand.Read(b[:])
	prefix := "heraldtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { deletePrefix(t, co, prefix) })
	return Options{Client: co, Prefix: prefix}
}

// deletePrefix deletes every key under prefix.
func deletePrefix(t *testing.T, co rueidis.ClientOption, prefix string) {
	co.DisableCache = true
	c, err := rueidis.NewClient(co)
	if err != nil {
		t.Errorf("cleanup of %s: %v", prefix, err)
		return
	}
	defer c.Close()
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Errorf("cleanup of %s: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			if err := c.Do(ctx, c.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				t.Errorf("cleanup of %s: %v", prefix, err)
				return
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
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
	raw := testURL(t)
	reopen := func(t *testing.T, e engine.Engine) engine.Engine {
		opt := e.(*Engine).opt
		e.Close()
		return mustOpen(t, opt)
	}
	enginetest.Run(t, enginetest.Harness{
		Open: func(t *testing.T, o enginetest.Options) engine.Engine {
			opt := testOptions(t, raw)
			opt.MaxLen = o.MaxLen
			return mustOpen(t, opt)
		},
		OpenPeer: func(t *testing.T, e engine.Engine) engine.Engine {
			return mustOpen(t, e.(*Engine).opt)
		},
		Reopen: reopen,
		Aging: &enginetest.Aging{
			Open: func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine {
				opt := testOptions(t, raw)
				opt.MaxAge, opt.Now = maxAge, now
				return mustOpen(t, opt)
			},
			// Retention by age is applied by Read on the engine's clock
			// (and physically by later appends): nothing to run.
			Trim: func(*testing.T, engine.Engine) {},
		},
		Dense: true,
	})
}

func TestRegisteredSchemes(t *testing.T) {
	for _, raw := range []string{"redis://127.0.0.1:1/0?pubsub=0", "redis://127.0.0.1:1/0?meta-ttl=x", "redis://127.0.0.1:1/0?prefix=", "redis://127.0.0.1:1/0?probe=0", "redis://127.0.0.1:1/0?probe=x", "redis://127.0.0.1:1/0?sweep=0"} {
		if _, err := engine.Open(raw, engine.Config{}); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", raw)
		}
	}
	u, _ := url.Parse("rediss://h:1/0")
	if _, err := openURL(u, engine.Config{}); err == nil {
		t.Errorf("Open(%q) with no server succeeded", u)
	}
}
