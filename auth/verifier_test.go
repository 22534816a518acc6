package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSA is generated once: RSA key generation is slow.
func testRSA(t testing.TB) *rsa.PrivateKey {
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey
}

func testEC(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testEd(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// claims are valid claims at now for subject alice.
func claims(mod func(*Claims)) Claims {
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   "alice",
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}
	if mod != nil {
		mod(&c)
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t testing.TB, o Options) *Verifier {
	t.Helper()
	if o.Now == nil {
		o.Now = clock
	}
	v, err := NewVerifier(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func reasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func TestVerifyAcceptsEveryAlgorithm(t *testing.T) {
	rk, ek, dk := testRSA(t), testEC(t), testEd(t)
	v := newVerifier(t, Options{Secret: testSecret, PublicKeys: []crypto.PublicKey{&rk.PublicKey, &ek.PublicKey, dk.Public()}})
	c := claims(func(c *Claims) { c.Herald = &Grants{Subscribe: []string{"rooms/*"}, Publish: []string{"rooms/{sub}"}} })
	for name, tok := range map[string]string{
		"HS256": sign(t, jwt.SigningMethodHS256, testSecret, "", c),
		"RS256": sign(t, jwt.SigningMethodRS256, rk, "", c),
		"ES256": sign(t, jwt.SigningMethodES256, ek, "", c),
		"EdDSA": sign(t, jwt.SigningMethodEdDSA, dk, "", c),
	} {
		p, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Kind != User || p.Name != "alice" || !p.CanSubscribe("rooms/7") || !p.CanPublish("rooms/alice") || p.CanPublish("rooms/bob") {
			t.Fatalf("%s: principal %+v", name, p)
		}
	}
}

func TestVerifyRefusesBadTokensWithReason(t *testing.T) {
	rk := testRSA(t)
	other := testEC(t)
	v := newVerifier(t, Options{Secret: testSecret, PublicKeys: []crypto.PublicKey{&rk.PublicKey}, Audience: "herald", Issuer: "https://id.example"})
	good := func(c *Claims) {
		c.Audience = jwt.ClaimStrings{"herald"}
		c.Issuer = "https://id.example"
	}
	with := func(mod func(*Claims)) Claims {
		return claims(func(c *Claims) { good(c); mod(c) })
	}
	valid := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(good))
	if _, err := v.Verify(context.Background(), valid); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	none := func(c Claims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// An RS256 token re-signed with HS256 using the RSA public key as the
	// secret: the classic algorithm confusion.
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rk.PublicKey))})
	v2 := newVerifier(t, Options{PublicKeys: []crypto.PublicKey{&rk.PublicKey}})
	confused := sign(t, jwt.SigningMethodHS256, pubPEM, "", claims(nil))
	if _, err := v2.Verify(context.Background(), confused); reasonOf(err) != ReasonAlgNotAllowed {
		t.Errorf("alg confusion: %v", err)
	}

	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		body, _ := base64.RawURLEncoding.DecodeString(parts[1])
		body = []byte(strings.Replace(string(body), "alice", "bobby", 1))
		parts[1] = base64.RawURLEncoding.EncodeToString(body)
		return strings.Join(parts, ".")
	}
	cases := []struct {
		name  string
		token string
		want  Reason
	}{
		{"expired", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) })), ReasonExpired},
		{"expired within leeway is fine", "", ""},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) })), ReasonNotYetValid},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Minute)) })), ReasonIssuedInFuture},
		{"no exp", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.ExpiresAt = nil })), ReasonBadClaims},
		{"no sub", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.Subject = "" })), ReasonBadClaims},
		{"bad pattern", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.Herald = &Grants{Subscribe: []string{"a/**/b"}} })), ReasonBadClaims},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })), ReasonBadAudience},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) { c.Issuer = "https://evil.example" })), ReasonBadIssuer},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), "", claims(good)), ReasonBadSignature},
		{"wrong RSA key", sign(t, jwt.SigningMethodRS256, must(rsa.GenerateKey(rand.Reader, 2048)), "", claims(good)), ReasonBadSignature},
		{"tampered payload", tamper(valid), ReasonBadSignature},
		{"alg with no key", sign(t, jwt.SigningMethodES256, other, "", claims(good)), ReasonAlgNotAllowed},
		{"alg none", none(claims(good)), ReasonAlgNotAllowed},
		{"alg none with a signature", none(claims(good)) + "c2ln", ReasonAlgNotAllowed},
		{"HS512", sign(t, jwt.SigningMethodHS512, testSecret, "", claims(good)), ReasonAlgNotAllowed},
		{"unknown alg", `eyJhbGciOiJYWVoiLCJ0eXAiOiJKV1QifQ.` + strings.Split(valid, ".")[1] + ".c2ln", ReasonAlgNotAllowed},
		{"truncated signature", valid[:len(valid)-5], ReasonBadSignature},
		{"truncated payload", valid[:strings.LastIndex(valid, ".")-3] + valid[strings.LastIndex(valid, "."):], ReasonMalformed},
		{"truncated to two parts", valid[:strings.LastIndex(valid, ".")], ReasonMalformed},
		{"empty", "", ReasonMalformed},
		{"garbage", "not a token", ReasonMalformed},
		{"dots only", "..", ReasonMalformed},
		{"padded base64", strings.Replace(valid, ".", "=.", 1), ReasonMalformed},
		{"huge", strings.Repeat("a", MaxTokenLen) + "..", ReasonMalformed},
	}
	for _, c := range cases {
		if c.token == "" && c.want == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), c.token)
			if got := reasonOf(err); got != c.want {
				t.Fatalf("reason %q (%v, principal %v), want %q", got, err, p, c.want)
			}
		})
	}
	// Leeway: 30 s of clock skew is tolerated.
	skewed := sign(t, jwt.SigningMethodHS256, testSecret, "", with(func(c *Claims) {
		c.ExpiresAt = jwt.NewNumericDate(now.Add(-10 * time.Second))
		c.NotBefore = jwt.NewNumericDate(now.Add(10 * time.Second))
		c.IssuedAt = jwt.NewNumericDate(now.Add(10 * time.Second))
	}))
	if _, err := v.Verify(context.Background(), skewed); err != nil {
		t.Fatalf("token within leeway refused: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestNewVerifierRefusesWeakKeys(t *testing.T) {
	if _, err := NewVerifier(Options{Secret: []byte("short")}); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := NewVerifier(Options{}); err == nil {
		t.Fatal("no key accepted")
	}
	small := must(rsa.GenerateKey(rand.Reader, 1024))
	if _, err := NewVerifier(Options{PublicKeys: []crypto.PublicKey{&small.PublicKey}}); err == nil {
		t.Fatal("1024-bit RSA key accepted")
	}
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	if _, err := NewVerifier(Options{PublicKeys: []crypto.PublicKey{&p384.PublicKey}}); err == nil {
		t.Fatal("P-384 key accepted for ES256")
	}
}

func TestParsePublicKeys(t *testing.T) {
	rk, ek, dk := testRSA(t), testEC(t), testEd(t)
	var buf []byte
	buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&ek.PublicKey))})...)
	buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rk.PublicKey)})...)
	buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(dk.Public()))})...)
	keys, err := ParsePublicKeys(buf)
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(ek))})
	if _, err := ParsePublicKeys(priv); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf("private key: %v", err)
	}
	if _, err := ParsePublicKeys([]byte("nothing")); err == nil {
		t.Fatal("no key accepted")
	}
}

func TestMintedTokenVerifies(t *testing.T) {
	tok, err := Mint(testSecret, Grants{Subscribe: []string{"rooms/*"}}, MintOptions{Subject: "42", Audience: "herald", Now: now, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, Options{Secret: testSecret, Audience: "herald"})
	p, err := v.Verify(context.Background(), tok)
	if err != nil || p.Name != "42" || !p.CanSubscribe("users/42") || !p.CanSubscribe("rooms/1") || p.CanSubscribe("users/43") {
		t.Fatalf("%+v %v", p, err)
	}
	if !p.Expires.Equal(now.Add(time.Minute + 30*time.Second)) { // exp + leeway
		t.Fatalf("expires %v", p.Expires)
	}
	if _, err := Mint([]byte("short"), Grants{}, MintOptions{Subject: "x"}); err == nil {
		t.Fatal("short secret minted")
	}
}

func BenchmarkVerify(b *testing.B) {
	rk, ek, dk := testRSA(b), testEC(b), testEd(b)
	c := claims(func(c *Claims) { c.Herald = &Grants{Subscribe: []string{"rooms/*", "users/{sub}/**"}} })
	for _, bc := range []struct {
		name string
		m    jwt.SigningMethod
		sk   any
		pk   any
	}{
		{"HS256", jwt.SigningMethodHS256, testSecret, nil},
		{"RS256", jwt.SigningMethodRS256, rk, &rk.PublicKey},
		{"ES256", jwt.SigningMethodES256, ek, &ek.PublicKey},
		{"EdDSA", jwt.SigningMethodEdDSA, dk, dk.Public()},
	} {
		o := Options{Now: clock}
		if bc.pk == nil {
			o.Secret = testSecret
		} else {
			o.PublicKeys = []crypto.PublicKey{bc.pk}
		}
		v := newVerifier(b, o)
		tok := sign(b, bc.m, bc.sk, "", c)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignatureAlone is the bare signature check of each algorithm, the
// floor under BenchmarkVerify: the difference is parsing, claims and lookup.
func BenchmarkSignatureAlone(b *testing.B) {
	rk, ek, dk := testRSA(b), testEC(b), testEd(b)
	c := claims(func(c *Claims) { c.Herald = &Grants{Subscribe: []string{"rooms/*", "users/{sub}/**"}} })
	for _, bc := range []struct {
		name string
		m    jwt.SigningMethod
		sk   any
		pk   any
	}{
		{"HS256", jwt.SigningMethodHS256, testSecret, testSecret},
		{"RS256", jwt.SigningMethodRS256, rk, &rk.PublicKey},
		{"ES256", jwt.SigningMethodES256, ek, &ek.PublicKey},
		{"EdDSA", jwt.SigningMethodEdDSA, dk, dk.Public()},
	} {
		tok := sign(b, bc.m, bc.sk, "", c)
		i := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := bc.m.Verify(tok[:i], sig, bc.pk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzVerify: any input is refused with a reason or accepted, never a panic,
// and nothing but a token signed with the secret is accepted.
func FuzzVerify(f *testing.F) {
	good := sign(f, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("..")
	f.Add("a.b.c")
	v, err := NewVerifier(Options{Secret: testSecret, Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(context.Background(), raw)
		if err != nil {
			if reasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if raw != good && p.Name != "alice" {
			t.Fatalf("accepted %q as %+v", raw, p)
		}
	})
}
