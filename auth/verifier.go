// Package auth decides who a request is and what it may do: JWT verification
// (HS256, RS256, ES256, EdDSA; keys from a secret, PEM files or a JWKS URL),
// static publish keys, and topic patterns with the rule that users/{id} is
// private to user id and herald/** is readable only by patterns that name it.
package auth

import (
	"context"
	"crypto"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Options configures a Verifier. At least one of Secret, PublicKeys and JWKSURL
// is needed.
type Options struct {
	Secret     []byte             // HS256 secret, at least MinSecretLen bytes
	PublicKeys []crypto.PublicKey // RSA (RS256), EC P-256 (ES256), Ed25519 (EdDSA)
	JWKSURL    string             // fetched at start and refreshed in the background

	Audience string // when set, aud must hold it
	Issuer   string // when set, iss must equal it

	Leeway         time.Duration // clock skew allowed on exp, nbf, iat [30s]; negative: none
	JWKSRefresh    time.Duration // background refresh interval [5m]
	JWKSMinRefresh time.Duration // least time between fetches caused by unknown kids [10s]
	HTTPClient     *http.Client  // for the JWKS [a client with a 10s timeout]
	Logger         *slog.Logger
	Now            func() time.Time // for tests [time.Now]
}

// Claims is a Herald token's payload: registered claims plus the grants.
type Claims struct {
	jwt.RegisteredClaims
	Herald *Grants `json:"herald,omitempty"`
}

// Grants are the topic patterns a token may subscribe and publish to.
type Grants struct {
	Subscribe []string `json:"subscribe,omitempty"`
	Publish   []string `json:"publish,omitempty"`
}

// Verifier checks tokens. Close it to stop its JWKS refresher.
type Verifier struct {
	static []verifyKey
	jwks   *jwks
	parser *jwt.Parser
	leeway time.Duration
}

// NewVerifier returns a verifier for o's keys. With a JWKS URL it fetches the
// set once before returning (a failure is logged and retried in the
// background) and owns a goroutine until Close.
func NewVerifier(o Options) (*Verifier, error) {
	switch {
	case o.Leeway == 0:
		o.Leeway = 30 * time.Second
	case o.Leeway < 0:
		o.Leeway = 0
	}
	if o.JWKSRefresh <= 0 {
		o.JWKSRefresh = 5 * time.Minute
	}
	if o.JWKSMinRefresh <= 0 {
		o.JWKSMinRefresh = 10 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	v := &Verifier{}
	if o.Secret != nil {
		if len(o.Secret) < MinSecretLen {
			return nil, errors.New("auth: the JWT secret must be at least 32 bytes")
		}
		v.static = append(v.static, verifyKey{alg: algHS256, key: o.Secret})
	}
	for _, pub := range o.PublicKeys {
		alg, key, err := algFor(pub)
		if err != nil {
			return nil, err
		}
		v.static = append(v.static, verifyKey{alg: alg, key: key})
	}
	if len(v.static) == 0 && o.JWKSURL == "" {
		return nil, errors.New("auth: no JWT key: set a secret, a public key or a JWKS URL")
	}
	opts := []jwt.ParserOption{
		jwt.WithLeeway(o.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(o.Now),
		jwt.WithStrictDecoding(),
	}
	if o.Audience != "" {
		opts = append(opts, jwt.WithAudience(o.Audience))
	}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	v.leeway = o.Leeway
	if o.JWKSURL != "" {
		v.jwks = newJWKS(o.JWKSURL, &o)
	}
	return v, nil
}

// Close stops the JWKS refresher, if any.
func (v *Verifier) Close() error {
	if v.jwks != nil {
		v.jwks.close()
	}
	return nil
}

// MaxTokenLen bounds a token; longer ones are refused before any parsing.
const MaxTokenLen = 8 << 10

// Verify checks raw and returns its principal, or an *Error with the reason.
// ctx bounds a JWKS refresh caused by an unknown kid.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	if len(raw) > MaxTokenLen {
		return nil, refuse(ReasonMalformed, "token longer than %d bytes", MaxTokenLen)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, refuse(ReasonMalformed, "a token is three dot-separated parts")
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		return v.keysFor(ctx, t)
	})
	if err != nil {
		return nil, classify(err)
	}
	if c.Subject == "" {
		return nil, refuse(ReasonBadClaims, "token has no sub")
	}
	var sub, pub []Pattern
	if c.Herald != nil {
		if sub, err = ParsePatterns(c.Herald.Subscribe); err == nil {
			pub, err = ParsePatterns(c.Herald.Publish)
		}
		if err != nil {
			return nil, refuse(ReasonBadClaims, "herald claim: %v", err)
		}
	}
	// The token is accepted until exp plus the leeway; a stream opened with it
	// lasts as long, so a client is not cut off and let back in over and over.
	return UserPrincipal(c.Subject, sub, pub, c.ExpiresAt.Time.Add(v.leeway)), nil
}

// keysFor picks the keys that may have signed t: only keys of t's algorithm,
// and of the JWKS only the one its kid names.
func (v *Verifier) keysFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	switch alg {
	case algHS256, algRS256, algES256, algEdDSA:
	default:
		return nil, errAlgNotAllowed
	}
	var set jwt.VerificationKeySet
	for _, k := range v.static {
		if k.alg == alg {
			set.Keys = append(set.Keys, k.key)
		}
	}
	kid, _ := t.Header["kid"].(string)
	if v.jwks != nil {
		keys, fetched := v.jwks.lookup(kid, alg)
		if len(keys) == 0 && (kid != "" || !fetched) {
			// A key the issuer just added, or a set not fetched yet.
			_ = v.jwks.refresh(ctx, false)
			keys, fetched = v.jwks.lookup(kid, alg)
		}
		for _, k := range keys {
			set.Keys = append(set.Keys, k.key)
		}
		if len(set.Keys) == 0 {
			switch {
			case !fetched:
				return nil, errKeysUnavailable
			case kid != "":
				return nil, errUnknownKid
			}
		}
	}
	if len(set.Keys) == 0 {
		return nil, errAlgNotAllowed
	}
	return set, nil
}
