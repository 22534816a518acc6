package memory

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/enginetest"
)

// harness runs the suite on memory engines made with opt (plus what each
// subtest asks), on a Log of their own: peers share it, a reopen keeps it.
func harness(dense bool, opt Options) enginetest.Harness {
	open := func(t *testing.T, o Options) engine.Engine {
		e := New(o)
		t.Cleanup(func() { e.Close() })
		return e
	}
	return enginetest.Harness{
		Dense: dense,
		Open: func(t *testing.T, o enginetest.Options) engine.Engine {
			opt := opt
			opt.MaxLen = o.MaxLen
			return open(t, opt)
		},
		OpenPeer: func(t *testing.T, e engine.Engine) engine.Engine {
			p := NewPeer(e.(*Engine))
			t.Cleanup(func() { p.Close() })
			return p
		},
		Reopen: func(t *testing.T, e engine.Engine) engine.Engine {
			if err := e.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			n := e.(*Engine).Log().Open()
			t.Cleanup(func() { n.Close() })
			return n
		},
		Aging: &enginetest.Aging{
			Open: func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine {
				opt := opt
				opt.MaxAge, opt.Now = maxAge, now
				return open(t, opt)
			},
			Trim: func(t *testing.T, e engine.Engine) { e.(*Engine).Trim() },
		},
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	enginetest.Run(t, harness(true, Options{}))
}

func TestConformanceSparse(t *testing.T) {
	enginetest.Run(t, harness(false, Options{Sparse: 5}))
}
