package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// benchJSON is the part of `herald bench --json` the tests check.
type benchJSON struct {
	Connections    int     `json:"connections"`
	ConnectSeconds float64 `json:"connect_seconds"`
	Published      int64   `json:"published"`
	Expected       int64   `json:"expected"`
	Delivered      int64   `json:"delivered"`
	DeliveredPer   float64 `json:"delivered_per_sec"`
	Lost           int64   `json:"lost"`
	Duplicates     int64   `json:"duplicates"`
	Latency        struct {
		P50, P90, P99, Max float64
	} `json:"latency_ms"`
	RSS struct {
		Before, After int64
	} `json:"server_rss_bytes"`
	RSSPerConn float64 `json:"rss_per_connection_bytes"`
	Storm      *struct {
		Recovered  bool
		Expected   int64
		Lost       int64
		Duplicates int64
	}
}

// runBench runs `herald bench` against a herald serve it starts itself (this
// test binary, see TestMain) and decodes its JSON.
func runBench(t *testing.T, args ...string) benchJSON {
	t.Helper()
	benchChildEnv = []string{"HERALD_TEST_AS_SERVER=1"}
	defer func() { benchChildEnv = nil }()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--json", "--settle", "10ms"}, args...)
	if code := benchCmd(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("herald bench %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	var res benchJSON
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("bench output is not JSON: %v\n%s", err, stdout.String())
	}
	return res
}

// Against a real herald every event arrives once, and a reconnect storm
// loses nothing.
func TestBenchAgainstHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	res := runBench(t, "--connections", "50", "--rate", "20", "--duration", "2s", "--storm", "--storm-missed", "10")
	if res.Connections != 50 || res.Published != 40 || res.Expected != 50*40 {
		t.Fatalf("connections %d, published %d, expected %d", res.Connections, res.Published, res.Expected)
	}
	if res.Lost != 0 || res.Duplicates != 0 || res.Delivered != res.Expected {
		t.Errorf("delivered %d of %d, lost %d, duplicates %d", res.Delivered, res.Expected, res.Lost, res.Duplicates)
	}
	if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.DeliveredPer <= 0 || res.ConnectSeconds <= 0 {
		t.Errorf("implausible figures: %+v", res)
	}
	if res.RSS.Before <= 0 || res.RSS.After <= 0 {
		t.Errorf("server RSS not read: %+v", res.RSS)
	}
	if s := res.Storm; s == nil || !s.Recovered || s.Lost != 0 || s.Duplicates != 0 || s.Expected != 50*10 {
		t.Errorf("storm: %+v", s)
	}
}

func TestBenchPerUserAgainstHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	res := runBench(t, "--connections", "40", "--layout", "per-user", "--rate", "200", "--duration", "1s")
	if res.Published != 200 || res.Expected != 200 || res.Delivered != 200 || res.Lost != 0 || res.Duplicates != 0 {
		t.Errorf("published %d, delivered %d of %d, lost %d, duplicates %d", res.Published, res.Delivered, res.Expected, res.Lost, res.Duplicates)
	}
}

func TestBenchFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--layout", "everyone"},
		{"--no-such-flag"},
		{"extra"},
		{"--header", "no colon"},
	} {
		var out, errOut bytes.Buffer
		if code := benchCmd(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 2 {
			t.Errorf("herald bench %v: exit %d, want 2", args, code)
		}
	}
}
