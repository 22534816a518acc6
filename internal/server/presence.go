package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/presence"
)

// Presence answers: GET /v1/presence/users/{id} and GET /v1/presence?topic=.
// Both are readable by whoever may subscribe to the topic they describe
// (users/{id} for a user), so presence tells nobody more than a stream would.

const (
	defaultPresenceLimit = 1000
	maxPresenceLimit     = 10_000
)

type userPresenceAnswer struct {
	User    string               `json:"user"`
	Online  bool                 `json:"online"`
	Streams int                  `json:"streams"`
	Nodes   []nodePresenceAnswer `json:"nodes"`
}

type nodePresenceAnswer struct {
	Node    string `json:"node"`
	Streams int    `json:"streams"`
}

type topicPresenceAnswer struct {
	Topic     string              `json:"topic"`
	Users     []userStreamsAnswer `json:"users"`
	UserCount int                 `json:"user_count"`
	Streams   int                 `json:"streams"`
	Truncated bool                `json:"truncated"`
}

type userStreamsAnswer struct {
	User    string `json:"user"`
	Streams int    `json:"streams"`
}

// canSubscribe is p.CanSubscribe, with presence/X readable by whoever may
// read X.
func canSubscribe(p *auth.Principal, topic string) bool {
	if presence.IsEventTopic(topic) {
		topic = topic[len(presence.EventPrefix):]
	}
	return p.CanSubscribe(topic)
}

// presenceReader authenticates a presence query for topic.
func (s *Server) presenceReader(w http.ResponseWriter, r *http.Request, topic string) bool {
	if err := engine.ValidateTopic(topic); err != nil {
		s.refuse(w, badRequest("invalid_topic", "%v", err))
		return false
	}
	cred, aerr := s.streamCredential(r)
	if aerr != nil {
		s.refuse(w, aerr)
		return false
	}
	p, aerr := s.authenticate(r, cred)
	if aerr != nil {
		s.refuse(w, aerr)
		return false
	}
	if canSubscribe(p, topic) {
		return true
	}
	if p.Kind == auth.Anonymous {
		s.refuse(w, unauthorized("missing_credentials", "the presence of "+topic+" is readable with a credential that may subscribe to it"))
		return false
	}
	s.refuse(w, forbidden("read the presence of", topic))
	return false
}

// presenceFailed answers a query the registry could not.
func (s *Server) presenceFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, presence.ErrClosed) {
		w.Header().Set("Retry-After", "1")
		s.refuse(w, &apiError{http.StatusServiceUnavailable, "shutting_down", "this node is shutting down; ask another"})
		return
	}
	s.log.Warn("presence query failed", "err", err)
	w.Header().Set("Retry-After", "1")
	s.refuse(w, &apiError{http.StatusServiceUnavailable, "engine_unavailable", "cannot read presence: engine unavailable"})
}

func (s *Server) handleUserPresence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" {
		s.refuse(w, badRequest("invalid_user", "the user id is empty: GET /v1/presence/users/{id}"))
		return
	}
	if !s.presenceReader(w, r, "users/"+id) {
		return
	}
	u, err := s.presence.User(r.Context(), id)
	if err != nil {
		s.presenceFailed(w, err)
		return
	}
	a := userPresenceAnswer{User: u.User, Online: u.Streams > 0, Streams: u.Streams, Nodes: []nodePresenceAnswer{}}
	for _, n := range u.Nodes {
		a.Nodes = append(a.Nodes, nodePresenceAnswer{Node: n.Node, Streams: n.Streams})
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) handleTopicPresence(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if len(q["topic"]) != 1 {
		s.refuse(w, badRequest("invalid_topic", "one topic parameter is required, e.g. /v1/presence?topic=rooms/7"))
		return
	}
	limit := defaultPresenceLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxPresenceLimit {
			s.refuse(w, badRequest("invalid_limit", "limit=%q: want 0 to %d users", v, maxPresenceLimit))
			return
		}
		limit = n
	}
	topic := q.Get("topic")
	if !s.presenceReader(w, r, topic) {
		return
	}
	t, err := s.presence.Topic(r.Context(), topic, limit)
	if err != nil {
		s.presenceFailed(w, err)
		return
	}
	a := topicPresenceAnswer{Topic: t.Topic, Users: []userStreamsAnswer{}, UserCount: t.UserCount, Streams: t.Streams, Truncated: len(t.Users) < t.UserCount}
	for _, u := range t.Users {
		a.Users = append(a.Users, userStreamsAnswer{User: u.User, Streams: u.Streams})
	}
	writeJSON(w, http.StatusOK, a)
}

// joinPresence registers a stream of p on topics, returning its leave.
// Only users (token subjects) have presence.
func (s *Server) joinPresence(p *auth.Principal, topics []string) func() {
	if p.Kind != auth.User {
		return func() {}
	}
	id := presence.NewID()
	s.presence.Join(presence.Conn{ID: id, User: p.Name, Topics: topics})
	return func() { s.presence.Leave(id) }
}

// announcer publishes presence changes to presence/{topic}, from a queue, so
// that a registry never waits for an append. The changes are best effort: a
// full queue, or an engine that cannot append, drops them (counted, logged).
type announcer struct {
	s    *Server
	ch   chan presence.Change
	stop chan struct{}
	done sync.WaitGroup
}

// announcerQueue is the most changes waiting to be published.
const announcerQueue = 4096

func newAnnouncer(s *Server) *announcer {
	a := &announcer{s: s, ch: make(chan presence.Change, announcerQueue), stop: make(chan struct{})}
	a.done.Go(a.run)
	return a
}

// change queues c; it never blocks.
func (a *announcer) change(c presence.Change) {
	select {
	case a.ch <- c:
	default:
		a.s.metrics.presenceDropped.Inc()
	}
}

func (a *announcer) run() {
	for {
		select {
		case <-a.stop:
			for { // what is queued still goes out
				select {
				case c := <-a.ch:
					a.publish(c)
				default:
					return
				}
			}
		case c := <-a.ch:
			a.publish(c)
		}
	}
}

type presenceChange struct {
	User  string `json:"user"`
	Topic string `json:"topic"`
}

func (a *announcer) publish(c presence.Change) {
	typ := "leave"
	if c.Joined {
		typ = "join"
	}
	data, _ := json.Marshal(presenceChange{User: c.User, Topic: c.Topic})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := a.s.eng.Append(ctx, []engine.Event{{Topic: presence.EventPrefix + c.Topic, Type: typ, Data: data}})
	if err != nil {
		a.s.metrics.presenceDropped.Inc()
		if held, ok := a.s.warnings.Allow("presence change"); ok {
			a.s.log.Warn("presence change not published", "topic", c.Topic, "err", err, "repeats_held", held)
		}
	}
}

func (a *announcer) close() {
	close(a.stop)
	a.done.Wait()
}
