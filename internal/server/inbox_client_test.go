package server

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/sse"
)

// The Go client's Inbox against the real API.
func TestGoClientInbox(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), Inbox: openInbox(t)}})
	for range 3 {
		n.send(testKey, `{"to":["42"],"type":"x","title":"t","data":{"k":1}}`)
	}
	in := &client.Inbox{URL: n.srv.URL, Token: token(t, "42", nil, nil)}
	ctx := context.Background()
	p, err := in.List(ctx, client.ListOptions{Limit: 2})
	if err != nil || len(p.Notifications) != 2 || p.UnreadCount != 3 || p.Next == "" || string(p.Notifications[0].Data) != `{"k":1}` {
		t.Fatalf("List: %+v %v", p, err)
	}
	last, err := in.List(ctx, client.ListOptions{Limit: 2, Before: p.Next})
	if err != nil || len(last.Notifications) != 1 || last.Next != "" {
		t.Fatalf("second page: %+v %v", last, err)
	}
	if err := in.MarkRead(ctx, p.Notifications[0].ID); err != nil {
		t.Fatal(err)
	}
	if n, err := in.MarkAllRead(ctx); n != 2 || err != nil {
		t.Fatalf("MarkAllRead: %d %v", n, err)
	}
	if err := in.Delete(ctx, p.Notifications[0].ID); err != nil {
		t.Fatal(err)
	}
	var he *client.HTTPError
	if err := in.Delete(ctx, p.Notifications[0].ID); !errors.As(err, &he) || he.Status != http.StatusNotFound || he.Code != "notification_not_found" {
		t.Fatalf("deleting again: %v", err)
	}
	if p, _ := in.List(ctx, client.ListOptions{Unread: true}); len(p.Notifications) != 0 || p.UnreadCount != 0 {
		t.Fatalf("unread after read-all: %+v", p)
	}
}

func TestInboxStale(t *testing.T) {
	for _, c := range []struct {
		ev   sse.Event
		want bool
	}{
		{sse.Event{Type: "herald.gap", Data: `{"topics":["users/42","rooms/1"]}`}, true},
		{sse.Event{Type: "herald.gap", Data: `{"topics":["rooms/1"]}`}, false},
		{sse.Event{Type: "herald.gap", Data: `not json`}, true},
		{sse.Event{Type: "notification", Data: `{}`}, false},
	} {
		if got := client.InboxStale(c.ev, "42"); got != c.want {
			t.Errorf("InboxStale(%+v) = %v", c.ev, got)
		}
	}
}
