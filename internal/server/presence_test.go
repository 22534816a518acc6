package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine/memory"
	"github.com/herald-hub/herald/engine/redis"
	"github.com/herald-hub/herald/internal/redistest"
)

// dialAs opens a stream with tok that the test closes at cleanup.
func (n *testNode) dialAs(tok string, topics ...string) *client.Stream {
	s := client.Dial(context.Background(), client.Config{
		URL:        n.eventsURL(topics...),
		Header:     http.Header{"Authorization": {"Bearer " + tok}},
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})
	n.t.Cleanup(func() { s.Close() })
	return s
}

// presenceOf GETs path with cred and decodes a 200 answer into v.
func (n *testNode) presenceOf(path, cred string, v any) {
	n.t.Helper()
	resp := n.get(path, "Authorization", "Bearer "+cred)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		n.t.Fatalf("GET %s: %d %+v", path, resp.StatusCode, e)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		n.t.Fatal(err)
	}
}

// wantUserPresence waits until n answers want for want.User.
func (n *testNode) wantUserPresence(want userPresenceAnswer) {
	n.t.Helper()
	var got userPresenceAnswer
	eventually(n.t, fmt.Sprintf("presence %+v", want), func() bool {
		got = userPresenceAnswer{}
		n.presenceOf("/v1/presence/users/"+want.User, testKey, &got)
		return reflect.DeepEqual(got, want)
	})
}

func TestPresenceOfUsersAndTopics(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), NodeID: "n1"}})
	grants := &auth.Grants{Subscribe: []string{"rooms/*"}}
	alice, bob := token(t, "alice", grants, nil), token(t, "bob", grants, nil)
	offline := userPresenceAnswer{User: "alice", Nodes: []nodePresenceAnswer{}}
	n.wantUserPresence(offline)

	a1 := n.dialAs(alice, "rooms/7", "users/alice")
	a2 := n.dialAs(alice, "rooms/7")
	n.dialAs(bob, "rooms/7")
	n.dial("", "rooms/7") // anonymous: not a user, no presence
	n.wantUserPresence(userPresenceAnswer{User: "alice", Online: true, Streams: 2, Nodes: []nodePresenceAnswer{{"n1", 2}}})

	var room topicPresenceAnswer
	n.presenceOf("/v1/presence?topic=rooms/7", bob, &room) // bob may subscribe to rooms/7
	want := topicPresenceAnswer{Topic: "rooms/7", Users: []userStreamsAnswer{{"alice", 2}, {"bob", 1}}, UserCount: 2, Streams: 3}
	if !reflect.DeepEqual(room, want) {
		t.Fatalf("rooms/7: %+v, want %+v", room, want)
	}
	n.presenceOf("/v1/presence?topic=rooms/7&limit=1", testKey, &room)
	want = topicPresenceAnswer{Topic: "rooms/7", Users: []userStreamsAnswer{{"alice", 2}}, UserCount: 2, Streams: 3, Truncated: true}
	if !reflect.DeepEqual(room, want) {
		t.Fatalf("rooms/7 limit 1: %+v, want %+v", room, want)
	}
	// A user may read their own presence (they may subscribe to users/alice).
	var self userPresenceAnswer
	n.presenceOf("/v1/presence/users/alice", alice, &self)
	if !self.Online {
		t.Fatalf("alice reading herself: %+v", self)
	}

	a1.Close()
	n.wantUserPresence(userPresenceAnswer{User: "alice", Online: true, Streams: 1, Nodes: []nodePresenceAnswer{{"n1", 1}}})
	a2.Close()
	n.wantUserPresence(offline)
}

func TestPresenceIsReadableOnlyByThoseWhoMaySubscribe(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{})}})
	bob := token(t, "bob", &auth.Grants{Subscribe: []string{"rooms/1"}}, nil)
	for _, c := range []struct {
		path, cred string
		status     int
		code       string
	}{
		{"/v1/presence/users/alice", bob, 403, "forbidden_topic"},
		{"/v1/presence/users/alice", "", 401, "missing_credentials"},
		{"/v1/presence?topic=rooms/2", bob, 403, "forbidden_topic"},
		{"/v1/presence?topic=rooms/1", "", 401, "missing_credentials"},
		{"/v1/presence?topic=rooms/1", "not-a-key", 401, "token_malformed"},
		{"/v1/presence", testKey, 400, "invalid_topic"},
		{"/v1/presence?topic=a&topic=b", testKey, 400, "invalid_topic"},
		{"/v1/presence?topic=a%20b", testKey, 400, "invalid_topic"},
		{"/v1/presence?topic=rooms/1&limit=-1", testKey, 400, "invalid_limit"},
		{"/v1/presence?topic=rooms/1&limit=x", testKey, 400, "invalid_limit"},
		{"/v1/presence?topic=rooms/1&limit=10001", testKey, 400, "invalid_limit"},
		{"/v1/presence/users/a%20b", testKey, 400, "invalid_topic"},
	} {
		var h []string
		if c.cred != "" {
			h = []string{"Authorization", "Bearer " + c.cred}
		}
		resp := n.get(c.path, h...)
		t.Run(c.path, func(t *testing.T) { wantError(t, resp, c.status, c.code) })
	}
	resp, raw := n.post("application/json", []byte(`{"topic":"presence/rooms/1","data":"{}"}`), testKey)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(raw), "reserved_topic") {
		t.Fatalf("publishing to presence/rooms/1: %d %s, want 403 reserved_topic", resp.StatusCode, raw)
	}
}

func TestPresenceEvents(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), PresenceEvents: true}})
	watcher := token(t, "carol", &auth.Grants{Subscribe: []string{"rooms/7"}}, nil)
	w := n.dialAs(watcher, "presence/rooms/7")                                          // readable as rooms/7 is
	eventually(t, "the watcher's stream", func() bool { return w.LastEventID() != "" }) // herald.connected came
	alice := token(t, "alice", &auth.Grants{Subscribe: []string{"rooms/7"}}, nil)
	a1 := n.dialAs(alice, "rooms/7")
	wantChange(t, w, "join", "alice")
	a2 := n.dialAs(alice, "rooms/7") // a second tab: nothing
	n.wantUserPresence(userPresenceAnswer{User: "alice", Online: true, Streams: 2, Nodes: []nodePresenceAnswer{{"", 2}}})
	a1.Close()
	a2.Close()
	wantChange(t, w, "leave", "alice")
}

func wantChange(t *testing.T, s *client.Stream, typ, user string) {
	t.Helper()
	ev := next(t, s, 5*time.Second)
	var c presenceChange
	if err := json.Unmarshal([]byte(ev.Data), &c); err != nil || ev.Type != typ || c != (presenceChange{User: user, Topic: "rooms/7"}) {
		t.Fatalf("got %s %s (%v), want %s of %s on rooms/7", ev.Type, ev.Data, err, typ, user)
	}
}

// Two nodes on one Redis answer alike: a user's streams on either show on
// both, named by node.
func TestPresenceAcrossNodesOnRedis(t *testing.T) {
	raw := redistest.URL(t)
	co, err := rueidis.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	prefix := redistest.Prefix(t, co, "server")
	tokens := verifier(t, auth.Options{})
	var nodes []*testNode
	for _, id := range []string{"a", "b"} {
		eng, err := redis.Open(redis.Options{Client: co, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, newTestNodeOn(t, eng, nodeOptions{server: Config{Tokens: tokens, NodeID: id}}))
	}
	alice := token(t, "alice", nil, nil)
	nodes[0].dialAs(alice, "users/alice")
	nodes[1].dialAs(alice, "users/alice")
	s := nodes[1].dialAs(alice, "users/alice")
	for _, n := range nodes {
		n.wantUserPresence(userPresenceAnswer{User: "alice", Online: true, Streams: 3, Nodes: []nodePresenceAnswer{{"a", 1}, {"b", 2}}})
	}
	s.Close()
	nodes[0].wantUserPresence(userPresenceAnswer{User: "alice", Online: true, Streams: 2, Nodes: []nodePresenceAnswer{{"a", 1}, {"b", 1}}})
}

// Nodes whose engine keeps presence per node share it through another back
// end (PresenceFrom), as -presence-url does for the Kafka engine.
func TestPresenceFromAnotherBackEnd(t *testing.T) {
	co, err := rueidis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	prefix := redistest.Prefix(t, co, "server")
	tokens := verifier(t, auth.Options{})
	var nodes []*testNode
	for _, id := range []string{"a", "b"} {
		shared, err := redis.Open(redis.Options{Client: co, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { shared.Close() })
		// Each node's own engine is its own memory: nothing shared there.
		nodes = append(nodes, newTestNodeOn(t, memory.New(memory.Options{}), nodeOptions{server: Config{Tokens: tokens, NodeID: id, PresenceFrom: shared}}))
	}
	nodes[0].dialAs(token(t, "alice", nil, nil), "users/alice")
	nodes[1].wantUserPresence(userPresenceAnswer{User: "alice", Online: true, Streams: 1, Nodes: []nodePresenceAnswer{{"a", 1}}})
}
