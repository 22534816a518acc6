package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// HTTP/2 streams against a real herald, cleartext and over TLS with the
// throwaway certificate of a self-started server: every event arrives once
// over ceil(N/per) connections.
func TestBenchHTTP2AgainstHerald(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, mode := range []string{"h2c", "tls"} {
		t.Run(mode, func(t *testing.T) {
			benchChildEnv = []string{"HERALD_TEST_AS_SERVER=1"}
			defer func() { benchChildEnv = nil }()
			args := []string{"--json", "--settle", "10ms", "--http2", mode, "--streams-per-conn", "40",
				"--connections", "200", "--rate", "20", "--duration", "1s"}
			var stdout, stderr bytes.Buffer
			if code := benchCmd(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); code != 0 {
				t.Fatalf("herald bench %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
			}
			var res struct {
				benchJSON
				Protocol       string `json:"protocol"`
				TCPConnections int64  `json:"tcp_connections"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("bench output is not JSON: %v\n%s", err, stdout.String())
			}
			if res.TCPConnections != 5 || res.Protocol == "HTTP/1.1" {
				t.Errorf("%d TCP connections over %s, want 5 over HTTP/2", res.TCPConnections, res.Protocol)
			}
			if res.Published != 20 || res.Expected != 200*20 || res.Delivered != res.Expected || res.Lost != 0 || res.Duplicates != 0 {
				t.Errorf("published %d, delivered %d of %d, lost %d, duplicates %d", res.Published, res.Delivered, res.Expected, res.Lost, res.Duplicates)
			}
		})
	}
}

func TestBenchHTTP2FlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--http2", "h3"},
		{"--http2", "tls", "--url", "http://127.0.0.1:1"},
		{"--http2", "h2c", "--url", "https://127.0.0.1:1"},
		{"--http2", "h2c", "--streams-per-conn", "0"},
		{"--ca-file", filepath.Join(t.TempDir(), "missing.pem")},
	} {
		var out, errOut bytes.Buffer
		if code := benchCmd(context.Background(), args, func(string) string { return "" }, &out, &errOut); code != 2 {
			t.Errorf("herald bench %v: exit %d, want 2", args, code)
		}
	}
}
