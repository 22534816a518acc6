package presence

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

// Memory is a registry of one node's streams, kept in memory: the presence
// of engines that do not share a back end (local, memory).
type Memory struct {
	opt Options

	mu     sync.Mutex
	closed bool
	conns  map[string]Conn
	users  map[string]int            // user -> streams
	topics map[string]map[string]int // topic -> user -> streams
}

// NewMemory returns an empty registry.
func NewMemory(opt Options) *Memory {
	return &Memory{opt: opt, conns: map[string]Conn{}, users: map[string]int{}, topics: map[string]map[string]int{}}
}

// Join implements Registry.
func (m *Memory) Join(c Conn) {
	var changes []Change
	m.mu.Lock()
	if _, dup := m.conns[c.ID]; dup || m.closed {
		m.mu.Unlock()
		return
	}
	m.conns[c.ID] = c
	m.users[c.User]++
	for _, t := range c.Topics {
		if !Tracked(t) {
			continue
		}
		us := m.topics[t]
		if us == nil {
			us = map[string]int{}
			m.topics[t] = us
		}
		us[c.User]++
		if us[c.User] == 1 {
			changes = append(changes, Change{Topic: t, User: c.User, Joined: true})
		}
	}
	m.mu.Unlock()
	m.report(changes)
}

// Leave implements Registry.
func (m *Memory) Leave(id string) {
	m.mu.Lock()
	c, ok := m.conns[id]
	if !ok {
		m.mu.Unlock()
		return
	}
	changes := m.remove(c)
	closed := m.closed
	m.mu.Unlock()
	if !closed {
		m.report(changes)
	}
}

// remove drops c; m.mu is held.
func (m *Memory) remove(c Conn) []Change {
	var changes []Change
	delete(m.conns, c.ID)
	if m.users[c.User]--; m.users[c.User] == 0 {
		delete(m.users, c.User)
	}
	for _, t := range c.Topics {
		us := m.topics[t]
		if us == nil {
			continue
		}
		if us[c.User]--; us[c.User] == 0 {
			delete(us, c.User)
			changes = append(changes, Change{Topic: t, User: c.User})
			if len(us) == 0 {
				delete(m.topics, t)
			}
		}
	}
	return changes
}

func (m *Memory) report(changes []Change) {
	if m.opt.OnChange == nil {
		return
	}
	for _, c := range changes {
		m.opt.OnChange(c)
	}
}

// User implements Registry.
func (m *Memory) User(ctx context.Context, user string) (User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return User{}, ErrClosed
	}
	u := User{User: user, Streams: m.users[user]}
	if u.Streams > 0 {
		u.Nodes = []NodeStreams{{Node: m.opt.Node, Streams: u.Streams}}
	}
	return u, nil
}

// Topic implements Registry.
func (m *Memory) Topic(ctx context.Context, topic string, limit int) (Topic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Topic{}, ErrClosed
	}
	counts := make(map[string]int, len(m.topics[topic]))
	for u, n := range m.topics[topic] {
		counts[u] = n
	}
	return Summarize(topic, counts, limit), nil
}

// Summarize turns a topic's streams per user into its answer, keeping the
// first limit users by name.
func Summarize(topic string, counts map[string]int, limit int) Topic {
	t := Topic{Topic: topic, UserCount: len(counts)}
	all := make([]UserStreams, 0, len(counts))
	for u, n := range counts {
		all = append(all, UserStreams{User: u, Streams: n})
		t.Streams += n
	}
	slices.SortFunc(all, func(a, b UserStreams) int { return cmp.Compare(a.User, b.User) })
	if limit >= 0 && len(all) > limit {
		all = all[:limit]
	}
	t.Users = all
	return t
}

// Close implements Registry. The entries go with the process; Leave calls
// after Close report their changes no more.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
