package server

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-hub/herald/auth"
)

// connLimiter counts open streams per key (an IP or a user) and refuses one
// more than max. Keys are deleted at zero, so the map holds only keys with
// open streams.
type connLimiter struct {
	max int // 0: no limit
	mu  sync.Mutex
	n   map[string]int
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: max, n: map[string]int{}}
}

// acquire takes a slot for key; release gives it back.
func (l *connLimiter) acquire(key string) bool {
	if l.max <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key] >= l.max {
		return false
	}
	l.n[key]++
	return true
}

func (l *connLimiter) release(key string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[key]--; l.n[key] <= 0 {
		delete(l.n, key)
	}
}

// rateLimiter is a token bucket per key: burst requests at once, then rate per
// second. A bucket that has refilled is the same as no bucket, so full ones are
// swept when the map grows: idle credentials cost no memory.
type rateLimiter struct {
	rate  float64 // tokens per second; 0: no limit
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	sweepSize int
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	if burst < 1 {
		burst = max(1, int(math.Ceil(rate)))
	}
	return &rateLimiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}, sweepSize: 1024}
}

// allow takes a token for key, or says how long until one is there.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.sweepSize {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

func (l *rateLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	// Many busy credentials: sweep less often rather than on every new one.
	l.sweepSize = max(1024, 2*len(l.buckets))
}

// retryAfter is d in whole seconds, rounded up, at least 1: the unit of the
// Retry-After header.
func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	return strconv.Itoa(max(1, s))
}

// clientIP is the address a request comes from. Behind a trusted proxy it is
// the rightmost address of X-Forwarded-For that is not itself a trusted proxy:
// the leftmost entries are whatever the client chose to send.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if !s.trusted(addr) {
		return addr.String()
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return addr.String() // a garbled chain: trust nothing in it
			}
			a = a.Unmap()
			if !s.trusted(a) {
				return a.String()
			}
		}
	}
	return addr.String()
}

// addressKey is what the per-address limit counts: an IPv4 address, or the /64
// of an IPv6 one, since a single host usually holds a whole /64 and could
// otherwise open streams from as many addresses as it likes.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is6() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// acquireStream takes the stream's slots under the per-address and per-user
// limits; release gives them back when the stream ends.
func (s *Server) acquireStream(r *http.Request, p *auth.Principal) (release func(), _ *apiError) {
	ip := addressKey(s.clientIP(r))
	if !s.ipConns.acquire(ip) {
		return nil, &apiError{http.StatusTooManyRequests, "too_many_connections_per_ip",
			fmt.Sprintf("at most %d open streams per client address", s.cfg.MaxConnsPerIP)}
	}
	user := ""
	if p.Kind == auth.User {
		user = p.ID()
		if !s.userConns.acquire(user) {
			s.ipConns.release(ip)
			return nil, &apiError{http.StatusTooManyRequests, "too_many_connections_per_user",
				fmt.Sprintf("at most %d open streams per user", s.cfg.MaxConnsPerUser)}
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.ipConns.release(ip)
			if user != "" {
				s.userConns.release(user)
			}
		})
	}, nil
}

// streamScope is what bounds one stream besides the hub: its token's expiry and
// the release of its connection slots, called once when the stream ends.
type streamScope struct {
	expires time.Time // zero: no expiry
	release func()
}

// bound is parent ending at the token's expiry: a stream never outlives the
// token that opened it; the client reconnects with a fresh one and resumes.
func (sc streamScope) bound(parent context.Context) (context.Context, context.CancelFunc) {
	if sc.expires.IsZero() {
		return context.WithCancel(parent)
	}
	return context.WithDeadline(parent, sc.expires)
}

// allowPublish applies the publish rate of p's credential: per token subject,
// or per publish key. Anonymous requests never get this far.
func (s *Server) allowPublish(w http.ResponseWriter, p *auth.Principal) *apiError {
	l := s.userRate
	if p.Kind == auth.Service {
		l = s.keyRate
	}
	ok, wait := l.allow(p.ID())
	if ok {
		return nil
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	return &apiError{http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("publish rate of %s exceeded; retry in %s", p.ID(), wait.Round(time.Millisecond))}
}

// ParsePrefixes reads CIDRs (or single addresses) of trusted proxies.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an address or a CIDR like 10.0.0.0/8", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
