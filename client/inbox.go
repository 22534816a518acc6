package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Inbox reads and changes one user's notifications (GET /v1/notifications
// and friends) with that user's token.
type Inbox struct {
	// URL is Herald's base URL, e.g. https://herald.example.
	URL string
	// Token is the user's token; the inbox is its subject's.
	Token string
	// HTTPClient makes the requests [http.DefaultClient].
	HTTPClient *http.Client
}

// Notification is one notification as the inbox lists it, and as the
// stream's notification event carries it.
type Notification struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Title   string          `json:"title"`
	Body    string          `json:"body"`
	Data    json.RawMessage `json:"data,omitempty"`
	Created time.Time       `json:"created_at"`
	Read    *time.Time      `json:"read_at"` // nil while unread
}

// ListOptions select a page: Unread only, at most Limit (1 to 200; 0 is
// the server's 50), older than Before (the Next of an earlier page).
type ListOptions struct {
	Unread bool
	Limit  int
	Before string
}

// Page is a page of notifications, newest first.
type Page struct {
	Notifications []Notification `json:"notifications"`
	UnreadCount   int64          `json:"unread_count"`
	// Next is the Before of the next page; empty on the last.
	Next string `json:"-"`
}

// List returns a page of the inbox.
func (in *Inbox) List(ctx context.Context, o ListOptions) (*Page, error) {
	q := url.Values{}
	if o.Unread {
		q.Set("unread", "true")
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Before != "" {
		q.Set("before", o.Before)
	}
	var raw struct {
		Page
		Next *string `json:"next"`
	}
	if err := in.do(ctx, "GET", "/v1/notifications?"+q.Encode(), &raw); err != nil {
		return nil, err
	}
	p := raw.Page
	if raw.Next != nil {
		p.Next = *raw.Next
	}
	return &p, nil
}

// MarkRead marks one notification read.
func (in *Inbox) MarkRead(ctx context.Context, id string) error {
	return in.do(ctx, "POST", "/v1/notifications/"+url.PathEscape(id)+"/read", nil)
}

// MarkAllRead marks every notification read and returns how many were not.
func (in *Inbox) MarkAllRead(ctx context.Context) (int64, error) {
	var a struct{ Marked int64 }
	err := in.do(ctx, "POST", "/v1/notifications/read-all", &a)
	return a.Marked, err
}

// Delete removes one notification.
func (in *Inbox) Delete(ctx context.Context, id string) error {
	return in.do(ctx, "DELETE", "/v1/notifications/"+url.PathEscape(id), nil)
}

func (in *Inbox) do(ctx context.Context, method, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(in.URL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+in.Token)
	hc := in.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readHTTPError(resp)
	}
	if into == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(into); err != nil {
		return fmt.Errorf("client: inbox answer: %w", err)
	}
	return nil
}

// Event types of a user's topic that change their inbox.
const (
	EventNotification = "notification"         // data: a Notification
	EventRead         = "notification.read"    // data: {"ids":[...]} or {"all":true}
	EventDeleted      = "notification.deleted" // data: {"id":"..."}
	EventGap          = "herald.gap"           // data: {"topics":[...]}
)

// InboxStale reports whether ev means a copy of user's inbox may be
// stale and should be fetched again with List: a herald.gap that names the
// user's topic, users/{user} (events of it may be missing). The stream
// resumes by itself after a reconnect, so nothing else calls for it.
func InboxStale(ev Event, user string) bool {
	if ev.Type != EventGap {
		return false
	}
	var g struct{ Topics []string }
	if json.Unmarshal([]byte(ev.Data), &g) != nil {
		return true // an unreadable gap: safer to refetch
	}
	return slices.Contains(g.Topics, "users/"+user)
}
