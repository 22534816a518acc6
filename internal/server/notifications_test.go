package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine/redis"
	"github.com/herald-hub/herald/inbox"
	"github.com/herald-hub/herald/internal/redistest"
	"github.com/herald-hub/herald/internal/testenv"
)

func openInbox(t *testing.T) inbox.Store {
	t.Helper()
	st, err := inbox.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// call makes a request with cred and a body, and returns the status and
// the body read.
func (n *testNode) call(method, path, cred, body string) (int, []byte) {
	n.t.Helper()
	req, _ := http.NewRequest(method, n.srv.URL+path, strings.NewReader(body))
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (n *testNode) send(cred, body string) sentAnswer {
	n.t.Helper()
	code, raw := n.call("POST", "/v1/notifications", cred, body)
	if code != http.StatusCreated {
		n.t.Fatalf("send %s: %d %s", body, code, raw)
	}
	var a sentAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		n.t.Fatal(err)
	}
	return a
}

func (n *testNode) list(cred, query string) listAnswer {
	n.t.Helper()
	code, raw := n.call("GET", "/v1/notifications"+query, cred, "")
	if code != http.StatusOK {
		n.t.Fatalf("list: %d %s", code, raw)
	}
	var a listAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		n.t.Fatal(err)
	}
	return a
}

func TestInboxSendListReadDelete(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), Inbox: openInbox(t)}})
	alice := token(t, "alice", nil, nil)
	tab1 := n.dialAs(alice, "users/alice")
	tab2 := n.dialAs(alice, "users/alice")
	for _, s := range []*client.Stream{tab1, tab2} {
		eventually(t, "tab connected", func() bool { return s.LastEventID() != "" })
	}

	sent := n.send(testKey, `{"to":["alice","bob"],"type":"order.shipped","title":"Shipped","body":"On its way","data":{"order":7}}`)
	if len(sent.Notifications) != 2 || sent.Notifications[0].To != "alice" || sent.Duplicate {
		t.Fatalf("sent %+v", sent)
	}
	id := sent.Notifications[0].ID
	ev := testenv.NextOfType(t, tab1, "notification")
	var pushed inbox.JSON
	if err := json.Unmarshal([]byte(ev.Data), &pushed); err != nil || pushed.ID != id || pushed.Title != "Shipped" || string(pushed.Data) != `{"order":7}` || pushed.Read != nil {
		t.Fatalf("pushed %s (%v)", ev.Data, err)
	}

	l := n.list(alice, "")
	if len(l.Notifications) != 1 || l.UnreadCount != 1 || l.Next != nil || l.Notifications[0].ID != id {
		t.Fatalf("list %+v", l)
	}
	// Marking read on one tab pushes to every tab.
	if code, raw := n.call("POST", "/v1/notifications/"+id+"/read", alice, ""); code != http.StatusOK {
		t.Fatalf("read: %d %s", code, raw)
	}
	for _, s := range []*client.Stream{tab1, tab2} {
		ev := testenv.NextOfType(t, s, "notification.read")
		if ev.Data != `{"ids":["`+id+`"]}` {
			t.Fatalf("notification.read %s", ev.Data)
		}
	}
	if l := n.list(alice, "?unread=true"); len(l.Notifications) != 0 || l.UnreadCount != 0 {
		t.Fatalf("unread after read %+v", l)
	}
	n.send(testKey, `{"to":["alice"],"type":"x"}`)
	if code, raw := n.call("POST", "/v1/notifications/read-all", alice, ""); code != http.StatusOK || strings.TrimSpace(string(raw)) != `{"marked":1}` {
		t.Fatalf("read-all: %d %s", code, raw)
	}
	if ev := testenv.NextOfType(t, tab2, "notification.read"); ev.Data != `{"all":true}` {
		t.Fatalf("read-all pushed %s", ev.Data)
	}
	if code, raw := n.call("DELETE", "/v1/notifications/"+id, alice, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, raw)
	}
	if ev := testenv.NextOfType(t, tab1, "notification.deleted"); ev.Data != `{"id":"`+id+`"}` {
		t.Fatalf("deleted pushed %s", ev.Data)
	}
	if code, _ := n.call("DELETE", "/v1/notifications/"+id, alice, ""); code != http.StatusNotFound {
		t.Fatalf("delete again: %d, want 404", code)
	}
}

func TestInboxPages(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), Inbox: openInbox(t)}})
	for i := range 5 {
		n.send(testKey, fmt.Sprintf(`{"to":["u"],"type":"x","title":"%d"}`, i))
	}
	u := token(t, "u", nil, nil)
	var titles []string
	q := "?limit=2"
	for {
		l := n.list(u, q)
		for _, x := range l.Notifications {
			titles = append(titles, x.Title)
		}
		if l.Next == nil {
			break
		}
		q = "?limit=2&before=" + *l.Next
	}
	if strings.Join(titles, ",") != "4,3,2,1,0" {
		t.Fatalf("pages gave %v", titles)
	}
}

func TestInboxDedupe(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Inbox: openInbox(t)}})
	body := `{"to":["a"],"type":"x","dedupe_key":"order-7"}`
	first, again := n.send(testKey, body), n.send(testKey, body)
	if first.Notifications[0].ID != again.Notifications[0].ID || !again.Duplicate || first.Duplicate {
		t.Fatalf("first %+v, again %+v", first, again)
	}
}

// The inbox is the token subject's own: nobody reads, marks or deletes
// another user's notifications, and bad input is refused with a reason.
func TestInboxAccessAndBadInput(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), Inbox: openInbox(t)}})
	id := n.send(testKey, `{"to":["alice"],"type":"x"}`).Notifications[0].ID
	alice, bob := token(t, "alice", nil, nil), token(t, "bob", nil, nil)
	sender := token(t, "svc", &auth.Grants{Publish: []string{"users/*"}}, nil)
	roomsOnly := token(t, "svc2", &auth.Grants{Publish: []string{"rooms/*"}}, nil)
	huge := `{"to":["a"],"type":"x","data":"` + strings.Repeat("x", maxSendBody) + `"}`
	for _, c := range []struct {
		method, path, cred, body string
		status                   int
		code                     string
	}{
		{"GET", "/v1/notifications", "", "", 401, "missing_credentials"},
		{"GET", "/v1/notifications", testKey, "", 403, "no_inbox"},
		{"POST", "/v1/notifications/" + id + "/read", bob, "", 404, "notification_not_found"},
		{"DELETE", "/v1/notifications/" + id, bob, "", 404, "notification_not_found"},
		{"POST", "/v1/notifications/abc/read", alice, "", 404, "notification_not_found"},
		{"POST", "/v1/notifications/-1/read", alice, "", 404, "notification_not_found"},
		{"POST", "/v1/notifications/007/read", alice, "", 404, "notification_not_found"},
		{"GET", "/v1/notifications?before=xyz", alice, "", 400, "invalid_cursor"},
		{"GET", "/v1/notifications?limit=0", alice, "", 400, "invalid_limit"},
		{"GET", "/v1/notifications?limit=201", alice, "", 400, "invalid_limit"},
		{"GET", "/v1/notifications?unread=maybe", alice, "", 400, "invalid_unread"},
		{"POST", "/v1/notifications", "", `{"to":["a"],"type":"x"}`, 401, "missing_credentials"},
		{"POST", "/v1/notifications", alice, `{"to":["bob"],"type":"x"}`, 403, "forbidden_topic"},
		{"POST", "/v1/notifications", roomsOnly, `{"to":["bob"],"type":"x"}`, 403, "forbidden_topic"},
		{"POST", "/v1/notifications", testKey, `{"to":[],"type":"x"}`, 400, "invalid_notification"},
		{"POST", "/v1/notifications", testKey, `{"to":["a"]}`, 400, "invalid_notification"},
		{"POST", "/v1/notifications", testKey, `{"to":["a b"],"type":"x"}`, 400, "invalid_recipient"},
		{"POST", "/v1/notifications", testKey, `{"to":["a"],"type":"x","extra":1}`, 400, "invalid_json"},
		{"POST", "/v1/notifications", testKey, `{"to":["a"],"type":"x"} {}`, 400, "invalid_json"},
		{"POST", "/v1/notifications", testKey, `[`, 400, "invalid_json"},
		{"POST", "/v1/notifications", testKey, huge, 413, "body_too_large"},
		{"PUT", "/v1/notifications", testKey, `{}`, 405, "method_not_allowed"},
	} {
		code, raw := n.call(c.method, c.path, c.cred, c.body)
		var e errorBody
		_ = json.Unmarshal(raw, &e)
		if code != c.status || e.Error.Code != c.code {
			t.Errorf("%s %s: %d %.200s, want %d %s", c.method, c.path, code, raw, c.status, c.code)
		}
	}
	// A token allowed to publish users/* sends.
	n.send(sender, `{"to":["bob"],"type":"x"}`)
	if l := n.list(alice, ""); len(l.Notifications) != 1 || l.UnreadCount != 1 {
		t.Fatalf("alice's inbox after the refusals: %+v", l)
	}
}

// A send is answered 201 once stored, while the engine is down; the
// notification reaches the stream once the engine is back, and only once.
func TestInboxSendWhileTheEngineIsDown(t *testing.T) {
	r := redistest.Start(t)
	n := redisNode(t, r.URL(), redis.Options{}, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), Inbox: openInbox(t), InboxPoll: 100 * time.Millisecond}})
	alice := token(t, "alice", nil, nil)
	s := n.dialAs(alice, "users/alice")
	eventually(t, "connected", func() bool { return s.LastEventID() != "" })

	r.Stop()
	start := time.Now()
	sent := n.send(testKey, `{"to":["alice"],"type":"x","title":"while down"}`)
	t.Logf("201 after %v with Redis down", time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	r.Run()
	ev := testenv.NextOfType(t, s, "notification")
	var got inbox.JSON
	if err := json.Unmarshal([]byte(ev.Data), &got); err != nil || got.ID != sent.Notifications[0].ID {
		t.Fatalf("pushed %s", ev.Data)
	}
	// Nothing twice: another notification comes next, not this one again.
	n.send(testKey, `{"to":["alice"],"type":"x","title":"after"}`)
	ev = testenv.NextOfType(t, s, "notification")
	if err := json.Unmarshal([]byte(ev.Data), &got); err != nil || got.Title != "after" {
		t.Fatalf("next pushed %s, want the one sent after", ev.Data)
	}
}

// Whatever the body, a send is stored (201) or refused with a 4xx and a
// code, never a 5xx, and a refused one stores nothing.
func FuzzSendBody(f *testing.F) {
	for _, seed := range []string{
		`{"to":["a"],"type":"x"}`,
		`{"to":["a","b"],"type":"x","title":"t","body":"b","data":{"k":[1,2]},"dedupe_key":"d"}`,
		`{"to":["a"],"type":"x","data":null}`,
		`{"to":"a","type":"x"}`,
		`{"to":[1],"type":"x"}`,
		`{"to":["a\u0000"],"type":"x"}`,
		`{"to":["a"],"type":"\xff"}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add(seed)
	}
	st, err := inbox.Open(context.Background(), "", f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	f.Fuzz(func(t *testing.T, body string) {
		n := newTestNode(t, nodeOptions{server: Config{Inbox: st}})
		code, raw := n.call("POST", "/v1/notifications", testKey, body)
		var e errorBody
		_ = json.Unmarshal(raw, &e)
		switch {
		case code == http.StatusCreated:
		case code >= 400 && code < 500 && e.Error.Code != "":
		default:
			t.Fatalf("%q: %d %s", body, code, raw)
		}
	})
}
