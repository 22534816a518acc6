package engine

import (
	"errors"
	"fmt"
)

// MaxTopicLen is the longest topic name accepted.
const MaxTopicLen = 256

// ErrInvalidTopic reports a topic name outside the allowed alphabet or length.
var ErrInvalidTopic = errors.New("invalid topic")

// topicByte marks the bytes a topic may contain: [A-Za-z0-9._~:/@+-].
var topicByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._~:/@+-" {
		t[c] = true
	}
	return t
}()

// ValidateTopic reports whether name is a valid topic: 1–256 bytes of
// [A-Za-z0-9._~:/@+-]. The alphabet keeps topics safe as Redis keys, NATS
// subjects (after mapping) and URL path or query parts without escaping.
func ValidateTopic(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	}
	if len(name) > MaxTopicLen {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidTopic, len(name), MaxTopicLen)
	}
	for i := 0; i < len(name); i++ {
		if !topicByte[name[i]] {
			return fmt.Errorf("%w: byte %q at %d (allowed: A-Z a-z 0-9 . _ ~ : / @ + -)", ErrInvalidTopic, name[i], i)
		}
	}
	return nil
}

// MaxIDLen is the longest Event.ID the networked engines accept.
const MaxIDLen = 1024

// CheckEvents validates what Append is given: every topic (ValidateTopic)
// and every ID at most MaxIDLen bytes.
func CheckEvents(events []Event) error {
	for i, ev := range events {
		if err := ValidateTopic(ev.Topic); err != nil {
			return err
		}
		if len(ev.ID) > MaxIDLen {
			return fmt.Errorf("engine: event %d: ID of %d bytes, at most %d", i, len(ev.ID), MaxIDLen)
		}
	}
	return nil
}

// ByTopic groups events by topic for an engine that appends per topic: the
// topics in the order of their first event, and for each topic the indexes of
// its events, in order.
func ByTopic(events []Event) (order []string, idx map[string][]int) {
	idx = make(map[string][]int)
	for i, ev := range events {
		if _, ok := idx[ev.Topic]; !ok {
			order = append(order, ev.Topic)
		}
		idx[ev.Topic] = append(idx[ev.Topic], i)
	}
	return order, idx
}
