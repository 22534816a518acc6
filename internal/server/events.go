package server

import (
	"errors"
	"net/http"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
)

// handleEvents serves GET /v1/events?topic=a&topic=b as an SSE stream, resuming
// after the cursor in Last-Event-ID (or lastEventID / lastEventId, which
// event-source-polyfill sends as query parameters).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	cred, aerr := s.streamCredential(r) // first: it strips ?access_token= from r
	if aerr != nil {
		s.refuse(w, aerr)
		return
	}
	p, aerr := s.authenticate(r, cred)
	if aerr != nil {
		s.refuse(w, aerr)
		return
	}
	q := r.URL.Query()
	topics, aerr := s.parseTopics(q["topic"])
	if aerr != nil {
		s.refuse(w, aerr)
		return
	}
	// Every topic is authorized before anything is read: the hub replays and
	// streams only the topics of the subscription, so a topic refused here can
	// reach the stream neither live nor through a cursor.
	for _, t := range topics {
		if canSubscribe(p, t) {
			continue
		}
		if p.Kind == auth.Anonymous {
			// 401, not 403: a credential could grant it (RFC 9110 15.5.2).
			s.refuse(w, unauthorized("missing_credentials", "subscribing to topic "+t+" needs a credential that grants it: send a token (Authorization: Bearer, the token cookie, or ?access_token=)"))
			return
		}
		s.refuse(w, forbidden("subscribe to", t))
		return
	}
	release, aerr := s.acquireStream(r, p)
	if aerr != nil {
		w.Header().Set("Retry-After", "1")
		s.refuse(w, aerr)
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			release()
		}
	}()
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = q.Get("lastEventID")
	}
	if last == "" {
		last = q.Get("lastEventId")
	}
	sub, err := s.hub.Subscribe(r.Context(), topics, last)
	var collision *hub.CollisionError
	switch {
	case errors.As(err, &collision):
		s.refuse(w, badRequest("topics_collide", "%v", err))
		return
	case errors.Is(err, hub.ErrClosing):
		w.Header().Set("Retry-After", "1")
		s.refuse(w, &apiError{http.StatusServiceUnavailable, "shutting_down", "this node is shutting down; reconnect to another"})
		return
	case err != nil:
		s.log.Warn("subscribe failed", "topics", topics, "err", err)
		w.Header().Set("Retry-After", "1")
		s.refuse(w, &apiError{http.StatusServiceUnavailable, "engine_unavailable", "cannot read topic positions: engine unavailable"})
		return
	}
	leave := s.joinPresence(p, topics)
	stream := release
	release = func() { leave(); stream() }
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	h.Set("X-Content-Type-Options", "nosniff")
	// From here the stream owns its connection slots: it may outlive this
	// handler (see serveStream).
	handedOff = true
	err = s.serveStream(w, r, sub, streamScope{expires: p.Expires, release: release})
	if err != nil && !errors.Is(err, hub.ErrSlow) && r.Context().Err() == nil {
		s.log.Debug("stream ended", "err", err)
	}
}

// parseTopics validates the requested topics, drops repeats and enforces the
// per-stream limit.
func (s *Server) parseTopics(raw []string) ([]string, *apiError) {
	if len(raw) == 0 {
		return nil, badRequest("invalid_topic", "at least one topic parameter is required, e.g. ?topic=rooms/7")
	}
	if len(raw) > s.cfg.MaxTopics {
		return nil, badRequest("too_many_topics", "%d topics requested, at most %d per stream", len(raw), s.cfg.MaxTopics)
	}
	topics := make([]string, 0, len(raw))
	seen := make(map[string]bool, len(raw))
	for _, t := range raw {
		if err := engine.ValidateTopic(t); err != nil {
			return nil, badRequest("invalid_topic", "%v", err)
		}
		if !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	return topics, nil
}
