package server

import (
	"encoding/json"
	"net/http"
)

// errorBody is every error Herald answers: {"error":{"code","message"}}.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	var b errorBody
	b.Error.Code = code
	b.Error.Message = message
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	setJSONHeaders(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// setJSONHeaders sets the headers of every JSON answer.
func setJSONHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// limitOf names the limit behind an error code, for herald_limit_exceeded_total.
var limitOf = map[string]string{
	"too_many_topics":               "topics_per_stream",
	"body_too_large":                "body_size",
	"event_too_large":               "event_size",
	"batch_too_large":               "batch_size",
	"rate_limited":                  "publish_rate",
	"too_many_connections_per_ip":   "connections_per_ip",
	"too_many_connections_per_user": "connections_per_user",
	"too_many_demo_tokens":          "demo_tokens_per_ip",
}

var limitNames = func() []string {
	var out []string
	for _, l := range limitOf {
		out = append(out, l)
	}
	return out
}()

// refuse answers e and counts it.
func (s *Server) refuse(w http.ResponseWriter, e *apiError) {
	s.metrics.rejected.WithLabelValues(e.code).Inc()
	if l, ok := limitOf[e.code]; ok {
		s.metrics.limited.WithLabelValues(l).Inc()
	}
	if e.status == http.StatusUnauthorized {
		// RFC 6750: error= only when a credential was presented.
		v := `Bearer realm="herald"`
		if e.code != "missing_credentials" {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	writeError(w, e.status, e.code, e.message)
}
