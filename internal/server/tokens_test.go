package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-hub/herald/auth"
)

// jwksServer serves Ed25519 keys by kid.
func jwksServer(t *testing.T, keys map[string]ed25519.PublicKey) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		for kid, k := range keys {
			set.Keys = append(set.Keys, map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": base64.RawURLEncoding.EncodeToString(k)})
		}
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func edKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func signEd(t *testing.T, priv ed25519.PrivateKey, kid, sub string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Refused tokens get 401 and a reason code, wherever the token comes from.
func TestBadTokensAreRefusedWithReason(t *testing.T) {
	pub1, priv1 := edKey(t)
	pub2, _ := edKey(t)
	jw := jwksServer(t, map[string]ed25519.PublicKey{"k1": pub1, "k2": pub2})
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{JWKSURL: jw.URL, JWKSMinRefresh: time.Hour})}})
	good := token(t, "alice", nil, nil)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	cases := []struct {
		name, token, code string
	}{
		{"expired", token(t, "alice", nil, func(c *auth.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }), "token_expired"},
		{"not yet valid", token(t, "alice", nil, func(c *auth.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), "token_not_yet_valid"},
		{"issued in the future", token(t, "alice", nil, func(c *auth.Claims) { c.IssuedAt = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), "token_issued_in_future"},
		{"wrong signature", good[:strings.LastIndex(good, ".")+1] + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), "token_signature_invalid"},
		{"alg none", none, "token_alg_not_allowed"},
		{"unknown kid", signEd(t, priv1, "k9", "alice"), "token_unknown_kid"},
		{"wrong kid", signEd(t, priv1, "k2", "alice"), "token_signature_invalid"},
		{"truncated", good[:len(good)/2], "token_malformed"},
		{"truncated signature", good[:len(good)-3], "token_signature_invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, via := range []struct {
				name string
				req  *http.Request
			}{
				{"header", mustReq(t, n.srv.URL+q("rooms/7"), "Authorization", "Bearer "+c.token)},
				{"cookie", mustReq(t, n.srv.URL+q("rooms/7"), "Cookie", DefaultTokenCookie+"="+c.token)},
				{"query", mustReq(t, n.srv.URL+q("rooms/7")+"&access_token="+c.token)},
			} {
				resp, err := http.DefaultClient.Do(via.req)
				if err != nil {
					t.Fatal(err)
				}
				wantError(t, resp, 401, c.code)
				if !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
					t.Errorf("%s: WWW-Authenticate %q", via.name, resp.Header.Get("WWW-Authenticate"))
				}
			}
			// The same reason on publish.
			body := []byte(`{"topic":"rooms/7"}`)
			resp, raw := n.post("application/json", body, c.token)
			if resp.StatusCode != 401 || !strings.Contains(string(raw), c.code) {
				t.Errorf("publish: %d %s", resp.StatusCode, raw)
			}
		})
	}
	// A good token from the JWKS works.
	resp := n.get(q("users/alice"), bearerH(signEd(t, priv1, "k1", "alice"))...)
	if resp.StatusCode != 200 {
		t.Fatalf("JWKS token: %d", resp.StatusCode)
	}
	if v := n.metric("herald_jwks_keys"); v != 2 {
		t.Fatalf("herald_jwks_keys %v, want 2", v)
	}
	if v := n.metric("herald_jwks_last_success_timestamp_seconds"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("herald_jwks_last_success_timestamp_seconds %v", v)
	}
}

func mustReq(t *testing.T, u string, header ...string) *http.Request {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

func TestAnonymousAccessDependsOnWhetherTokensAreConfigured(t *testing.T) {
	// Development: no JWT key. Anonymous reads all but users/**; tokens are
	// refused rather than trusted unverified.
	dev := newTestNode(t, nodeOptions{})
	if resp := dev.get(q("rooms/7", "users")); resp.StatusCode != 200 {
		t.Fatalf("dev anonymous: %d", resp.StatusCode)
	}
	wantError(t, dev.get(q("users/1")), 401, "missing_credentials")
	wantError(t, dev.get(q("rooms/7"), bearerH(token(t, "alice", nil, nil))...), 401, "tokens_not_accepted")
	// A publish key is a service credential: it may read everything.
	if resp := dev.get(q("users/1"), bearerH(testKey)...); resp.StatusCode != 200 {
		t.Fatalf("service: %d", resp.StatusCode)
	}

	// With a key: anonymous gets only the configured patterns.
	prod := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), AnonymousSubscribe: []auth.Pattern{auth.MustParsePattern("public/**")}}})
	if resp := prod.get(q("public/news")); resp.StatusCode != 200 {
		t.Fatalf("anonymous public: %d", resp.StatusCode)
	}
	wantError(t, prod.get(q("public/news", "rooms/7")), 401, "missing_credentials")
	closed := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{})}})
	wantError(t, closed.get(q("public/news")), 401, "missing_credentials")
}

func TestPublishWithTokenIsAuthorizedPerTopic(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{})}})
	player := token(t, "alice", &auth.Grants{Publish: []string{"rooms/7", "games/{sub}/*"}}, nil)
	reader := token(t, "alice", &auth.Grants{Subscribe: []string{"rooms/*"}}, nil)
	for _, c := range []struct {
		body, tok string
		status    int
		code      string
	}{
		{`{"topic":"rooms/7","data":"move"}`, player, 200, ""},
		{`{"topic":"games/alice/1","data":"move"}`, player, 200, ""},
		{`{"topic":"rooms/8","data":"move"}`, player, 403, "forbidden_topic"},
		{`{"topic":"games/bob/1","data":"move"}`, player, 403, "forbidden_topic"},
		{`{"topic":"users/bob","data":"x"}`, player, 403, "forbidden_topic"},
		{`[{"topic":"rooms/7"},{"topic":"rooms/8"}]`, player, 403, "forbidden_topic"},
		{`{"topic":"rooms/7","data":"move"}`, reader, 403, "forbidden_topic"},
	} {
		resp, raw := n.post("application/json", []byte(c.body), c.tok)
		if resp.StatusCode != c.status || (c.code != "" && !strings.Contains(string(raw), c.code)) {
			t.Errorf("%s: %d %s, want %d %s", c.body, resp.StatusCode, raw, c.status, c.code)
		}
	}
	// The refused batch appended nothing: rooms/7 holds the first publish only.
	if head := headOffset(t, n, "rooms/7"); head != 1 {
		t.Fatalf("rooms/7 at %d, want 1", head)
	}
	// Cookies and ?access_token= do not count for publishing (CSRF, logs).
	req, _ := http.NewRequest("POST", n.srv.URL+"/v1/publish?access_token="+player, strings.NewReader(`{"topic":"rooms/7"}`))
	req.Header.Set("Cookie", DefaultTokenCookie+"="+player)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, resp, 401, "missing_credentials")
}

// A stream ends when its token expires; the client comes back with a fresh one.
func TestStreamEndsWhenTokenExpires(t *testing.T) {
	const leeway = 500 * time.Millisecond
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{Leeway: leeway})}})
	exp := time.Now().Add(time.Second).Truncate(time.Second)
	tok := token(t, "alice", nil, func(c *auth.Claims) { c.ExpiresAt = jwt.NewNumericDate(exp) })
	resp := n.get(q("users/alice"), bearerH(tok)...)
	if resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, resp.Body); close(ended) }()
	select {
	case <-ended:
		if time.Now().Before(exp.Add(leeway)) { // accepted until exp + leeway
			t.Fatal("stream ended before the token expired")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("stream outlived its token")
	}
}

// syncBuffer is a log sink tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ?access_token= is never logged, not even at debug level.
func TestAccessTokenIsNeverLogged(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := newTestNode(t, nodeOptions{server: Config{Tokens: verifier(t, auth.Options{}), Logger: log}})
	good := token(t, "alice", nil, nil)
	bad := token(t, "alice", nil, func(c *auth.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) })
	resp := n.get(q("users/alice") + "&access_token=" + good)
	if resp.StatusCode != 200 {
		t.Fatalf("%d", resp.StatusCode)
	}
	n.publish("users/alice", "", "hello")
	readUntil(t, resp.Body, "hello")
	resp.Body.Close()
	wantError(t, n.get(q("users/alice")+"&access_token="+bad), 401, "token_expired")
	wantError(t, n.get(q("users/bob")+"&access_token="+good), 403, "forbidden_topic")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.hub.Shutdown(ctx) // streams end and log
	for _, secret := range []string{good, bad, strings.Split(good, ".")[2]} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("token in the logs:\n%s", logs.String())
		}
	}
}
