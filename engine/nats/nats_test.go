package nats

import (
	"context"
	"maps"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	if _, err := engine.Open("nats://127.0.0.1:1?server=a/b", engine.Config{}); err == nil {
		t.Errorf("Open with a bad server= succeeded")
	}
}

// The URL form opens an engine on the named stream, through any server
// listed.
func TestOpenByURL(t *testing.T) {
	raw := natstest.URL(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	stream := natstest.Name(t, raw, "url")
	e, err := engine.Open(raw+"?stream="+stream+"&sweep=1m&replicas=1&server=127.0.0.1:1&server="+u.Host, engine.Config{MaxLen: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n := e.(*Engine)
	if n.opt.Stream != stream || n.opt.MaxLen != 5 || n.opt.SweepInterval != time.Minute {
		t.Fatalf("options %+v", n.opt)
	}
	if _, err := e.Append(context.Background(), []engine.Event{{Topic: "u/a", Type: "t"}}); err != nil {
		t.Fatal(err)
	}
}

// A long Read goes through a consumer, which it deletes.
func TestLongReadLeavesNoConsumer(t *testing.T) {
	raw := natstest.URL(t)
	e := mustOpen(t, testOptions(t, raw))
	ctx := context.Background()
	var batch []engine.Event
	for i := range 50 {
		batch = append(batch, engine.Event{Topic: "lr/a", Type: "t", Data: []byte{byte(i)}})
	}
	pos, err := e.Append(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Read(ctx, "lr/a", engine.Position{}, 40)
	if err != nil || len(got) != 40 {
		t.Fatalf("Read: %d events, %v", len(got), err)
	}
	for i, ev := range got {
		if ev.Pos != pos[i] || ev.Data[0] != byte(i) || (i > 0 && ev.Prev != pos[i-1].Offset) {
			t.Fatalf("event %d: %+v, appended at %v", i, ev, pos[i])
		}
	}
	s, err := e.js.Stream(ctx, e.opt.Stream)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers left after Read", info.State.Consumers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The age sweep removes expired messages, keeping each subject's last one,
// so Head and the Prev chain stay.
func TestAgeSweepKeepsEachTopicsLastMessage(t *testing.T) {
	raw := natstest.URL(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	opt := testOptions(t, raw)
	opt.MaxAge, opt.Now = time.Hour, func() time.Time { return time.Unix(0, now.Load()) }
	opt.SweepInterval = time.Hour
	e := mustOpen(t, opt)
	ctx := context.Background()
	ev := func(topic string) engine.Event { return engine.Event{Topic: topic, Type: "t"} }
	old, err := e.Append(ctx, []engine.Event{ev("as/a"), ev("as/a"), ev("as/a"), ev("as/b"), ev("as/b")})
	if err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * time.Hour))
	fresh, err := e.Append(ctx, []engine.Event{ev("as/b")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sweepAge(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := e.js.Stream(ctx, opt.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(e.subjPrefix+">"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{e.subject("as/a"): 1, e.subject("as/b"): 1}
	if !maps.Equal(info.State.Subjects, want) {
		t.Fatalf("messages per subject after the age sweep: %v, want %v", info.State.Subjects, want)
	}
	if h, _ := e.Head(ctx, "as/a"); h != old[2] {
		t.Fatalf("Head(as/a) = %v, want %v", h, old[2])
	}
	got, err := e.Read(ctx, "as/b", old[4], 10)
	if err != nil || len(got) != 1 || got[0].Pos != fresh[0] || got[0].Prev != old[4].Offset {
		t.Fatalf("Read(as/b) after its last expired event: %v, %v", got, err)
	}
	// A second sweep has nothing left to do.
	if err := e.sweepAge(ctx); err != nil {
		t.Fatal(err)
	}
}

// Every character a topic may hold goes through the server: as a subject
// token to append, read, subscribe and tell apart from its neighbours.
func TestTopicAlphabetOnTheServer(t *testing.T) {
	raw := natstest.URL(t)
	e := mustOpen(t, testOptions(t, raw))
	ctx := context.Background()
	topics := []string{"a.b~c:d/e@f+g-h_i", "a%b", ".", "..", "a", "a.", "Z9"}
	got := make(chan engine.Event, 100)
	for _, tp := range topics {
		if tp == "a%b" {
			continue
		}
		cancel, err := e.Subscribe(tp, func(ev engine.Event) { got <- ev }, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
	}
	if _, err := e.Append(ctx, []engine.Event{{Topic: "a%b"}}); err == nil {
		t.Fatal("Append to a topic with a percent sign succeeded")
	}
	for _, tp := range topics {
		if tp == "a%b" {
			continue
		}
		pos, err := e.Append(ctx, []engine.Event{{Topic: tp, Type: "t", Data: []byte(tp)}})
		if err != nil {
			t.Fatalf("Append(%q): %v", tp, err)
		}
		evs, err := e.Read(ctx, tp, engine.Position{}, 10)
		if err != nil || len(evs) != 1 || evs[0].Pos != pos[0] || string(evs[0].Data) != tp {
			t.Fatalf("Read(%q): %v, %v", tp, evs, err)
		}
		select {
		case ev := <-got:
			if ev.Topic != tp || string(ev.Data) != tp {
				t.Fatalf("subscriber got %q (%s) after an append to %q", ev.Topic, ev.Data, tp)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no delivery for %q", tp)
		}
	}
}

// Types and data go through headers and bodies unchanged, whatever their
// bytes.
func TestTypesAndDataRoundTrip(t *testing.T) {
	raw := natstest.URL(t)
	e := mustOpen(t, testOptions(t, raw))
	ctx := context.Background()
	got := make(chan engine.Event, 10)
	cancel, err := e.Subscribe("rt/a", func(ev engine.Event) { got <- ev }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	events := []engine.Event{
		{Topic: "rt/a", Type: "", Data: nil},
		{Topic: "rt/a", Type: " spaced ", Data: []byte{0, 1, 2, '\r', '\n'}},
		{Topic: "rt/a", Type: "ünïcode\ttab", Data: []byte("{}")},
		{Topic: "rt/a", Type: "Nats-Msg-Id: x\r\nfake", Data: []byte("x")},
	}
	pos, err := e.Append(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	read, err := e.Read(ctx, "rt/a", engine.Position{}, 10)
	if err != nil || len(read) != len(events) {
		t.Fatalf("Read: %d events, %v", len(read), err)
	}
	for i, want := range events {
		live := <-got
		for _, ev := range []engine.Event{read[i], live} {
			if ev.Type != want.Type || string(ev.Data) != string(want.Data) || ev.Pos != pos[i] {
				t.Fatalf("event %d: got {%q %q %v}, want {%q %q %v}", i, ev.Type, ev.Data, ev.Pos, want.Type, want.Data, pos[i])
			}
		}
	}
}
