package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
)

var testSecret = []byte("server-test-secret-0123456789abcdef")

// verifier is an HS256 verifier with the test secret, closed at cleanup.
func verifier(t *testing.T, o auth.Options) *auth.Verifier {
	t.Helper()
	if o.Secret == nil {
		o.Secret = testSecret
	}
	v, err := auth.NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// token signs claims for sub with the test secret; mod adjusts them.
func token(t testing.TB, sub string, g *auth.Grants, mod func(*auth.Claims)) string {
	t.Helper()
	now := time.Now()
	c := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}, Herald: g}
	if mod != nil {
		mod(&c)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// get does a GET with headers and returns the answer, body unread.
func (n *testNode) get(path string, header ...string) *http.Response {
	n.t.Helper()
	req, _ := http.NewRequest("GET", n.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// wantError checks an error answer's status and code, and closes it.
func wantError(t *testing.T, resp *http.Response, status int, code string) errorBody {
	t.Helper()
	defer resp.Body.Close()
	var e errorBody
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &e)
	if resp.StatusCode != status || e.Error.Code != code {
		t.Fatalf("%d %s, want %d %s", resp.StatusCode, raw, status, code)
	}
	return e
}

func q(topics ...string) string {
	v := url.Values{}
	for _, t := range topics {
		v.Add("topic", t)
	}
	return "/v1/events?" + v.Encode()
}

func bearerH(tok string) []string {
	if tok == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + tok}
}

// A user's token never reads another user's topic: not by naming it, not
// through wildcard grants, not through a cursor that names it.
func TestUserCannotReadAnotherUsersTopic(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{})}})
	greedy := &auth.Grants{Subscribe: []string{"**", "*/bob", "*/*", "users/{sub}/**", "{sub}/**"}}
	alice := token(t, "alice", greedy, nil)
	bob := token(t, "bob", nil, nil)
	// A subject called "users" gains nothing from {sub}/**.
	users := token(t, "users", greedy, nil)

	bobFirst := n.publish("users/bob", "secret", "for bob only")
	for _, c := range []struct {
		tok    string
		topics []string
	}{
		{alice, []string{"users/bob"}},
		{alice, []string{"users/alice", "users/bob"}},
		{alice, []string{"users/bob/typing"}},
		{users, []string{"users/bob"}},
		{"", []string{"users/bob"}},
	} {
		status, code := 403, "forbidden_topic"
		if c.tok == "" {
			status, code = 401, "missing_credentials" // a token could grant it
		}
		e := wantError(t, n.get(q(c.topics...), bearerH(c.tok)...), status, code)
		if !strings.Contains(e.Error.Message, "users/bob") {
			t.Errorf("message %q does not name the topic", e.Error.Message)
		}
	}
	// Wildcards are for grants, not for subscriptions.
	for _, topic := range []string{"users/*", "users/**", "*"} {
		wantError(t, n.get(q(topic), bearerH(alice)...), 400, "invalid_topic")
	}

	// Alice's own stream, resuming from a cursor that names bob's topic from
	// its start, holding two topics' positions (bob's and hers at 0).
	ep := firstPos(t, n, "users/bob").Epoch
	cursor := string(hub.AppendCursor(nil,
		[]uint32{hub.TopicHash("users/bob"), hub.TopicHash("users/alice")},
		[]engine.Position{{Epoch: ep}, {Epoch: ep}}, nil))
	for _, last := range []string{bobFirst.ID, cursor} {
		resp := n.get(q("users/alice", "rooms/7"), append(bearerH(alice), "Last-Event-ID", last)...)
		if resp.StatusCode != 200 {
			t.Fatalf("alice's own stream: %d", resp.StatusCode)
		}
		n.publish("users/bob", "secret", "for bob only, live")
		n.publish("users/alice", "note", "for alice")
		got := readUntil(t, resp.Body, "for alice")
		if strings.Contains(got, "bob") {
			t.Fatalf("bob's event on alice's stream:\n%s", got)
		}
		resp.Body.Close()
	}
	// Bob reads his topic, replay included.
	s := client.Dial(context.Background(), client.Config{URL: n.eventsURL("users/bob"), Header: http.Header{"Authorization": {"Bearer " + bob}}, LastEventID: bobFirst.ID})
	defer s.Close()
	if ev := next(t, s, 5*time.Second); ev.Data != "for bob only, live" {
		t.Fatalf("bob got %+v", ev)
	}
}

// readUntil reads a stream until want appears and returns what it read.
func readUntil(t *testing.T, body io.Reader, want string) string {
	t.Helper()
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() {
		br := bufio.NewReader(body)
		for {
			line, err := br.ReadString('\n')
			buf.WriteString(line)
			if err != nil {
				done <- err
				return
			}
			if strings.Contains(line, want) {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stream ended before %q: %v\n%s", want, err, buf.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q within 5s", want)
	}
	return buf.String()
}

// A refused anonymous subscription asks for a credential (401 with a Bearer
// challenge): a token could grant the topic. A token that does not grant it
// gets 403, since another attempt with the same credential is pointless.
func TestAnonymousRefusalAsksForACredential(t *testing.T) {
	dev := newTestNode(t, nodeOptions{})
	prod := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), AnonymousSubscribe: []auth.Pattern{auth.MustParsePattern("public/**")}}})
	for _, c := range []struct {
		n     *testNode
		query string
		topic string
	}{
		{dev, q("users/42"), "users/42"},
		{dev, q("rooms/7", "users/42/inbox"), "users/42/inbox"},
		{prod, q("users/42"), "users/42"},
		{prod, q("public/news", "rooms/7"), "rooms/7"},
	} {
		resp := c.n.get(c.query)
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="herald"` {
			t.Errorf("%s: WWW-Authenticate %q", c.query, got)
		}
		e := wantError(t, resp, 401, "missing_credentials")
		if !strings.Contains(e.Error.Message, c.topic) {
			t.Errorf("%s: message %q does not name %s", c.query, e.Error.Message, c.topic)
		}
	}
	bob := token(t, "bob", nil, nil)
	resp := prod.get(q("users/42"), bearerH(bob)...)
	if got := resp.Header.Get("WWW-Authenticate"); got != "" {
		t.Errorf("403 with WWW-Authenticate %q", got)
	}
	wantError(t, resp, 403, "forbidden_topic")
}
