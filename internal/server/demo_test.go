package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/internal/testenv"
	"github.com/herald-hub/herald/internal/webui"
)

// demoToken asks the demo for a token for user.
func (n *testNode) demoToken(user string) demoTokenAnswer {
	n.t.Helper()
	code, raw := n.call("POST", "/v1/demo/token", "", `{"user":"`+user+`"}`)
	if code != http.StatusOK {
		n.t.Fatalf("demo token for %s: %d %s", user, code, raw)
	}
	var a demoTokenAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		n.t.Fatal(err)
	}
	return a
}

// A demo token subscribes to its user's topic and the rooms, posts to rooms,
// sends notifications to another demo user and reads its own inbox; nothing
// else.
func TestDemoTokens(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Demo: true, Inbox: openInbox(t)}})
	alice := n.demoToken("alice")
	if alice.User != "alice" || strings.Count(alice.Token, ".") != 2 {
		t.Fatalf("answer %+v", alice)
	}
	exp, err := time.Parse(time.RFC3339, alice.ExpiresAt)
	if err != nil || time.Until(exp) > time.Hour || time.Until(exp) < 59*time.Minute {
		t.Fatalf("expires_at %q (%v)", alice.ExpiresAt, err)
	}
	bob := n.demoToken("bob")

	own := n.dialAs(alice.Token, "users/alice", "rooms/x", "presence/rooms/x")
	eventually(t, "alice's stream", func() bool { return own.LastEventID() != "" })
	// Presence events are on with the demo: bob joining rooms/x shows.
	n.dialAs(bob.Token, "rooms/x")
	for ev := testenv.NextOfType(t, own, "join"); !strings.Contains(ev.Data, `"user":"bob"`); ev = testenv.NextOfType(t, own, "join") {
		if !strings.Contains(ev.Data, `"user":"alice"`) {
			t.Fatalf("join %s", ev.Data)
		}
	}
	if code, raw := n.call("POST", "/v1/publish", alice.Token, `{"topic":"rooms/x","type":"chat","data":"hi"}`); code != http.StatusOK {
		t.Fatalf("publish to rooms/x: %d %s", code, raw)
	}
	if ev := testenv.NextOfType(t, own, "chat"); ev.Data != "hi" {
		t.Fatalf("chat %q", ev.Data)
	}
	n.send(bob.Token, `{"to":["alice"],"type":"hello","title":"Hi alice"}`)
	if ev := testenv.NextOfType(t, own, "notification"); !strings.Contains(ev.Data, "Hi alice") {
		t.Fatalf("notification %s", ev.Data)
	}
	if l := n.list(alice.Token, ""); len(l.Notifications) != 1 || l.UnreadCount != 1 {
		t.Fatalf("alice's inbox %+v", l)
	}
	if code, raw := n.call("POST", "/v1/notifications/read-all", alice.Token, ""); code != http.StatusOK {
		t.Fatalf("read-all: %d %s", code, raw)
	}

	// Nothing more: another user's topic, other topics, Herald's own.
	for _, topic := range []string{"users/bob", "news", "rooms/x/y", "herald/stats"} {
		wantError(t, n.get(q(topic), bearerH(alice.Token)...), http.StatusForbidden, "forbidden_topic")
	}
	if code, _ := n.call("POST", "/v1/publish", alice.Token, `{"topic":"news","type":"x","data":"x"}`); code != http.StatusForbidden {
		t.Fatalf("publish to news: %d, want 403", code)
	}
	// A token signed with another key is refused.
	wantError(t, n.get(q("users/alice"), bearerH(token(t, "alice", nil, nil))...), http.StatusUnauthorized, "token_signature_invalid")
}

func TestDemoTokenRefusesBadUsers(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Demo: true, Inbox: openInbox(t)}})
	for _, body := range []string{`{"user":""}`, `{"user":"Alice"}`, `{"user":"a b"}`, `{"user":"` + strings.Repeat("a", 33) + `"}`, `{"user":"é"}`, `{"user":"a/b"}`, `{}`} {
		code, raw := n.call("POST", "/v1/demo/token", "", body)
		var e errorBody
		_ = json.Unmarshal(raw, &e)
		if code != http.StatusBadRequest || e.Error.Code != "invalid_user" {
			t.Errorf("%s: %d %s, want 400 invalid_user", body, code, raw)
		}
	}
	for _, body := range []string{`nope`, `{"user":"a","admin":true}`, `{"user":"a"} {}`} {
		if code, raw := n.call("POST", "/v1/demo/token", "", body); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", body, code, raw)
		}
	}
	n.demoToken(strings.Repeat("a", 32))
	n.demoToken("a_b-9")
	// The endpoint answers POST only, in JSON.
	resp := n.get("/v1/demo/token")
	if resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: Allow %q", resp.Header.Get("Allow"))
	}
	wantError(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
}

// Tokens are minted at a bounded rate per client address.
func TestDemoTokenRate(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Demo: true, Inbox: openInbox(t), now: func() time.Time { return time.Unix(1e9, 0) }}})
	for range demoTokenBurst {
		n.demoToken("alice")
	}
	code, raw := n.call("POST", "/v1/demo/token", "", `{"user":"alice"}`)
	if code != http.StatusTooManyRequests || !strings.Contains(string(raw), "too_many_demo_tokens") {
		t.Fatalf("after the burst: %d %s", code, raw)
	}
	if n.metric(limitSample("demo_tokens_per_ip")) != 1 {
		t.Fatal("the refusal is not counted")
	}
}

// With the demo, / is the demo's index and /demo/ its assets; the admin page
// is unchanged.
func TestDemoPage(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Demo: true}})
	wantBuiltPage(t, n, "/", "/demo/", webui.Demo())
	wantError(t, n.get("/demo/no-such-asset.js"), http.StatusNotFound, "not_found")
	wantPage(t, n.get("/admin"), "text/html; charset=utf-8")

	m := newTestNode(t, nodeOptions{server: Config{Demo: true, demoFS: fstest.MapFS{
		"index.html": {Data: []byte("<!doctype html>")},
		"app.js":     {Data: []byte("1")},
	}}})
	wantPage(t, m.get("/demo/app.js"), "text/javascript; charset=utf-8")
	wantNotModified(t, m, "/demo/app.js")
}

// A server with JWT keys never runs the demo: a production key must not sign
// demo tokens, and demo tokens must not open production topics.
func TestDemoIsRefusedWithJWTKeys(t *testing.T) {
	var logs syncBuffer
	n := newTestNode(t, nodeOptions{server: Config{Demo: true, Tokens: verifier(t, auth.Options{}), Logger: slog.New(slog.NewTextHandler(&logs, nil))}})
	if code, _ := n.call("POST", "/v1/demo/token", "", `{"user":"alice"}`); code != http.StatusNotFound {
		t.Fatalf("demo token with JWT keys: %d, want 404", code)
	}
	if body := wantPage(t, n.get("/"), "text/html; charset=utf-8"); !strings.Contains(body, "Herald is running") {
		t.Fatal("/ is not the landing page")
	}
	if !strings.Contains(logs.String(), "demo is refused") {
		t.Fatalf("no error logged:\n%s", logs.String())
	}
	// The configured tokens still work.
	resp := n.get(q("users/alice"), bearerH(token(t, "alice", nil, nil))...)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a configured token: %d", resp.StatusCode)
	}
}
