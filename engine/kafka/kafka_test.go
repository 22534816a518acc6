package kafka

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/enginetest"
)

const testPartitions = 8

// opened remembers the options of every engine a test opened, for OpenPeer
// and Reopen.
var opened sync.Map // *Engine → Options

func newBenchCluster(b *testing.B) *kfake.Cluster {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatalf("kfake: %v", err)
	}
	b.Cleanup(c.Close)
	return c
}

func benchOptions(b *testing.B, c *kfake.Cluster) Options {
	return Options{
		Brokers:      c.ListenAddrs(),
		Partitions:   32,
		Dir:          b.TempDir(),
		TrimInterval: time.Hour,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func testOptions(t *testing.T, c *kfake.Cluster) Options {
	return Options{
		Brokers:      c.ListenAddrs(),
		Topic:        "herald",
		Partitions:   testPartitions,
		Dir:          t.TempDir(),
		TrimInterval: time.Hour,
		FetchMaxWait: 50 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

func openEngine(t *testing.T, opt Options) *Engine {
	t.Helper()
	e, err := Open(opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	opened.Store(e, opt)
	t.Cleanup(func() { e.Close() })
	return e
}

func optionsOf(t *testing.T, e engine.Engine) Options {
	t.Helper()
	v, ok := opened.Load(e)
	if !ok {
		t.Fatalf("engine %p was not opened by this test", e)
	}
	return v.(Options)
}

func TestConformance(t *testing.T) {
	enginetest.Run(t, enginetest.Harness{
		Open: func(t *testing.T, o enginetest.Options) engine.Engine {
			opt := testOptions(t, newCluster(t))
			opt.MaxLen = o.MaxLen
			return openEngine(t, opt)
		},
		OpenPeer: func(t *testing.T, e engine.Engine) engine.Engine {
			opt := optionsOf(t, e)
			opt.Dir = t.TempDir()
			return openEngine(t, opt)
		},
		Reopen: func(t *testing.T, e engine.Engine) engine.Engine {
			opt := optionsOf(t, e)
			if err := e.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openEngine(t, opt)
		},
		Aging: &enginetest.Aging{
			Open: func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine {
				opt := testOptions(t, newCluster(t))
				opt.MaxAge, opt.Now = maxAge, now
				return openEngine(t, opt)
			},
			Trim: func(t *testing.T, e engine.Engine) {
				if err := e.(*Engine).trim(); err != nil {
					t.Fatalf("trim: %v", err)
				}
			},
		},
		Dense: false,
	})
}
