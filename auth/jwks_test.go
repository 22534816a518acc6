package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// issuer is a JWKS endpoint whose keys a test changes.
type issuer struct {
	mu      sync.Mutex
	keys    map[string]crypto.PublicKey
	fetches atomic.Int32
	srv     *httptest.Server
}

func newIssuer(t *testing.T) *issuer {
	is := &issuer{keys: map[string]crypto.PublicKey{}}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		var set struct {
			Keys []map[string]string `json:"keys"`
		}
		for kid, k := range is.keys {
			set.Keys = append(set.Keys, toJWK(kid, k))
		}
		// Keys Herald does not use are skipped, not fatal.
		set.Keys = append(set.Keys, map[string]string{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"})
		set.Keys = append(set.Keys, map[string]string{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"})
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) set(kid string, k crypto.PublicKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if k == nil {
		delete(is.keys, kid)
	} else {
		is.keys[kid] = k
	}
}

func toJWK(kid string, k crypto.PublicKey) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := k.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, _ := k.Bytes()
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)}
	}
	panic("key type")
}

// fakeClock is a settable clock for the refresh rate limit and token times.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestJWKSRotation(t *testing.T) {
	is := newIssuer(t)
	keyA, keyB, keyC := testEC(t), testEd(t), testRSA(t)
	is.set("a", &keyA.PublicKey)
	clk := &fakeClock{t: now}
	v := newVerifier(t, Options{JWKSURL: is.srv.URL, JWKSRefresh: 20 * time.Millisecond, JWKSMinRefresh: time.Minute, Now: clk.Now})
	ctx := context.Background()

	tokA := sign(t, jwt.SigningMethodES256, keyA, "a", claims(nil))
	if _, err := v.Verify(ctx, tokA); err != nil {
		t.Fatalf("key a: %v", err)
	}
	// A token signed by a listed key but naming another kid fails.
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodES256, testEC(t), "a", claims(nil))); reasonOf(err) != ReasonBadSignature {
		t.Fatalf("wrong key under kid a: %v", err)
	}

	// A key added at the issuer is accepted at once: the unknown kid causes a
	// fetch, without waiting for the background refresh.
	clk.Add(2 * time.Minute)
	is.set("b", keyB.Public())
	is.set("c", &keyC.PublicKey)
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodEdDSA, keyB, "b", claims(nil))); err != nil {
		t.Fatalf("added key b: %v", err)
	}
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, keyC, "c", claims(nil))); err != nil {
		t.Fatalf("added key c: %v", err)
	}

	// Unknown kids cause at most one fetch per JWKSMinRefresh, however many arrive.
	clk.Add(2 * time.Minute)
	before := is.fetches.Load()
	for range 50 {
		_, err := v.Verify(ctx, sign(t, jwt.SigningMethodES256, keyA, "forged", claims(nil)))
		if reasonOf(err) != ReasonUnknownKid {
			t.Fatalf("forged kid: %v", err)
		}
	}
	if n := is.fetches.Load() - before; n > 1+int32(time.Second/(20*time.Millisecond)) {
		t.Fatalf("%d fetches for 50 unknown kids", n)
	}

	// A key removed at the issuer stops working after the background refresh.
	is.set("a", nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(ctx, tokA)
		if reasonOf(err) == ReasonUnknownKid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("removed key still accepted: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The others still work.
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodEdDSA, keyB, "b", claims(nil))); err != nil {
		t.Fatalf("key b after removing a: %v", err)
	}
}

func TestJWKSRateLimitsUnknownKidFetches(t *testing.T) {
	is := newIssuer(t)
	k := testEC(t)
	is.set("a", &k.PublicKey)
	clk := &fakeClock{t: now}
	v := newVerifier(t, Options{JWKSURL: is.srv.URL, JWKSRefresh: time.Hour, JWKSMinRefresh: 10 * time.Second, Now: clk.Now})
	if n := is.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	forged := sign(t, jwt.SigningMethodES256, k, "forged", claims(nil))
	for range 20 {
		v.Verify(context.Background(), forged)
	}
	if n := is.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches within the minimum interval, want 1", n)
	}
	clk.Add(11 * time.Second)
	for range 20 {
		v.Verify(context.Background(), forged)
	}
	if n := is.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after the interval, want 2", n)
	}
}

func TestJWKSUnreachableAtStart(t *testing.T) {
	is := newIssuer(t)
	url := is.srv.URL
	is.srv.Close()
	v := newVerifier(t, Options{JWKSURL: url, JWKSRefresh: time.Hour})
	_, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodEdDSA, testEd(t), "a", claims(nil)))
	if reasonOf(err) != ReasonKeysUnavailable {
		t.Fatalf("err %v", err)
	}
	if st, ok := v.JWKSStatus(); !ok || st.Failures < 1 || st.Keys != 0 || !st.LastSuccess.IsZero() {
		t.Fatalf("status %+v", st)
	}
}
