// Package presence tells who is online: which users have streams open, on
// which nodes and on which topics.
//
// Entries are kept per stream (connection), never per user: a user's second
// tab, or a reconnect that lands before the old stream's close, is a second
// entry, and removing one never removes another. A registry shared by nodes
// (the Redis engine's) adds node liveness, so a node that dies without
// removing its entries stops counting within a bound.
package presence

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
)

// Conn is one stream of a user, as registered.
type Conn struct {
	// ID is unique per stream (NewID).
	ID string
	// User is the stream's token subject.
	User string
	// Topics are the topics the stream subscribes to.
	Topics []string
}

// Registry records this node's streams and answers for all nodes sharing
// its back end.
//
// Join and Leave never wait for a back end: a shared registry writes them in
// the background, batched, and writes them again when the back end lost
// them. Queries read the back end.
type Registry interface {
	// Join registers c. A second Join of the same ID is ignored.
	Join(c Conn)
	// Leave removes the stream joined with id; unknown ids are ignored.
	Leave(id string)
	// User reports user's live streams on every node.
	User(ctx context.Context, user string) (User, error)
	// Topic reports the users with live streams on topic, at most limit of
	// them (sorted by user), and the totals.
	Topic(ctx context.Context, topic string, limit int) (Topic, error)
	// Close stops the registry, removing this node's entries when it can.
	Close() error
}

// User is one user's presence.
type User struct {
	User    string
	Streams int           // 0: offline
	Nodes   []NodeStreams // sorted by node
}

// NodeStreams counts a user's streams on one node.
type NodeStreams struct {
	Node    string
	Streams int
}

// Topic is the presence on one topic.
type Topic struct {
	Topic     string
	Users     []UserStreams // sorted by user, at most the limit asked
	UserCount int           // all users with a live stream on the topic
	Streams   int           // all their streams
}

// UserStreams counts a user's streams on a topic.
type UserStreams struct {
	User    string
	Streams int
}

// Change is a user's first stream on a topic arriving (Joined), or the
// user's last stream on it leaving, counted over all nodes.
type Change struct {
	Topic  string
	User   string
	Joined bool
}

// ErrUnavailable wraps a back end's failure to answer a query.
var ErrUnavailable = errors.New("presence: unavailable")

// ErrClosed is returned by a query after Close.
var ErrClosed = errors.New("presence: closed")

// Options configure a registry.
type Options struct {
	// Node names this node in answers.
	Node string
	// OnChange, when set, is called with every Change this node sees: a
	// join or leave of its own streams, or the removal of a dead node's.
	// It runs on the registry's goroutine and must not block for long.
	OnChange func(Change)
}

// Provider is implemented by an engine whose back end holds a registry
// shared by its nodes.
type Provider interface {
	Presence(Options) Registry
}

// Tracked reports whether presence is kept for topic: everything but the
// presence topics themselves.
func Tracked(topic string) bool { return !IsEventTopic(topic) }

// EventPrefix starts the topics that carry presence changes: a change on
// rooms/7 is published to presence/rooms/7.
const EventPrefix = "presence/"

// IsEventTopic reports whether topic carries presence changes.
func IsEventTopic(topic string) bool {
	return len(topic) > len(EventPrefix) && topic[:len(EventPrefix)] == EventPrefix
}

// Open returns the registry of engine e: e's own when it shares one between
// nodes (a Provider), else one in memory.
func Open(e any, opt Options) Registry {
	if p, ok := e.(Provider); ok {
		return p.Presence(opt)
	}
	return NewMemory(opt)
}

// SortedNodes lists streams per node, sorted by node.
func SortedNodes(perNode map[string]int) []NodeStreams {
	if len(perNode) == 0 {
		return nil
	}
	out := make([]NodeStreams, 0, len(perNode))
	for n, c := range perNode {
		out = append(out, NodeStreams{Node: n, Streams: c})
	}
	slices.SortFunc(out, func(a, b NodeStreams) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// NewID returns a random stream id.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
