package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/herald-hub/herald/auth"
)

// DefaultTokenCookie is the cookie a token is read from when no other is set.
const DefaultTokenCookie = "herald_token"

// accessTokenParam is the query parameter for clients that can set neither a
// header nor a cookie. It lands in proxy logs; Herald strips it from the
// request before anything else sees the URL.
const accessTokenParam = "access_token"

// streamCredential finds the credential of a stream request: the Authorization
// header, else the token cookie, else ?access_token=. Empty means anonymous.
func (s *Server) streamCredential(r *http.Request) (string, *apiError) {
	q := r.URL.Query()
	if q.Has(accessTokenParam) {
		defer scrubAccessToken(r, q)
	}
	if h := r.Header.Get("Authorization"); h != "" {
		return bearer(h)
	}
	if c, err := r.Cookie(s.cfg.TokenCookie); err == nil && c.Value != "" {
		return c.Value, nil
	}
	return q.Get(accessTokenParam), nil
}

// scrubAccessToken removes the token from r's URL, so no log line, error
// message or handler further down can repeat it.
func scrubAccessToken(r *http.Request, q url.Values) {
	q.Del(accessTokenParam)
	r.URL.RawQuery = q.Encode()
	r.RequestURI = r.URL.RequestURI()
}

// publishCredential is the Authorization header alone: a cookie would let any
// web page make a visitor's browser publish (CSRF), and a key in a URL would
// end up in logs.
func publishCredential(r *http.Request) (string, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", unauthorized("missing_credentials", "publishing needs Authorization: Bearer <publish key or token>")
	}
	return bearer(h)
}

func bearer(h string) (string, *apiError) {
	scheme, cred, ok := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return "", unauthorized("invalid_credentials", "Authorization must be: Bearer <publish key or token>")
	}
	return cred, nil
}

// authenticate turns a credential into a principal: a publish key, a token, or
// anonymous when empty.
func (s *Server) authenticate(r *http.Request, cred string) (*auth.Principal, *apiError) {
	p, err := s.guard.Authenticate(r.Context(), cred)
	if err != nil {
		return nil, tokenError(err)
	}
	return p, nil
}

// authenticatePublisher is authenticate for POST /v1/publish, where a wrong
// publish key keeps its own answer rather than being read as a broken token.
func (s *Server) authenticatePublisher(r *http.Request, cred string) (*auth.Principal, *apiError) {
	if p, ok := s.guard.Key(cred); ok {
		return p, nil
	}
	if !strings.Contains(cred, ".") { // publish keys have no dots; tokens do
		return nil, unauthorized("invalid_credentials", "the publish key is not valid")
	}
	p, err := s.guard.Token(r.Context(), cred)
	if err != nil {
		return nil, tokenError(err)
	}
	return p, nil
}

func tokenError(err error) *apiError {
	var te *auth.Error
	if errors.As(err, &te) {
		return unauthorized(string(te.Reason), "token refused: "+te.Err.Error())
	}
	return unauthorized("invalid_credentials", "the credential is not valid")
}

func unauthorized(code, message string) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: code, message: message}
}

// forbidden refuses a topic to a credential that does not grant it.
func forbidden(action, topic string) *apiError {
	return &apiError{status: http.StatusForbidden, code: "forbidden_topic", message: fmt.Sprintf("not allowed to %s topic %s", action, topic)}
}
