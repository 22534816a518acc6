package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/inbox"
)

// The inbox API: POST /v1/notifications sends; the rest is the caller's own
// inbox, by the token's subject. Every change is also pushed to users/{id}
// (notification, notification.read, notification.deleted), so that every
// open tab and device follows.

const (
	defaultListLimit = 50
	maxListLimit     = 200
	// maxSendBody bounds a send's body: the largest notification, with room.
	maxSendBody = inbox.MaxDataLen + inbox.MaxBodyLen + inbox.MaxTitleLen + 64<<10
)

type sendInput struct {
	To        []string        `json:"to"`
	Type      string          `json:"type"`
	Title     string          `json:"title"`
	Body      string          `json:"body"`
	Data      json.RawMessage `json:"data"`
	DedupeKey string          `json:"dedupe_key"`
}

type sentAnswer struct {
	Notifications []sentNotification `json:"notifications"`
	Duplicate     bool               `json:"duplicate"`
}

type sentNotification struct {
	ID string `json:"id"`
	To string `json:"to"`
}

type listAnswer struct {
	Notifications []inbox.JSON `json:"notifications"`
	UnreadCount   int64        `json:"unread_count"`
	// Next is the before= of the next page, null on the last.
	Next *string `json:"next"`
}

// inboxOff answers when no inbox is configured.
func (s *Server) inboxOff(w http.ResponseWriter) bool {
	if s.cfg.Inbox != nil {
		return false
	}
	s.refuse(w, &apiError{http.StatusNotFound, "inbox_disabled", "this Herald runs without an inbox (-inbox-dsn off)"})
	return true
}

// handleSend serves POST /v1/notifications.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	if s.inboxOff(w) {
		return
	}
	p, ok := s.publisher(w, r)
	if !ok {
		return
	}
	var in sendInput
	if !s.decodeJSONBody(w, r, maxSendBody, &in, `{"to":["42"],"type":"...","title":"...","body":"...","data":{...},"dedupe_key":"..."}`) {
		return
	}
	if bytes.Equal(bytes.TrimSpace(in.Data), []byte("null")) {
		in.Data = nil
	}
	for _, u := range in.To {
		topic := inbox.Topic(u)
		if err := engine.ValidateTopic(topic); err != nil {
			s.refuse(w, badRequest("invalid_recipient", "recipient %q: its topic %s is not valid: %v", u, topic, err))
			return
		}
		if !p.CanPublish(topic) {
			s.refuse(w, forbidden("send notifications to", topic))
			return
		}
	}
	ns, dup, err := s.cfg.Inbox.Send(r.Context(), inbox.Send{To: in.To, Type: in.Type, Title: in.Title, Body: in.Body, Data: in.Data, DedupeKey: in.DedupeKey})
	switch {
	case errors.Is(err, inbox.ErrInvalid):
		s.refuse(w, badRequest("invalid_notification", "%v", err))
		return
	case err != nil:
		s.inboxFailed(w, r, err)
		return
	}
	s.pusher.Wake()
	s.publishes.Add(1)
	a := sentAnswer{Notifications: make([]sentNotification, len(ns)), Duplicate: dup}
	for i, n := range ns {
		a.Notifications[i] = sentNotification{ID: strconv.FormatInt(n.ID, 10), To: n.User}
	}
	writeJSON(w, http.StatusCreated, a)
}

func (s *Server) inboxFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	s.log.Warn("inbox store failed", "err", err)
	w.Header().Set("Retry-After", "1")
	s.refuse(w, &apiError{http.StatusServiceUnavailable, "inbox_unavailable", "the inbox store does not answer"})
}

// inboxOwner authenticates a request on the caller's own inbox: a token's
// subject. Publish keys and anonymous callers have no inbox.
func (s *Server) inboxOwner(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.inboxOff(w) {
		return "", false
	}
	cred, aerr := s.streamCredential(r)
	if aerr != nil {
		s.refuse(w, aerr)
		return "", false
	}
	p, aerr := s.authenticate(r, cred)
	if aerr != nil {
		s.refuse(w, aerr)
		return "", false
	}
	switch p.Kind {
	case auth.User:
		return p.Name, true
	case auth.Anonymous:
		s.refuse(w, unauthorized("missing_credentials", "the inbox is the token subject's own: send a token"))
	default:
		s.refuse(w, &apiError{http.StatusForbidden, "no_inbox", "a publish key has no inbox: read a user's inbox with that user's token"})
	}
	return "", false
}

// handleList serves GET /v1/notifications?unread=true&limit=50&before=ID.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	user, ok := s.inboxOwner(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	query := inbox.Query{Limit: defaultListLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			s.refuse(w, badRequest("invalid_limit", "limit=%q: want 1 to %d", v, maxListLimit))
			return
		}
		query.Limit = n
	}
	if v := q.Get("unread"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.refuse(w, badRequest("invalid_unread", "unread=%q: want true or false", v))
			return
		}
		query.Unread = b
	}
	if v := q.Get("before"); v != "" {
		id, err := parseID(v)
		if err != nil {
			s.refuse(w, badRequest("invalid_cursor", "before=%q: want the next value of an earlier page", v))
			return
		}
		query.Before = id
	}
	page, err := s.cfg.Inbox.List(r.Context(), user, query)
	if err != nil {
		s.inboxFailed(w, r, err)
		return
	}
	a := listAnswer{Notifications: make([]inbox.JSON, len(page.Items)), UnreadCount: page.Unread}
	for i, n := range page.Items {
		a.Notifications[i] = n.JSON()
	}
	if page.More {
		next := strconv.FormatInt(page.Items[len(page.Items)-1].ID, 10)
		a.Next = &next
	}
	writeJSON(w, http.StatusOK, a)
}

func parseID(v string) (int64, error) {
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 || strconv.FormatInt(id, 10) != v {
		return 0, errors.New("not a notification id")
	}
	return id, nil
}

// pathID reads {id}, answering 404 for what is no notification id.
func (s *Server) pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := parseID(r.PathValue("id"))
	if err != nil {
		s.refuse(w, &apiError{http.StatusNotFound, "notification_not_found", fmt.Sprintf("no notification %q", r.PathValue("id"))})
		return 0, false
	}
	return id, true
}

// handleMarkRead serves POST /v1/notifications/{id}/read.
func (s *Server) handleMarkRead(w http.ResponseWriter, r *http.Request) {
	s.changeOne(w, r, s.cfg.Inbox.MarkRead, func(w http.ResponseWriter, user, id string) {
		s.announceChange(user, "notification.read", map[string]any{"ids": []string{id}})
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "read": true})
	})
}

// changeOne applies change to the caller's notification {id}, then done;
// 404 when the caller has no such notification.
func (s *Server) changeOne(w http.ResponseWriter, r *http.Request, change func(ctx context.Context, user string, id int64) (bool, error), done func(w http.ResponseWriter, user, id string)) {
	user, ok := s.inboxOwner(w, r)
	if !ok {
		return
	}
	id, ok := s.pathID(w, r)
	if !ok {
		return
	}
	found, err := change(r.Context(), user, id)
	if err != nil {
		s.inboxFailed(w, r, err)
		return
	}
	if !found {
		s.refuse(w, &apiError{http.StatusNotFound, "notification_not_found", fmt.Sprintf("you have no notification %d", id)})
		return
	}
	done(w, user, strconv.FormatInt(id, 10))
}

// handleReadAll serves POST /v1/notifications/read-all.
func (s *Server) handleReadAll(w http.ResponseWriter, r *http.Request) {
	user, ok := s.inboxOwner(w, r)
	if !ok {
		return
	}
	n, err := s.cfg.Inbox.MarkAllRead(r.Context(), user)
	if err != nil {
		s.inboxFailed(w, r, err)
		return
	}
	if n > 0 {
		s.announceChange(user, "notification.read", map[string]any{"all": true})
	}
	writeJSON(w, http.StatusOK, map[string]any{"marked": n})
}

// handleDelete serves DELETE /v1/notifications/{id}.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	s.changeOne(w, r, s.cfg.Inbox.Delete, func(w http.ResponseWriter, user, id string) {
		s.announceChange(user, "notification.deleted", map[string]any{"id": id})
		w.WriteHeader(http.StatusNoContent)
	})
}

// announceChange pushes a change of user's inbox to their topic. It is best
// effort: the inbox holds the state, and a stream that missed the change
// refetches it (after herald.gap, or on reconnect).
func (s *Server) announceChange(user, typ string, v any) {
	data, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.eng.Append(ctx, []engine.Event{{Topic: inbox.Topic(user), Type: typ, Data: data}}); err != nil {
		s.metrics.inboxChangesDropped.Inc()
		if held, ok := s.warnings.Allow("inbox change"); ok {
			s.log.Warn("inbox change not pushed", "type", typ, "err", err, "repeats_held", held)
		}
	}
}
