package auth

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MintOptions are the claims of a minted token besides its grants.
type MintOptions struct {
	Subject  string
	TTL      time.Duration // [1h]
	Audience string
	Issuer   string
	Now      time.Time // [time.Now()]
}

// Mint signs an HS256 token for o.Subject with grants, as `herald token` does
// for development and the demo. Production tokens come from the application's
// own issuer.
func Mint(secret []byte, g Grants, o MintOptions) (string, error) {
	if len(secret) < MinSecretLen {
		return "", errors.New("auth: the JWT secret must be at least 32 bytes")
	}
	if o.Subject == "" {
		return "", errors.New("auth: a token needs a subject")
	}
	if _, err := ParsePatterns(g.Subscribe); err != nil {
		return "", err
	}
	if _, err := ParsePatterns(g.Publish); err != nil {
		return "", err
	}
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   o.Subject,
		Issuer:    o.Issuer,
		IssuedAt:  jwt.NewNumericDate(o.Now),
		ExpiresAt: jwt.NewNumericDate(o.Now.Add(o.TTL)),
	}}
	if o.Audience != "" {
		c.Audience = jwt.ClaimStrings{o.Audience}
	}
	if len(g.Subscribe)+len(g.Publish) > 0 {
		c.Herald = &g
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
