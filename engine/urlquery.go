package engine

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// URLQuery reads the options of an engine URL's query. Each read takes its
// key out, so what is left is either handed to a driver's own parser or
// refused by Unknown. The first bad value is kept and returned by Err, so an
// engine's URL parser reads all its options and checks once.
type URLQuery struct {
	engine string
	q      url.Values
	err    error
}

// NewURLQuery returns the options of u's query, for the engine named engine
// (which error messages name).
func NewURLQuery(engine string, u *url.URL) *URLQuery {
	return &URLQuery{engine: engine, q: u.Query()}
}

// take removes key and returns its value. An option given twice is an error:
// which of the two was meant cannot be told.
func (q *URLQuery) take(key string) (string, bool) {
	vs, ok := q.q[key]
	if !ok {
		return "", false
	}
	q.q.Del(key)
	if len(vs) > 1 {
		q.fail("%s given %d times", key, len(vs))
		return "", false
	}
	return vs[0], true
}

func (q *URLQuery) fail(format string, args ...any) {
	if q.err == nil {
		q.err = fmt.Errorf("engine %s: "+format, append([]any{q.engine}, args...)...)
	}
}

// String sets *dst to key's value when given; an empty value is an error.
func (q *URLQuery) String(key string, dst *string) {
	if v, ok := q.take(key); ok {
		if v == "" {
			q.fail("%s is empty", key)
			return
		}
		*dst = v
	}
}

// Strings returns every value of a key that may be repeated.
func (q *URLQuery) Strings(key string) []string {
	vs := q.q[key]
	q.q.Del(key)
	return vs
}

// Int sets *dst to key's value when given; it must be an integer from lo to hi.
func (q *URLQuery) Int(key string, lo, hi int, dst *int) {
	if v, ok := q.take(key); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			q.fail("%s=%q, want %d to %d", key, v, lo, hi)
			return
		}
		*dst = n
	}
}

// Duration sets *dst to key's value when given, a Go duration (1s, 250ms):
// positive, or zero too when zero is allowed. What zero means is the
// engine's to say, in its own option's doc.
func (q *URLQuery) Duration(key string, zero bool, dst *time.Duration) {
	if v, ok := q.take(key); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !zero) {
			want := "a positive duration such as 30s"
			if zero {
				want = "a duration such as 30s, or 0"
			}
			q.fail("%s=%q, want %s", key, v, want)
			return
		}
		*dst = d
	}
}

// Rest returns the options not read, for a driver's own parser.
func (q *URLQuery) Rest() url.Values { return q.q }

// Err returns the first bad option read, or, when unknown is set, an error
// naming an option left unread (known lists the engine's options for the
// message).
func (q *URLQuery) Err(unknown bool, known ...string) error {
	if q.err != nil || !unknown || len(q.q) == 0 {
		return q.err
	}
	left := make([]string, 0, len(q.q))
	for k := range q.q {
		left = append(left, k)
	}
	slices.Sort(left)
	return fmt.Errorf("engine %s: unknown option %q (known: %s)", q.engine, left[0], strings.Join(known, ", "))
}
