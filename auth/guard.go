package auth

import (
	"context"
	"fmt"
)

// Guard turns a request's credential into a Principal: a publish key, a token,
// or nothing at all (anonymous).
type Guard struct {
	verifier  *Verifier
	keys      *KeyRing
	anonymous *Principal
}

// everything is what anonymous clients may read when no JWT key is configured
// (development): every topic but the private ones and Herald's own, since **
// reaches neither.
var everything = []Pattern{MustParsePattern("**")}

// NewGuard returns a guard. With a nil verifier (no JWT key configured) tokens
// are refused and anonymous clients may subscribe to every non-private topic;
// with one, anonymous clients may subscribe to the anonymous patterns only.
func NewGuard(v *Verifier, keys *KeyRing, anonymous []Pattern) (*Guard, error) {
	if err := CheckAnonymous(anonymous); err != nil {
		return nil, err
	}
	if v == nil {
		anonymous = everything
	}
	return &Guard{verifier: v, keys: keys, anonymous: AnonymousPrincipal(anonymous)}, nil
}

// CheckAnonymous refuses anonymous patterns that could open private topics or
// that use {sub}, which an anonymous client does not have.
func CheckAnonymous(ps []Pattern) error {
	for _, p := range ps {
		if p.NamesPrivate() {
			return fmt.Errorf("anonymous pattern %q: users/** is private and cannot be opened to anonymous clients", p)
		}
		if p.HasSubject() {
			return fmt.Errorf("anonymous pattern %q: {sub} needs a token", p)
		}
	}
	return nil
}

// Anonymous is the principal of a request without a credential.
func (g *Guard) Anonymous() *Principal { return g.anonymous }

// TokensAccepted reports whether a JWT key is configured.
func (g *Guard) TokensAccepted() bool { return g.verifier != nil }

// Key returns the service principal of a publish key.
func (g *Guard) Key(presented string) (*Principal, bool) {
	name, ok := g.keys.Lookup(presented)
	if !ok {
		return nil, false
	}
	return ServicePrincipal(name), true
}

// Token verifies a JWT. The error is an *Error.
func (g *Guard) Token(ctx context.Context, raw string) (*Principal, error) {
	if g.verifier == nil {
		return nil, refuse(ReasonNotAccepted, "no JWT key is configured on this server, so tokens cannot be verified")
	}
	return g.verifier.Verify(ctx, raw)
}

// Authenticate returns the principal of credential: a publish key, else a
// token. An empty credential is anonymous.
func (g *Guard) Authenticate(ctx context.Context, credential string) (*Principal, error) {
	if credential == "" {
		return g.anonymous, nil
	}
	if p, ok := g.Key(credential); ok {
		return p, nil
	}
	return g.Token(ctx, credential)
}
