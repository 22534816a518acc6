package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// net/http's ServeMux redirects paths it would clean (//v1/events,
// /v1/./events) with a text body; Herald answers them itself, as JSON.
func TestUncleanPathsGetJSONNotARedirect(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct{ method, path string }{
		{"GET", "//v1/events?topic=a"},
		{"GET", "/v1//events?topic=a"},
		{"GET", "/v1/./events?topic=a"},
		{"GET", "/v1/x/../events?topic=a"},
		{"GET", "/./healthz"},
		{"GET", "//metrics"},
		{"POST", "//v1/publish"},
		{"DELETE", "//v1/publish"},
	} {
		req, err := http.NewRequest(c.method, n.srv.URL+c.path, strings.NewReader(`{"topic":"a"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e errorBody
		_ = json.Unmarshal(raw, &e)
		if resp.StatusCode != http.StatusNotFound || e.Error.Code != "not_found" || resp.Header.Get("Location") != "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %v %s, want a JSON 404 not_found", c.method, c.path, resp.StatusCode, resp.Header, raw)
		}
	}
	if head := headOffset(t, n, "a"); head != 0 {
		t.Fatalf("a publish to an unclean path appended %d events", head)
	}
}
