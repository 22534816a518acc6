package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HTTPError is a response that was not an event stream. Code and Message come
// from Herald's JSON error body {"error":{"code","message"}}; for other
// bodies Message holds the start of the body.
type HTTPError struct {
	Status  int
	Code    string
	Message string
}

func (e *HTTPError) Error() string { return "client: " + describeAnswer(e.Status, e.Code, e.Message) }

// describeAnswer renders an error answer: "HTTP 503 Service Unavailable:
// engine_unavailable: the event was not acknowledged...".
func describeAnswer(status int, code, message string) string {
	s := "HTTP " + strconv.Itoa(status)
	if t := http.StatusText(status); t != "" {
		s += " " + t
	}
	if code != "" {
		s += ": " + code
	}
	if message != "" {
		s += ": " + message
	}
	return s
}

// Temporary reports whether the request may succeed later: 408, 429 and 5xx
// are retried, any other status stops the Stream.
func (e *HTTPError) Temporary() bool {
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// readHTTPError reads the error from resp, whose body it does not close.
func readHTTPError(resp *http.Response) *HTTPError {
	e := &HTTPError{Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var v struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil && (v.Error.Code != "" || v.Error.Message != "") {
		e.Code, e.Message = v.Error.Code, v.Error.Message
		return e
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	e.Message = strings.ToValidUTF8(msg, "\uFFFD")
	return e
}

// parseRetryAfter returns the delay a 429 or 503 response asks for, or 0.
func parseRetryAfter(resp *http.Response, now time.Time) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	return retryAfter(resp.Header, now)
}

// retryAfter returns the delay a Retry-After header asks for, or 0.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 31); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// contentTypeError reports a 200 response that is not an event stream, such
// as a login page from a proxy: retrying would not help.
func contentTypeError(ct string) *HTTPError {
	return &HTTPError{Status: http.StatusOK, Message: fmt.Sprintf("Content-Type %q is not text/event-stream", ct)}
}
