package auth

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern string
		yes, no []string
	}{
		{"rooms/7", []string{"rooms/7"}, []string{"rooms/77", "rooms/7/x", "rooms", "rooms/"}},
		{"rooms/*", []string{"rooms/7", "rooms/a.b"}, []string{"rooms", "rooms/", "rooms/7/x", "room/7"}},
		{"rooms/**", []string{"rooms/7", "rooms/7/x", "rooms/a//b"}, []string{"rooms", "rooms/", "roomsx/7"}},
		{"*/chat", []string{"rooms/chat", "a/chat"}, []string{"/chat", "rooms/chat/x", "chat"}},
		{"**", []string{"a", "a/b", "users/42", "/"}, nil},
		{"a/*/c/**", []string{"a/b/c/d", "a/b/c/d/e"}, []string{"a/b/c", "a//c/d", "a/b/x/d"}},
		{"a//b", []string{"a//b"}, []string{"a/b"}},
	}
	for _, c := range cases {
		p, err := ParsePattern(c.pattern)
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		for _, topic := range c.yes {
			if !p.Match(topic) {
				t.Errorf("%q should match %q", c.pattern, topic)
			}
		}
		for _, topic := range c.no {
			if p.Match(topic) {
				t.Errorf("%q should not match %q", c.pattern, topic)
			}
		}
	}
}

func TestPatternParseErrors(t *testing.T) {
	for _, s := range []string{"", "a/**/b", "a*", "a/b*", "***", "a/{user}", "a/{sub", "a b", "a\nb", "rooms/?", strings.Repeat("a", MaxPatternLen+1)} {
		if _, err := ParsePattern(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestPatternExpandSubject(t *testing.T) {
	p := MustParsePattern("users/{sub}/**")
	q, ok := p.Expand("42")
	if !ok || !q.Match("users/42/typing") || q.Match("users/43/typing") || q.String() != "users/42/**" {
		t.Fatalf("expanded %q ok=%v", q, ok)
	}
	for _, bad := range []string{"", "a/b", "a b", "*", "x\n"} {
		if _, ok := p.Expand(bad); ok {
			t.Errorf("subject %q expanded", bad)
		}
	}
	if p.Match("users/{sub}/x") {
		t.Fatal("an unexpanded pattern must match nothing")
	}
	// The private namespace is decided before expansion.
	if q, _ := MustParsePattern("{sub}/**").Expand("users"); q.NamesPrivate() {
		t.Fatal("a subject named users turned {sub}/** into a private pattern")
	}
}

// reference is an independent matcher: the pattern as a regular expression.
func reference(p string) *regexp.Regexp {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch s {
		case "*":
			segs[i] = "[^/]+"
		case "**":
			segs[i] = "(?s:.+)"
		default:
			segs[i] = regexp.QuoteMeta(s)
		}
	}
	return regexp.MustCompile(`\A` + strings.Join(segs, "/") + `\z`)
}

func FuzzPatternParse(f *testing.F) {
	for _, s := range []string{"rooms/*", "a/**", "users/{sub}", "{sub}", "a//b", "**", "a/*/b/**", "x{sub}y/{sub}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("String() = %q, want %q", p.String(), s)
		}
		q, ok := p.Expand("42")
		if ok && strings.Contains(q.String(), "{sub}") {
			t.Fatalf("%q expanded to %q", s, q)
		}
	})
}

func FuzzPatternMatch(f *testing.F) {
	seeds := [][2]string{
		{"rooms/*", "rooms/7"}, {"rooms/**", "rooms/7/x"}, {"*/x", "/x"},
		{"a//b", "a//b"}, {"**", "users/42"}, {"a/*", "a/"}, {"a/**", "a/"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := ParsePattern(pattern)
		if err != nil || p.HasSubject() {
			return
		}
		got := p.Match(topic)
		if want := reference(pattern).MatchString(topic); got != want {
			t.Fatalf("%q.Match(%q) = %v, reference says %v", pattern, topic, got, want)
		}
		// Private topics are reached only by patterns that name users/.
		pr := AnonymousPrincipal([]Pattern{p})
		if IsPrivate(topic) && pr.CanSubscribe(topic) && !p.NamesPrivate() {
			t.Fatalf("%q grants private topic %q", pattern, topic)
		}
		// Herald's own topics only by patterns that name herald/.
		if IsAdmin(topic) && pr.CanSubscribe(topic) && !p.NamesAdmin() {
			t.Fatalf("%q grants admin topic %q", pattern, topic)
		}
	})
}

// Herald's own topics (herald/**) are granted, like private ones, only by a
// pattern whose first segment names them: wildcards never reach them.
func TestAdminTopicsNeedAPatternThatNamesThem(t *testing.T) {
	if !IsAdmin("herald/stats") || IsAdmin("herald") || IsAdmin("heralds/x") || IsAdmin("rooms/herald/stats") {
		t.Fatal("IsAdmin")
	}
	for pattern, want := range map[string]bool{
		"**": false, "*/stats": false, "*/*": false, "*/**": false,
		"herald/stats": true, "herald/*": true, "herald/**": true,
		"herald/other": false, "rooms/*": false,
	} {
		p := MustParsePattern(pattern)
		if p.NamesAdmin() != strings.HasPrefix(pattern, "herald/") {
			t.Errorf("%q.NamesAdmin() = %v", pattern, p.NamesAdmin())
		}
		for _, pr := range []*Principal{
			AnonymousPrincipal([]Pattern{p}),
			UserPrincipal("alice", []Pattern{p}, []Pattern{p}, time.Time{}),
		} {
			if got := pr.CanSubscribe("herald/stats"); got != want {
				t.Errorf("%s with %q: CanSubscribe(herald/stats) = %v, want %v", pr.Kind, pattern, got, want)
			}
			if got := pr.CanPublish("herald/stats"); got != (want && pr.Kind == User) {
				t.Errorf("%s with %q: CanPublish(herald/stats) = %v", pr.Kind, pattern, got)
			}
		}
	}
	// A publish key reads everything, Herald's topics too.
	if !ServicePrincipal("ops").CanSubscribe("herald/stats") {
		t.Fatal("a publish key cannot read herald/stats")
	}
	// A subject named herald does not make {sub}/** an admin pattern, and
	// users/{sub} of a user called herald is still only users/herald.
	if q, _ := MustParsePattern("{sub}/**").Expand("herald"); q.NamesAdmin() {
		t.Fatal("a subject named herald turned {sub}/** into an admin pattern")
	}
	if UserPrincipal("herald", nil, nil, time.Time{}).CanSubscribe("herald/stats") {
		t.Fatal("a user called herald reads herald/stats")
	}
	// Neither kind of reserved topic opens the other.
	if UserPrincipal("a", []Pattern{MustParsePattern("users/**")}, nil, time.Time{}).CanSubscribe("herald/stats") ||
		UserPrincipal("a", []Pattern{MustParsePattern("herald/**")}, nil, time.Time{}).CanSubscribe("users/b") {
		t.Fatal("users/** and herald/** cross")
	}
}
