package bench

import (
	"fmt"
	"strconv"
	"strings"
)

// Layout says which topic each connection subscribes to.
type Layout struct {
	Kind string // "shared", "per-user" or "rooms"
	Room int    // members per room, for "rooms"
}

// ParseLayout reads shared, per-user or rooms:K.
func ParseLayout(s string) (Layout, error) {
	switch {
	case s == "shared":
		return Layout{Kind: "shared"}, nil
	case s == "per-user":
		return Layout{Kind: "per-user"}, nil
	case strings.HasPrefix(s, "rooms:"):
		k, err := strconv.Atoi(strings.TrimPrefix(s, "rooms:"))
		if err != nil || k < 1 {
			return Layout{}, fmt.Errorf("layout %q: want rooms:K with K ≥ 1 members per room", s)
		}
		return Layout{Kind: "rooms", Room: k}, nil
	}
	return Layout{}, fmt.Errorf("layout %q: want shared, per-user or rooms:K", s)
}

func (l Layout) String() string {
	if l.Kind == "rooms" {
		return "rooms:" + strconv.Itoa(l.Room)
	}
	return l.Kind
}

// Topics returns the number of topics n connections use.
func (l Layout) Topics(n int) int {
	switch l.Kind {
	case "per-user":
		return n
	case "rooms":
		return (n + l.Room - 1) / l.Room
	}
	return 1
}

// TopicOf returns the index of the topic connection i subscribes to.
func (l Layout) TopicOf(i int) int {
	switch l.Kind {
	case "per-user":
		return i
	case "rooms":
		return i / l.Room
	}
	return 0
}

// topicNames names the topics of one run under prefix, which is unique per
// run so that a server reused across runs never replays an earlier run's
// events into this one.
func topicNames(l Layout, n int, prefix string) []string {
	names := make([]string, l.Topics(n))
	for i := range names {
		switch l.Kind {
		case "per-user":
			names[i] = fmt.Sprintf("%s/users/%d", prefix, i)
		case "rooms":
			names[i] = fmt.Sprintf("%s/rooms/%d", prefix, i)
		default:
			names[i] = prefix + "/all"
		}
	}
	return names
}
