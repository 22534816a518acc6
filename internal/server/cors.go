package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// cors answers cross-origin requests for an allow-list of origins. A listed
// origin gets its own name back with credentials allowed (cookies, for a native
// EventSource withCredentials); "*" lets any origin read without credentials.
// Unlisted origins get no CORS headers, so browsers keep their pages from
// reading the answer.
type cors struct {
	origins map[string]bool
	any     bool
}

// Headers a browser client may send: Authorization for tokens, Last-Event-ID
// for resuming, and what event-source-polyfill adds.
const (
	corsMethods = "GET, POST"
	corsHeaders = "Authorization, Content-Type, Last-Event-ID, Cache-Control, X-Requested-With, Accept"
	corsExpose  = "Retry-After, WWW-Authenticate"
	corsMaxAge  = "600"
)

// ParseOrigins checks an allow-list: "*" or origins like https://app.example.com
// (scheme, host and optional port; no path).
func ParseOrigins(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, o := range list {
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			return nil, fmt.Errorf("CORS origin %q: want scheme://host[:port], e.g. https://app.example.com", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}

func newCORS(origins []string) *cors {
	c := &cors{origins: map[string]bool{}}
	for _, o := range origins {
		if o == "*" {
			c.any = true
		} else {
			c.origins[strings.ToLower(o)] = true
		}
	}
	return c
}

func (c *cors) enabled() bool { return c.any || len(c.origins) > 0 }

// wrap adds CORS headers to next's answers and answers preflights itself.
func (c *cors) wrap(next http.Handler) http.Handler {
	if !c.enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		listed := c.origins[strings.ToLower(origin)]
		if !listed && !c.any {
			if preflight {
				writeError(w, http.StatusForbidden, "origin_not_allowed", "origin "+origin+" is not in the CORS allow-list")
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if listed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		} else {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		if !preflight {
			h.Set("Access-Control-Expose-Headers", corsExpose)
			next.ServeHTTP(w, r)
			return
		}
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		switch r.Header.Get("Access-Control-Request-Method") {
		case http.MethodGet, http.MethodPost:
		default:
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "CORS allows GET and POST only")
			return
		}
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", corsMaxAge)
		w.WriteHeader(http.StatusNoContent)
	})
}
