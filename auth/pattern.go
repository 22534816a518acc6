package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/herald-hub/herald/engine"
)

// A Pattern names a set of topics. Segments are separated by '/':
//
//	rooms/7        the topic rooms/7 only
//	rooms/*        one more non-empty segment: rooms/7, not rooms/7/chat
//	rooms/**       the rest of the topic, at least one byte: rooms/7, rooms/7/chat
//	users/{sub}    {sub} is replaced by the token's subject
//
// `*` and `**` stand for whole segments only, and `**` only at the end.
type Pattern struct {
	raw  string
	segs []segment
	// users: the first segment is the literal "users", so the pattern may grant
	// private topics. Decided before {sub} is expanded, so a subject cannot
	// turn "{sub}/**" into "users/**".
	users bool
	// admin: the first segment is the literal "herald", so the pattern may
	// grant Herald's own topics (herald/stats).
	admin  bool
	hasSub bool
}

type segKind uint8

const (
	literal segKind = iota
	one             // *
	rest            // **
)

type segment struct {
	kind segKind
	lit  string
}

// MaxPatternLen bounds a pattern; {sub} may make it longer than a topic.
const MaxPatternLen = 1024

const subPlaceholder = "{sub}"

// ErrInvalidPattern reports a pattern that does not parse.
var ErrInvalidPattern = errors.New("invalid topic pattern")

// ParsePattern parses a topic pattern.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf("%w: empty", ErrInvalidPattern)
	}
	if len(s) > MaxPatternLen {
		return Pattern{}, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidPattern, len(s), MaxPatternLen)
	}
	parts := strings.Split(s, "/")
	p := Pattern{raw: s, segs: make([]segment, len(parts))}
	for i, part := range parts {
		switch part {
		case "*":
			p.segs[i] = segment{kind: one}
		case "**":
			if i != len(parts)-1 {
				return Pattern{}, fmt.Errorf("%w: %q: ** must be the last segment", ErrInvalidPattern, s)
			}
			p.segs[i] = segment{kind: rest}
		default:
			// Outside placeholders a literal segment is made of topic bytes.
			bare := strings.ReplaceAll(part, subPlaceholder, "")
			if bare != part {
				p.hasSub = true
			}
			if !validSegment(bare, true) {
				return Pattern{}, fmt.Errorf("%w: %q: segment %q (wildcards stand for whole segments; allowed bytes: A-Z a-z 0-9 . _ ~ : @ + - and {sub})", ErrInvalidPattern, s, part)
			}
			p.segs[i] = segment{kind: literal, lit: part}
		}
	}
	p.users = p.segs[0].kind == literal && p.segs[0].lit == privatePrefix
	p.admin = p.segs[0].kind == literal && p.segs[0].lit == AdminPrefix
	return p, nil
}

// MustParsePattern is ParsePattern for constants; it panics on error.
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// ParsePatterns parses each of ss.
func ParsePatterns(ss []string) ([]Pattern, error) {
	out := make([]Pattern, 0, len(ss))
	for _, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// HasSubject reports whether the pattern uses {sub}.
func (p Pattern) HasSubject() bool { return p.hasSub }

// NamesPrivate reports whether the pattern can grant private topics: its first
// segment is the literal "users". Wildcards alone never reach them.
func (p Pattern) NamesPrivate() bool { return p.users }

// NamesAdmin reports whether the pattern can grant Herald's own topics
// (herald/**): its first segment is the literal "herald". Wildcards alone
// never reach them.
func (p Pattern) NamesAdmin() bool { return p.admin }

// Expand replaces {sub} with sub. ok is false when sub cannot stand for a single
// segment (empty, a '/', or a byte outside the topic alphabet): such a pattern
// then grants nothing, rather than something its author did not mean.
func (p Pattern) Expand(sub string) (q Pattern, ok bool) {
	if !p.hasSub {
		return p, true
	}
	if !validSegment(sub, false) {
		return Pattern{}, false
	}
	q = Pattern{raw: strings.ReplaceAll(p.raw, subPlaceholder, sub), segs: make([]segment, len(p.segs)), users: p.users, admin: p.admin}
	for i, s := range p.segs {
		if s.kind == literal {
			s.lit = strings.ReplaceAll(s.lit, subPlaceholder, sub)
		}
		q.segs[i] = s
	}
	return q, true
}

// Match reports whether topic is in the pattern's set. A pattern whose {sub}
// was not expanded matches nothing.
func (p Pattern) Match(topic string) bool {
	if p.hasSub || len(p.segs) == 0 {
		return false
	}
	t := topic
	for i, s := range p.segs {
		if s.kind == rest {
			return t != ""
		}
		seg, after, more := strings.Cut(t, "/")
		switch s.kind {
		case literal:
			if seg != s.lit {
				return false
			}
		case one:
			if seg == "" {
				return false
			}
		}
		last := i == len(p.segs)-1
		if last {
			return !more
		}
		if !more {
			return false
		}
		t = after
	}
	return false
}

// privatePrefix is the first segment of private topics: users/{id} belongs to
// user id alone.
const privatePrefix = "users"

// IsPrivate reports whether topic is private: users/{id} and everything below it.
func IsPrivate(topic string) bool {
	return strings.HasPrefix(topic, privatePrefix+"/")
}

// AdminPrefix is the first segment of Herald's own topics, such as
// herald/stats: Herald publishes there, nobody else may, and reading them
// needs a publish key or a pattern that names them.
const AdminPrefix = "herald"

// IsAdmin reports whether topic is one of Herald's own: herald/ and everything
// below it.
func IsAdmin(topic string) bool {
	return strings.HasPrefix(topic, AdminPrefix+"/")
}

// UserTopic is the private topic of user id, or "" when id cannot be a single
// topic segment.
func UserTopic(id string) string {
	if !validSegment(id, false) {
		return ""
	}
	return privatePrefix + "/" + id
}

// validSegment reports whether s is made of topic bytes other than '/'; empty
// is allowed only when emptyOK.
func validSegment(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	if strings.IndexByte(s, '/') >= 0 {
		return false
	}
	return engine.ValidateTopic(s) == nil
}
