package server

import (
	"net/http"
	"strings"
	"testing"
)

func do(t *testing.T, method, url string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestCORSPreflightAndAllowList(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{CORSOrigins: []string{"https://app.example.com"}}})
	const app, evil = "https://app.example.com", "https://evil.example"
	for _, path := range []string{"/v1/publish", "/v1/events?topic=a"} {
		// A preflight for a request with Authorization, as fetch-based
		// clients and event-source-polyfill send.
		resp := do(t, "OPTIONS", n.srv.URL+path, "Origin", app, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type, last-event-id")
		h := resp.Header
		if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != app || h.Get("Access-Control-Allow-Credentials") != "true" ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Last-Event-ID") ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Fatalf("%s preflight: %d %v", path, resp.StatusCode, h)
		}
		resp = do(t, "OPTIONS", n.srv.URL+path, "Origin", evil, "Access-Control-Request-Method", "POST")
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("unlisted origin allowed: %v", resp.Header)
		}
		wantError(t, resp, 403, "origin_not_allowed")
	}
	// Actual requests: listed origins get their name back, with credentials;
	// unlisted ones nothing, so the browser hides the answer.
	resp := do(t, "GET", n.srv.URL+"/v1/events?topic=a", "Origin", app)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != app || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("listed GET: %d %v", resp.StatusCode, resp.Header)
	}
	resp = do(t, "POST", n.srv.URL+"/v1/publish", "Origin", app)
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != app || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("errors must be readable by listed origins: %d %v", resp.StatusCode, resp.Header)
	}
	resp = do(t, "GET", n.srv.URL+"/v1/events?topic=a", "Origin", evil)
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("unlisted GET: %v", resp.Header)
	}
	// A preflight for a method Herald does not serve.
	wantError(t, do(t, "OPTIONS", n.srv.URL+"/v1/publish", "Origin", app, "Access-Control-Request-Method", "DELETE"), 405, "method_not_allowed")
}

func TestCORSWildcardHasNoCredentialsAndDefaultIsOff(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{CORSOrigins: []string{"*"}}})
	resp := do(t, "OPTIONS", n.srv.URL+"/v1/publish", "Origin", "https://any.example", "Access-Control-Request-Method", "POST")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("wildcard: %d %v", resp.StatusCode, resp.Header)
	}
	off := newTestNode(t, nodeOptions{})
	resp = do(t, "GET", off.srv.URL+"/v1/events?topic=a", "Origin", "https://any.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS without an allow-list: %v", resp.Header)
	}
}

func TestParseOrigins(t *testing.T) {
	got, err := ParseOrigins([]string{"https://App.Example.com", "http://localhost:5173", "*"})
	if err != nil || strings.Join(got, " ") != "https://app.example.com http://localhost:5173 *" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"app.example.com", "https://app.example.com/path", "ftp://x", "https://u@x"} {
		if _, err := ParseOrigins([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
