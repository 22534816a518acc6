// Package ratelog keeps a repeating warning or error from flooding the log: a
// slog.Handler that passes at most one record per message in each interval and
// counts what it held back.
//
// A full disk or an unreachable back end fails every request the same way; one
// line every few seconds says as much as thousands, and the count of the lines
// held back is kept in the next one that passes.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the least time between two records of one message.
const DefaultInterval = 5 * time.Second

// maxKeys bounds the memory of messages seen; past it the oldest are forgotten,
// which only lets one more line of each through.
const maxKeys = 1024

// Handler passes records below Warn through untouched and rate-limits the rest
// by message. Create it with New.
type Handler struct {
	next slog.Handler
	lim  *Limiter // shared by the handlers derived with WithAttrs and WithGroup
}

// Limiter admits at most one occurrence of each key per interval. The zero
// value is not usable; create it with NewLimiter. It is safe for concurrent use.
type Limiter struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]*entry
}

// NewLimiter returns a Limiter with the interval (DefaultInterval when zero).
func NewLimiter(interval time.Duration) *Limiter {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Limiter{interval: interval, now: time.Now, seen: map[string]*entry{}}
}

type entry struct {
	last time.Time // when the last record of this message passed
	held int       // records held back since then
}

// New returns a handler that passes at most one record per message every
// interval (DefaultInterval when zero) for records at level Warn and above.
func New(next slog.Handler, interval time.Duration) *Handler {
	return &Handler{next: next, lim: NewLimiter(interval)}
}

// Enabled reports whether the next handler wants records of this level.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle passes r on, unless a record with the same message passed less than
// the interval ago. A record that passes after some were held back says how many.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	held, ok := h.lim.Allow(r.Message)
	if !ok {
		return nil
	}
	if held > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", held))
	}
	return h.next.Handle(ctx, r)
}

// Allow reports whether an occurrence of key may pass now and, when it may,
// how many were held back since the last one that passed.
func (l *Limiter) Allow(key string) (held int, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.seen[key]
	if e == nil {
		if len(l.seen) >= maxKeys {
			l.forgetOldest()
		}
		l.seen[key] = &entry{last: now}
		return 0, true
	}
	if now.Sub(e.last) < l.interval {
		e.held++
		return 0, false
	}
	held, e.held, e.last = e.held, 0, now
	return held, true
}

func (l *Limiter) forgetOldest() {
	var oldest string
	var t time.Time
	for k, e := range l.seen {
		if oldest == "" || e.last.Before(t) {
			oldest, t = k, e.last
		}
	}
	delete(l.seen, oldest)
}

// WithAttrs returns a handler that adds attrs and shares this one's limits.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	return &c
}

// WithGroup returns a handler that opens a group and shares this one's limits.
func (h *Handler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
