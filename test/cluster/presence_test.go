package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
)

const jwtSecret = "cluster-test-jwt-secret-of-32-bytes-at-least"

func userToken(t *testing.T, sub string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}, Herald: &auth.Grants{Subscribe: []string{"rooms/*"}}}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// presenceOf is GET /v1/presence/users/{user} on addr with the publish key.
func presenceOf(t *testing.T, addr, user string) (online bool, nodes map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/presence/users/"+user, nil)
	req.Header.Set("Authorization", "Bearer "+publishKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("presence on %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var v struct {
		Online bool
		Nodes  []struct {
			Node    string
			Streams int
		}
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		t.Fatalf("presence on %s: %d", addr, resp.StatusCode)
	}
	nodes = map[string]int{}
	for _, n := range v.Nodes {
		nodes[n.Node] = n.Streams
	}
	return v.Online, nodes
}

// A node killed with SIGKILL removes nothing itself: its users must still go
// offline on the other nodes within 15 s, with a leave event, and come back
// when their clients reconnect to it after its restart.
func TestClusterPresenceOfAKilledNode(t *testing.T) {
	redisURL := os.Getenv("HERALD_TEST_REDIS_URL")
	need(t, redisURL != "", "set HERALD_TEST_REDIS_URL (for example redis://127.0.0.1:6379/0) to run the cluster tests")
	bin := buildHerald(t)
	engineURL := redisEngine(t, redisURL)
	flags := []string{"-jwt-secret", jwtSecret, "-presence-events", "true"}
	a := startNode(t, bin, engineURL, append([]string{"-node-id", "a"}, flags...)...)
	b := startNode(t, bin, engineURL, append([]string{"-node-id", "b"}, flags...)...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := client.Dial(ctx, client.Config{
		URL:        "http://" + b.addr + "/v1/events?topic=presence/rooms/1",
		Header:     http.Header{"Authorization": {"Bearer " + publishKey}},
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})
	defer watch.Close()
	waitUntil(t, 10*time.Second, "the watcher's stream", func() bool { return watch.LastEventID() != "" })
	alice := client.Dial(ctx, client.Config{
		URL:        "http://" + a.addr + "/v1/events?topic=rooms/1",
		Header:     http.Header{"Authorization": {"Bearer " + userToken(t, "alice")}},
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})
	defer alice.Close()
	waitUntil(t, 10*time.Second, "alice online on b, through a", func() bool {
		online, nodes := presenceOf(t, b.addr, "alice")
		return online && nodes["a"] == 1
	})
	wantPresenceEvent(t, watch, "join")

	a.kill(t)
	killed := time.Now()
	waitUntil(t, 20*time.Second, "alice offline on b", func() bool {
		online, _ := presenceOf(t, b.addr, "alice")
		return !online
	})
	gone := time.Since(killed)
	wantPresenceEvent(t, watch, "leave")
	t.Logf("alice offline on b %v after a was killed; leave published %v after", gone.Round(10*time.Millisecond), time.Since(killed).Round(10*time.Millisecond))
	if gone > 15*time.Second {
		t.Errorf("a killed node's user stayed online for %v, want 15 s at most", gone)
	}

	a.restart(t)
	waitUntil(t, 20*time.Second, "alice online again once her client is back on a", func() bool {
		online, nodes := presenceOf(t, b.addr, "alice")
		return online && nodes["a"] == 1
	})
	wantPresenceEvent(t, watch, "join")
}

func wantPresenceEvent(t *testing.T, s *client.Stream, typ string) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatalf("the watcher's stream ended: %v", s.Err())
		}
		var c struct{ User, Topic string }
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil || ev.Type != typ || c.User != "alice" || c.Topic != "rooms/1" {
			t.Fatalf("presence event %s %s, want %s of alice on rooms/1", ev.Type, ev.Data, typ)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s event within 20 s", typ)
	}
}
