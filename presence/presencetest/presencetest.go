// Package presencetest is the conformance suite every presence registry
// passes: the in-memory one and each engine's shared one.
package presencetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/presence"
)

// Opener opens a registry for a node. Registries opened by one Opener with
// Shared set share a back end: they are nodes of one Herald.
type Opener struct {
	// Open returns a registry named node, closed by the suite.
	Open func(t *testing.T, opt presence.Options) presence.Registry
	// Shared is true when registries of one test see each other's streams.
	Shared bool
}

// settle bounds how long a shared registry may take to show a change.
const settle = 5 * time.Second

// Run runs the suite.
func Run(t *testing.T, o Opener) {
	t.Run("UserStreams", func(t *testing.T) { testUserStreams(t, o) })
	t.Run("TopicUsers", func(t *testing.T) { testTopicUsers(t, o) })
	t.Run("Limit", func(t *testing.T) { testLimit(t, o) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, o) })
	t.Run("PresenceTopicsUntracked", func(t *testing.T) { testUntracked(t, o) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, o) })
	if o.Shared {
		t.Run("Nodes", func(t *testing.T) { testNodes(t, o) })
		t.Run("ChangesAcrossNodes", func(t *testing.T) { testChangesAcrossNodes(t, o) })
		t.Run("CloseRemovesStreams", func(t *testing.T) { testCloseRemoves(t, o) })
	}
}

// Eventually polls f until it returns nil or settle passes.
func Eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %v: %v", what, settle, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WantUser waits until r reports user with streams per node.
func WantUser(t *testing.T, r presence.Registry, user string, perNode map[string]int) {
	t.Helper()
	want := presence.User{User: user, Nodes: presence.SortedNodes(perNode)}
	for _, n := range perNode {
		want.Streams += n
	}
	Eventually(t, "user "+user, func() error {
		got, err := r.User(context.Background(), user)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("got %+v, want %+v", got, want)
		}
		return nil
	})
}

// WantTopic waits until r reports topic with streams per user.
func WantTopic(t *testing.T, r presence.Registry, topic string, perUser map[string]int) {
	t.Helper()
	want := presence.Summarize(topic, perUser, -1)
	Eventually(t, "topic "+topic, func() error {
		got, err := r.Topic(context.Background(), topic, 1000)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("got %+v, want %+v", got, want)
		}
		return nil
	})
}

func conn(user string, topics ...string) presence.Conn {
	return presence.Conn{ID: presence.NewID(), User: user, Topics: topics}
}

func testUserStreams(t *testing.T, o Opener) {
	r := o.Open(t, presence.Options{Node: "n1"})
	a, b := conn("u1", "rooms/1"), conn("u1", "rooms/2")
	WantUser(t, r, "u1", nil)
	r.Join(a)
	r.Join(b)
	r.Join(a) // a repeat is ignored
	WantUser(t, r, "u1", map[string]int{"n1": 2})
	r.Leave(a.ID)
	r.Leave(a.ID)             // twice: ignored
	r.Leave(presence.NewID()) // unknown: ignored
	WantUser(t, r, "u1", map[string]int{"n1": 1})
	r.Leave(b.ID)
	WantUser(t, r, "u1", nil)
}

func testTopicUsers(t *testing.T, o Opener) {
	r := o.Open(t, presence.Options{Node: "n1"})
	a, b, c := conn("u1", "rooms/7", "users/u1"), conn("u1", "rooms/7"), conn("u2", "rooms/7")
	r.Join(a)
	r.Join(b)
	r.Join(c)
	WantTopic(t, r, "rooms/7", map[string]int{"u1": 2, "u2": 1})
	WantTopic(t, r, "users/u1", map[string]int{"u1": 1})
	r.Leave(a.ID)
	WantTopic(t, r, "rooms/7", map[string]int{"u1": 1, "u2": 1})
	WantTopic(t, r, "users/u1", nil)
	// A stream that leaves before it was written leaves nothing behind.
	d := conn("u3", "rooms/7")
	r.Join(d)
	r.Leave(d.ID)
	r.Leave(c.ID)
	WantTopic(t, r, "rooms/7", map[string]int{"u1": 1})
}

func testLimit(t *testing.T, o Opener) {
	r := o.Open(t, presence.Options{Node: "n1"})
	for _, u := range []string{"c", "a", "b"} {
		r.Join(conn(u, "rooms/1"))
	}
	WantTopic(t, r, "rooms/1", map[string]int{"a": 1, "b": 1, "c": 1})
	got, err := r.Topic(context.Background(), "rooms/1", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := presence.Topic{Topic: "rooms/1", Users: []presence.UserStreams{{User: "a", Streams: 1}, {User: "b", Streams: 1}}, UserCount: 3, Streams: 3}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("limit 2: got %+v, want %+v", got, want)
	}
}

// Recorder collects changes.
type Recorder struct {
	mu      sync.Mutex
	changes []presence.Change
}

// Record is an Options.OnChange.
func (c *Recorder) Record(ch presence.Change) {
	c.mu.Lock()
	c.changes = append(c.changes, ch)
	c.mu.Unlock()
}

// Want waits until the changes recorded are want, in order.
func (c *Recorder) Want(t *testing.T, want ...presence.Change) {
	t.Helper()
	Eventually(t, "changes", func() error {
		c.mu.Lock()
		got := slices.Clone(c.changes)
		c.mu.Unlock()
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %+v, want %+v", got, want)
		}
		return nil
	})
}

func join(topic, user string) presence.Change {
	return presence.Change{Topic: topic, User: user, Joined: true}
}
func leave(topic, user string) presence.Change { return presence.Change{Topic: topic, User: user} }

func testChanges(t *testing.T, o Opener) {
	var rec Recorder
	r := o.Open(t, presence.Options{Node: "n1", OnChange: rec.Record})
	a := conn("u1", "rooms/1")
	r.Join(a)
	rec.Want(t, join("rooms/1", "u1"))
	b := conn("u1", "rooms/1") // a second tab: no change
	r.Join(b)
	WantTopic(t, r, "rooms/1", map[string]int{"u1": 2})
	r.Leave(a.ID) // the old tab closes: u1 is still there
	WantTopic(t, r, "rooms/1", map[string]int{"u1": 1})
	rec.Want(t, join("rooms/1", "u1"))
	r.Leave(b.ID)
	rec.Want(t, join("rooms/1", "u1"), leave("rooms/1", "u1"))
}

func testUntracked(t *testing.T, o Opener) {
	var rec Recorder
	r := o.Open(t, presence.Options{Node: "n1", OnChange: rec.Record})
	r.Join(conn("u1", "presence/rooms/1", "rooms/1"))
	rec.Want(t, join("rooms/1", "u1"))
	WantTopic(t, r, "presence/rooms/1", nil)
}

func testClosed(t *testing.T, o Opener) {
	r := o.Open(t, presence.Options{Node: "n1"})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Join(conn("u1", "rooms/1")) // ignored, no panic
	if _, err := r.User(context.Background(), "u1"); err != presence.ErrClosed {
		t.Fatalf("User after Close: %v, want ErrClosed", err)
	}
	if _, err := r.Topic(context.Background(), "rooms/1", 10); err != presence.ErrClosed {
		t.Fatalf("Topic after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func testNodes(t *testing.T, o Opener) {
	r1 := o.Open(t, presence.Options{Node: "n1"})
	r2 := o.Open(t, presence.Options{Node: "n2"})
	old, fresh := conn("u1", "rooms/1"), conn("u1", "rooms/1")
	r1.Join(old)
	r2.Join(fresh) // the user reconnected to n2 before n1 saw the old stream close
	r2.Join(conn("u1", "rooms/2"))
	for _, r := range []presence.Registry{r1, r2} {
		WantUser(t, r, "u1", map[string]int{"n1": 1, "n2": 2})
		WantTopic(t, r, "rooms/1", map[string]int{"u1": 2})
	}
	r1.Leave(old.ID) // the late close removes the old stream only
	for _, r := range []presence.Registry{r1, r2} {
		WantUser(t, r, "u1", map[string]int{"n2": 2})
		WantTopic(t, r, "rooms/1", map[string]int{"u1": 1})
	}
}

func testChangesAcrossNodes(t *testing.T, o Opener) {
	var rec1, rec2 Recorder
	r1 := o.Open(t, presence.Options{Node: "n1", OnChange: rec1.Record})
	r2 := o.Open(t, presence.Options{Node: "n2", OnChange: rec2.Record})
	a, b := conn("u1", "rooms/1"), conn("u1", "rooms/1")
	r1.Join(a)
	rec1.Want(t, join("rooms/1", "u1"))
	WantTopic(t, r2, "rooms/1", map[string]int{"u1": 1})
	r2.Join(b) // the user's second stream, on another node: no change
	WantTopic(t, r1, "rooms/1", map[string]int{"u1": 2})
	r1.Leave(a.ID)
	WantTopic(t, r1, "rooms/1", map[string]int{"u1": 1})
	r2.Leave(b.ID) // the last one, wherever it is
	rec2.Want(t, leave("rooms/1", "u1"))
	rec1.Want(t, join("rooms/1", "u1"))
}

func testCloseRemoves(t *testing.T, o Opener) {
	r1 := o.Open(t, presence.Options{Node: "n1"})
	r2 := o.Open(t, presence.Options{Node: "n2"})
	r1.Join(conn("u1", "rooms/1"))
	WantUser(t, r2, "u1", map[string]int{"n1": 1})
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	// At once, not after the node TTL: a node that stops cleanly says so.
	got, err := r2.User(context.Background(), "u1")
	if err != nil || got.Streams != 0 {
		t.Fatalf("after n1 closed: %+v, %v; want offline", got, err)
	}
}
