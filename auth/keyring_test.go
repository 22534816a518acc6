package auth

import (
	"context"
	"strings"
	"testing"
)

func TestKeyRingNamedAndBareKeys(t *testing.T) {
	r, err := ParseKeyRing([]string{"billing=billing-key-0123456789", "bare-key-0123456789", "YmFzZTY0LWtleS13aXRoLXBhZA=="})
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := r.Lookup("billing-key-0123456789"); !ok || name != "billing" {
		t.Fatalf("named key: %q %v", name, ok)
	}
	if name, ok := r.Lookup("bare-key-0123456789"); !ok || !strings.HasPrefix(name, "sha256:") || strings.Contains(name, "bare") {
		t.Fatalf("bare key: %q %v", name, ok)
	}
	// A base64 key ending in '=' is a bare key, not a name.
	if _, ok := r.Lookup("YmFzZTY0LWtleS13aXRoLXBhZA=="); !ok {
		t.Fatal("base64 key with padding not found")
	}
	for _, bad := range []string{"", "billing", "billing=billing-key-0123456789x", "billing-key"} {
		if _, ok := r.Lookup(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseKeyRing([]string{"short"}); err == nil {
		t.Fatal("short key accepted")
	}
	if _, err := ParseKeyRing([]string{"a=0123456789abcdef", "a=fedcba9876543210"}); err == nil {
		t.Fatal("duplicate name accepted")
	}
}

func TestPrivateTopicsBelongToTheirUser(t *testing.T) {
	ps := func(ss ...string) []Pattern { return must(ParsePatterns(ss)) }
	alice := UserPrincipal("alice", ps("**", "*/bob", "*/*", "rooms/*"), nil, now)
	for _, topic := range []string{"users/alice", "rooms/7", "announcements"} {
		if !alice.CanSubscribe(topic) {
			t.Errorf("alice cannot read %s", topic)
		}
	}
	// Wildcards never reach another user's topics, nor what lies below them.
	for _, topic := range []string{"users/bob", "users/bob/typing", "users/alice/typing", "users/alice2"} {
		if alice.CanSubscribe(topic) {
			t.Errorf("alice can read %s", topic)
		}
	}
	// A pattern that names users/ grants more, on purpose (an admin token).
	admin := UserPrincipal("ops", ps("users/*", "users/{sub}/**"), nil, now)
	if !admin.CanSubscribe("users/bob") || !admin.CanSubscribe("users/ops/x") || admin.CanSubscribe("users/bob/x") {
		t.Error("explicit users/ patterns")
	}
	// A subject that is not one segment owns no topic.
	odd := UserPrincipal("a/b", ps("users/{sub}"), nil, now)
	if odd.CanSubscribe("users/a/b") || odd.CanSubscribe("users/a") {
		t.Error("subject with a slash")
	}
	// Anonymous clients publish nothing; services everything.
	anon := AnonymousPrincipal(ps("**"))
	if anon.CanPublish("rooms/7") || anon.CanSubscribe("users/1") || !anon.CanSubscribe("rooms/7") {
		t.Error("anonymous")
	}
	svc := ServicePrincipal("billing")
	if !svc.CanPublish("users/1") || !svc.CanSubscribe("users/1") || svc.ID() != "service:billing" {
		t.Error("service")
	}
}

func TestGuard(t *testing.T) {
	keys := must(ParseKeyRing([]string{"ops=ops-key-0123456789"}))
	// Development: no verifier, anonymous reads all but users/**, tokens refused.
	g := must(NewGuard(nil, keys, nil))
	p, err := g.Authenticate(context.Background(), "")
	if err != nil || !p.CanSubscribe("rooms/7") || p.CanSubscribe("users/7") {
		t.Fatalf("dev anonymous: %v", err)
	}
	if _, err := g.Authenticate(context.Background(), "a.b.c"); reasonOf(err) != ReasonNotAccepted {
		t.Fatalf("dev token: %v", err)
	}
	if p, err := g.Authenticate(context.Background(), "ops-key-0123456789"); err != nil || p.Kind != Service {
		t.Fatalf("key: %v", err)
	}
	// With a key configured, anonymous gets only the configured patterns.
	v := newVerifier(t, Options{Secret: testSecret})
	g = must(NewGuard(v, keys, must(ParsePatterns([]string{"public/**"}))))
	if a := g.Anonymous(); a.CanSubscribe("rooms/7") || !a.CanSubscribe("public/news") {
		t.Fatal("anonymous patterns")
	}
	g = must(NewGuard(v, keys, nil))
	if g.Anonymous().CanSubscribe("rooms/7") {
		t.Fatal("anonymous by default with a key configured")
	}
	for _, bad := range []string{"users/*", "users/**", "rooms/{sub}"} {
		if _, err := NewGuard(v, keys, must(ParsePatterns([]string{bad}))); err == nil {
			t.Errorf("anonymous %q accepted", bad)
		}
	}
}
