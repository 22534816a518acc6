package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/internal/testenv"
)

// herald serve -demo serves the demo at /, mints demo tokens that open the
// user's topic and the rooms, and announces presence; the admin page is at
// /admin and each node's statistics reach herald/stats.
func TestServeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a herald process")
	}
	p := startProcess(t, t.TempDir(), "-demo", "-node-id", "d1", "-admin-stats-interval", "100ms")
	if !strings.Contains(p.logs.String(), "DEMO MODE") {
		t.Errorf("no demo warning at start:\n%s", p.logs)
	}
	// Logged right after "listening", which startProcess waits for.
	want := "demo: open " + p.url("/") + " in a browser"
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the demo's address is not logged as %s:\n%s", p.url("/"), p.logs)
			break
		}
	}
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(p.url(path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, path := range []string{"/", "/admin"} {
		resp, _ := get(path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || resp.Header.Get("ETag") == "" || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %d %v", path, resp.StatusCode, resp.Header)
		}
	}
	resp, err := http.Post(p.url("/v1/demo/token"), "application/json", strings.NewReader(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token, User string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.User != "alice" || tok.Token == "" {
		t.Fatalf("demo token: %d %+v", resp.StatusCode, tok)
	}
	auth := http.Header{"Authorization": {"Bearer " + tok.Token}}
	alice := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=users/alice&topic=presence/rooms/lobby&topic=rooms/lobby"), Header: auth})
	defer alice.Close()
	// Presence events are on: alice's own join to rooms/lobby is announced.
	testenv.NextOfType(t, alice, "join")

	admin := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=herald/stats"), Header: http.Header{"Authorization": {"Bearer " + processKey}}})
	defer admin.Close()
	ev := testenv.NextOfType(t, admin, "stats")
	var st struct {
		Node    string `json:"node"`
		Streams int    `json:"streams"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &st); err != nil || st.Node != "d1" || st.Streams < 1 {
		t.Fatalf("stats %s (%v)", ev.Data, err)
	}
	// A demo token does not read herald/stats.
	req, _ := http.NewRequest("GET", p.url("/v1/events?topic=herald/stats"), nil)
	req.Header = auth
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("herald/stats with a demo token: %d, want 403", r.StatusCode)
	}
}

// Without -demo, / is the landing page and the demo token endpoint does not
// exist; -admin-stats-interval 0 publishes no statistics.
func TestServeWithoutDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a herald process")
	}
	p := startProcess(t, t.TempDir(), "-admin-stats-interval", "0")
	resp, err := http.Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "Herald is running") {
		t.Fatalf("/: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Post(p.url("/v1/demo/token"), "application/json", strings.NewReader(`{"user":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("demo token without -demo: %d, want 404", resp.StatusCode)
	}
	admin := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=herald/stats"), Header: http.Header{"Authorization": {"Bearer " + processKey}}})
	defer admin.Close()
	select {
	case ev := <-admin.Events():
		t.Fatalf("stats with -admin-stats-interval 0: %s %s", ev.Type, ev.Data)
	case <-time.After(500 * time.Millisecond):
	}
}

func TestPageURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080/",
		"0.0.0.0:8080":   "http://localhost:8080/",
		"[::]:8443":      "https://localhost:8443/",
		"[::1]:80":       "http://[::1]:80/",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := pageURL(a, strings.HasSuffix(addr, "8443")); got != want {
			t.Errorf("pageURL(%s) = %s, want %s", addr, got, want)
		}
	}
}
