package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxJWKSSize bounds the JWKS document read from the network.
const maxJWKSSize = 1 << 20

// jwks holds the keys of a JWKS URL. A background refresher fetches them every
// interval; a token with an unknown kid triggers one more fetch, at most once per
// minInterval, so a key added at the issuer works at once and a flood of forged
// kids cannot turn Herald into a load generator against the issuer.
type jwks struct {
	url         string
	client      *http.Client
	interval    time.Duration
	minInterval time.Duration
	log         *slog.Logger
	now         func() time.Time

	mu      sync.RWMutex
	keys    []verifyKey
	fetched bool // at least one fetch succeeded

	refreshMu   sync.Mutex // one fetch at a time; waiters share its result
	lastAttempt time.Time
	lastSuccess time.Time // under mu
	failures    atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
}

func newJWKS(url string, o *Options) *jwks {
	ctx, cancel := context.WithCancel(context.Background())
	j := &jwks{
		url:         url,
		client:      o.HTTPClient,
		interval:    o.JWKSRefresh,
		minInterval: o.JWKSMinRefresh,
		log:         o.Logger,
		now:         o.Now,
		cancel:      cancel,
		done:        make(chan struct{}),
	}
	// The first fetch happens before the verifier is returned, so a node
	// accepts tokens from its first request when the issuer is up; the
	// refresher keeps trying when it is not.
	if err := j.refresh(ctx, true); err != nil {
		j.log.Warn("JWKS not fetched; retrying in the background", "url", url, "err", err)
	}
	go j.run(ctx)
	return j
}

func (j *jwks) run(ctx context.Context) {
	defer close(j.done)
	t := time.NewTicker(j.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := j.refresh(ctx, true); err != nil && ctx.Err() == nil {
				j.log.Warn("JWKS refresh failed; keeping the previous keys", "url", j.url, "err", err)
			}
		}
	}
}

func (j *jwks) close() {
	j.cancel()
	<-j.done
}

// lookup returns the keys for kid and alg; every key of alg when kid is empty.
func (j *jwks) lookup(kid, alg string) (keys []verifyKey, fetched bool) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	for _, k := range j.keys {
		if k.alg == alg && (kid == "" || k.kid == kid) {
			keys = append(keys, k)
		}
	}
	return keys, j.fetched
}

// refresh fetches the key set, unless forced is false and the last attempt
// was less than minInterval ago.
func (j *jwks) refresh(ctx context.Context, forced bool) error {
	j.refreshMu.Lock()
	defer j.refreshMu.Unlock()
	now := j.now()
	if !forced && !j.lastAttempt.IsZero() && now.Sub(j.lastAttempt) < j.minInterval {
		return nil
	}
	j.lastAttempt = now
	keys, err := j.fetch(ctx)
	if err != nil {
		if ctx.Err() == nil {
			j.failures.Add(1)
		}
		return err
	}
	j.mu.Lock()
	j.keys, j.fetched, j.lastSuccess = keys, true, now
	j.mu.Unlock()
	j.log.Debug("JWKS fetched", "url", j.url, "keys", len(keys))
	return nil
}

func (j *jwks) fetch(ctx context.Context) ([]verifyKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", j.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSSize)
	}
	return parseJWKS(body, j.log)
}

// jwk is one JSON Web Key (RFC 7517) as far as Herald reads it.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads the signature keys of a JWKS. Keys Herald cannot use
// (encryption keys, other curves, symmetric keys) are skipped, not fatal: an
// issuer's set often holds more than Herald needs.
func parseJWKS(body []byte, log *slog.Logger) ([]verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var out []verifyKey
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			log.Warn("JWKS key skipped", "index", i, "err", err)
			continue
		}
		vk, err := k.verifyKey()
		if err != nil {
			log.Debug("JWKS key skipped", "index", i, "kid", k.Kid, "err", err)
			continue
		}
		out = append(out, vk)
	}
	return out, nil
}

func (k jwk) verifyKey() (verifyKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return verifyKey{}, fmt.Errorf("use %q is not sig", k.Use)
	}
	var pub any
	switch k.Kty {
	case "RSA":
		n, err1 := b64int(k.N)
		e, err2 := b64int(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return verifyKey{}, err
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return verifyKey{}, errors.New("RSA exponent out of range")
		}
		pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		if k.Crv != "P-256" {
			return verifyKey{}, fmt.Errorf("curve %q is not P-256", k.Crv)
		}
		x, err1 := b64fixed(k.X, 32)
		y, err2 := b64fixed(k.Y, 32)
		if err := errors.Join(err1, err2); err != nil {
			return verifyKey{}, err
		}
		// Parsing the uncompressed point checks that it is on the curve.
		ec, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return verifyKey{}, err
		}
		pub = ec
	case "OKP":
		if k.Crv != "Ed25519" {
			return verifyKey{}, fmt.Errorf("curve %q is not Ed25519", k.Crv)
		}
		x, err := b64fixed(k.X, ed25519.PublicKeySize)
		if err != nil {
			return verifyKey{}, err
		}
		pub = ed25519.PublicKey(x)
	default:
		return verifyKey{}, fmt.Errorf("key type %q not used for signatures Herald accepts", k.Kty)
	}
	alg, key, err := algFor(pub)
	if err != nil {
		return verifyKey{}, err
	}
	if k.Alg != "" && k.Alg != alg {
		return verifyKey{}, fmt.Errorf("alg %q does not fit a %s key", k.Alg, k.Kty)
	}
	return verifyKey{kid: k.Kid, alg: alg, key: key}, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, errors.New("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}

func b64fixed(s string, n int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("want %d bytes of base64url", n)
	}
	return b, nil
}

// JWKSStatus is the state of a verifier's key set, for metrics.
type JWKSStatus struct {
	Keys        int       // usable keys in the last set fetched
	LastSuccess time.Time // zero before the first successful fetch
	Failures    uint64    // fetches that failed
}

// JWKSStatus reports the key set's state; ok is false without a JWKS URL.
func (v *Verifier) JWKSStatus() (st JWKSStatus, ok bool) {
	if v == nil || v.jwks == nil {
		return JWKSStatus{}, false
	}
	j := v.jwks
	j.mu.RLock()
	st.Keys, st.LastSuccess = len(j.keys), j.lastSuccess
	j.mu.RUnlock()
	st.Failures = j.failures.Load()
	return st, true
}
