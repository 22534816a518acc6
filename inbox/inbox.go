// Package inbox keeps users' notifications: the list of what they were sent,
// read or not, that a live stream alone cannot give (what arrived while no
// tab was open, an unread badge, "mark as read" on every device).
//
// The inbox is mutable per-user state, unlike an engine's append-only log,
// so it has a store of its own, on SQL: SQLite (pure Go, the embedded
// default), MySQL/MariaDB or PostgreSQL, chosen by DSN (Open). Every store
// passes the suite in inbox/inboxtest.
package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Notification is one notification of one user.
type Notification struct {
	ID      int64
	User    string
	Type    string
	Title   string
	Body    string
	Data    json.RawMessage // a JSON value, nil when none
	Created time.Time       // ms precision
	Read    time.Time       // zero while unread
	// Pushed tells that the notification was appended to the user's stream
	// topic (users/{id}); until then the pusher retries it.
	Pushed bool
}

// Send is a request to notify users.
type Send struct {
	To    []string
	Type  string
	Title string
	Body  string
	Data  json.RawMessage
	// DedupeKey, when set, makes a repeated Send with the same key return
	// the notifications of the first, storing nothing.
	DedupeKey string
}

// Sent is the outcome of one Send of a SendAll.
type Sent struct {
	Notifications []Notification
	Duplicate     bool // stored by an earlier Send with the same DedupeKey
}

// Query selects a page of a user's notifications, newest first.
type Query struct {
	Unread bool  // only those not read yet
	Limit  int   // at most this many (at least 1)
	Before int64 // only ids below this one (0: from the newest)
}

// Page is a page of notifications, newest first.
type Page struct {
	Items []Notification
	// More tells that older notifications match the query: ask again with
	// Before set to the last item's ID.
	More bool
	// Unread counts all the user's unread notifications.
	Unread int64
}

// Store keeps notifications. Its methods are safe for concurrent use.
type Store interface {
	// Send stores one notification per recipient, in the order of s.To, and
	// returns them. With a DedupeKey already used, it stores nothing and
	// returns the first Send's notifications and dup true.
	Send(ctx context.Context, s Send) (ns []Notification, dup bool, err error)
	// SendAll stores several Sends in one transaction: all or none.
	SendAll(ctx context.Context, ss []Send) ([]Sent, error)
	// List returns a page of user's notifications.
	List(ctx context.Context, user string, q Query) (Page, error)
	// MarkRead marks one of user's notifications read; false when user has
	// no notification id (a notification already read is true).
	MarkRead(ctx context.Context, user string, id int64) (bool, error)
	// MarkAllRead marks every unread notification of user read and returns
	// how many it marked.
	MarkAllRead(ctx context.Context, user string) (int64, error)
	// Delete removes one of user's notifications; false when user has none
	// with id.
	Delete(ctx context.Context, user string, id int64) (bool, error)
	// Unpushed returns up to limit notifications not pushed yet, oldest first.
	Unpushed(ctx context.Context, limit int) ([]Notification, error)
	// MarkPushed records that the notifications were pushed.
	MarkPushed(ctx context.Context, ids []int64) error
	// Trim deletes, in batches of at most batch rows, notifications older
	// than maxAge (0: none by age) and those of a user beyond their newest
	// maxPerUser (0: none by count); it returns how many it deleted.
	Trim(ctx context.Context, maxAge time.Duration, maxPerUser, batch int) (int64, error)
	// Close releases the store.
	Close() error
}

// Limits of a notification, checked by Check.
const (
	MaxRecipients = 1000
	MaxUserLen    = 255
	MaxTypeLen    = 255
	MaxTitleLen   = 1024
	MaxBodyLen    = 16 << 10
	MaxDataLen    = 64 << 10
	MaxDedupeLen  = 255
)

// ErrInvalid wraps a Send that breaks a limit.
var ErrInvalid = errors.New("inbox: invalid notification")

// ErrUnavailable wraps a store's failure.
var ErrUnavailable = errors.New("inbox: unavailable")
