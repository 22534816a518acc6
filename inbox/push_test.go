package inbox_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/memory"
	"github.com/herald-hub/herald/inbox"
)

func topicEvents(t *testing.T, e engine.Engine, topic string) []engine.Event {
	t.Helper()
	evs, err := e.Read(context.Background(), topic, engine.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// Every stored notification reaches its user's topic once, in order, through
// failed appends (whole or for one topic only) and a pusher restarted.
func TestPusherPushesEachOnce(t *testing.T) {
	ctx := context.Background()
	st, err := inbox.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := memory.New(memory.Options{})
	defer e.Close()
	e.Faults().FailAppends(2)
	e.Faults().FailTopic("users/b", 3)
	for range 3 {
		if _, _, err := st.Send(ctx, inbox.Send{To: []string{"a", "b"}, Type: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	p := inbox.NewPusher(st, e, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(10 * time.Second)
	for len(topicEvents(t, e, "users/b")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("users/b has %d of 3", len(topicEvents(t, e, "users/b")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Close()
	// A second pusher (a restart) finds nothing left and pushes nothing again.
	p = inbox.NewPusher(st, e, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	time.Sleep(200 * time.Millisecond)
	p.Close()
	for _, u := range []string{"a", "b"} {
		evs := topicEvents(t, e, "users/"+u)
		if len(evs) != 3 {
			t.Fatalf("users/%s has %d events, want 3", u, len(evs))
		}
		var last int64
		for _, ev := range evs {
			var n inbox.JSON
			if err := json.Unmarshal(ev.Data, &n); err != nil || ev.Type != inbox.EventType {
				t.Fatalf("event %+v", ev)
			}
			id := mustID(t, n.ID)
			if id <= last || ev.ID != inbox.IdempotencyKey(id) {
				t.Fatalf("users/%s: %s after %d, key %q", u, n.ID, last, ev.ID)
			}
			last = id
		}
	}
	if left, _ := st.Unpushed(ctx, 10); len(left) != 0 {
		t.Fatalf("%d left unpushed", len(left))
	}
}

func mustID(t *testing.T, s string) int64 {
	var id int64
	if err := json.Unmarshal([]byte(s), &id); err != nil {
		t.Fatalf("id %q", s)
	}
	return id
}

// Nodes sharing one inbox each run a pusher over the same rows: the
// notification's idempotency key makes each appended once.
func TestTwoPushersPushEachOnce(t *testing.T) {
	ctx := context.Background()
	st, err := inbox.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := memory.New(memory.Options{})
	defer e.Close()
	peer := memory.NewPeer(e) // a second node on the same log
	defer peer.Close()
	quiet := slog.New(slog.DiscardHandler)
	p1 := inbox.NewPusher(st, e, 5*time.Millisecond, quiet)
	p2 := inbox.NewPusher(st, peer, 5*time.Millisecond, quiet)
	for range 50 {
		if _, _, err := st.Send(ctx, inbox.Send{To: []string{"u"}, Type: "x"}); err != nil {
			t.Fatal(err)
		}
		p1.Wake()
		p2.Wake()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := st.Unpushed(ctx, 1)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("notifications left unpushed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p1.Close()
	p2.Close()
	if n := len(topicEvents(t, e, "users/u")); n != 50 {
		t.Fatalf("users/u holds %d events for 50 notifications", n)
	}
}

// A stored notification whose data is not JSON (written by hand, or by an
// older version) is shown without its data, so the list and the push it is
// in still encode.
func TestNotificationWithBadDataEncodesWithoutIt(t *testing.T) {
	n := inbox.Notification{ID: 7, Type: "x", Data: []byte("01")}
	b, err := json.Marshal(n.JSON())
	if err != nil || strings.Contains(string(b), `"data"`) {
		t.Fatalf("encoded %s, %v: want no data", b, err)
	}
	n.Data = []byte(`{"a":1}`)
	if b, _ := json.Marshal(n.JSON()); !strings.Contains(string(b), `"data":{"a":1}`) {
		t.Fatalf("encoded %s: want its data", b)
	}
}
