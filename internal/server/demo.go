package server

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"github.com/herald-hub/herald/auth"
)

// The demo (Config.Demo): the demo page at /, and POST /v1/demo/token, which
// mints a token for whoever asks. The tokens are signed with a key made at
// start and known to this process only, so they open nothing once it stops,
// and a server with real JWT keys never runs the demo.

const (
	// demoTokenTTL is how long a demo token lasts.
	demoTokenTTL = time.Hour
	// maxDemoUserLen bounds a demo user name.
	maxDemoUserLen = 32
	// demoTokenRate and demoTokenBurst bound the tokens minted per client
	// address: a page asks once per sign-in and once an hour after.
	demoTokenRate  = 2
	demoTokenBurst = 60
	// maxDemoBody bounds the body of POST /v1/demo/token.
	maxDemoBody = 1 << 10
)

// demoGrants is what a demo token may do besides reading users/{sub}: read
// the rooms (and so their presence/rooms/*), post to a room, and send
// notifications to any demo user (POST /v1/notifications needs publish on
// users/{to}).
var demoGrants = auth.Grants{
	Subscribe: []string{"rooms/*"},
	Publish:   []string{"rooms/*", "users/*"},
}

type demoMode struct {
	secret []byte
	page   *page
	rate   *rateLimiter
}

// newDemo makes the demo's signing key and the verifier of its tokens.
func newDemo(p *page, now func() time.Time) (*demoMode, *auth.Verifier, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, err
	}
	v, err := auth.NewVerifier(auth.Options{Secret: secret, Now: now})
	if err != nil {
		return nil, nil, err
	}
	return &demoMode{secret: secret, page: p, rate: newRateLimiter(demoTokenRate, demoTokenBurst, now)}, v, nil
}

type demoTokenAnswer struct {
	Token     string `json:"token"`
	User      string `json:"user"`
	ExpiresAt string `json:"expires_at"`
}

// validDemoUser accepts 1 to 32 bytes of a-z, 0-9, '_' and '-'.
func validDemoUser(u string) bool {
	if len(u) == 0 || len(u) > maxDemoUserLen {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// handleDemoToken serves POST /v1/demo/token: {"user":"alice"} gets a token
// for alice.
func (s *Server) handleDemoToken(w http.ResponseWriter, r *http.Request) {
	d := s.demo
	if ok, wait := d.rate.allow(addressKey(s.clientIP(r))); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		s.refuse(w, &apiError{http.StatusTooManyRequests, "too_many_demo_tokens", fmt.Sprintf("too many demo tokens for this address; retry in %s", wait.Round(time.Millisecond))})
		return
	}
	var in struct {
		User string `json:"user"`
	}
	if !s.decodeJSONBody(w, r, maxDemoBody, &in, `{"user":"alice"}`) {
		return
	}
	if !validDemoUser(in.User) {
		s.refuse(w, badRequest("invalid_user", "user %q: want 1 to %d characters of a-z, 0-9, _ and -", in.User, maxDemoUserLen))
		return
	}
	now := s.cfg.now()
	tok, err := auth.Mint(d.secret, demoGrants, auth.MintOptions{Subject: in.User, TTL: demoTokenTTL, Now: now})
	if err != nil { // the grants are constants and the user was checked
		s.log.Error("demo token not minted", "err", err)
		s.refuse(w, &apiError{http.StatusInternalServerError, "internal", "the token could not be minted"})
		return
	}
	writeJSON(w, http.StatusOK, demoTokenAnswer{Token: tok, User: in.User, ExpiresAt: now.Add(demoTokenTTL).UTC().Format(time.RFC3339)})
}
