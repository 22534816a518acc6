package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/slow":
			time.Sleep(time.Second)
		case r.URL.Path == "/readyz" && ready.Load():
			w.Write([]byte(`{"status":"ready"}`))
		default:
			http.Error(w, `{"error":"engine_unavailable"}`, http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	none := func(string) string { return "" }
	probe := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"probe"}, args...), none, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := probe(srv.URL + "/readyz"); code != exitOK || !strings.Contains(out, "200 OK") {
		t.Errorf("ready: exit %d, %q", code, out)
	}
	ready.Store(false)
	if code, out := probe(srv.URL + "/readyz"); code != exitFailure || !strings.Contains(out, "503") {
		t.Errorf("not ready: exit %d, %q", code, out)
	}
	if code, out := probe("-timeout", "50ms", srv.URL+"/slow"); code != exitFailure {
		t.Errorf("no answer in time: exit %d, %q", code, out)
	}
	if code, _ := probe("a", "b"); code != exitBadConfig {
		t.Errorf("two arguments: exit %d, want %d", code, exitBadConfig)
	}
}
