package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// probeCmd runs `herald probe [URL]`: a health check for images without a
// shell or curl (the Dockerfile's distroless image). It GETs URL and exits 0
// on a 2xx answer, 1 otherwise.
func probeCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herald probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: herald probe [-timeout 2s] [URL]

GETs URL (default http://127.0.0.1:8080/readyz) for a container health check.

Exit status: 0 on a 2xx answer; 1 on any other answer or no answer; 2 on a bad
command line.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	url := "http://127.0.0.1:8080/readyz"
	switch fs.NArg() {
	case 0:
	case 1:
		url = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, "herald probe: want at most one argument, the URL")
		return exitBadConfig
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "herald probe:", err)
		return exitBadConfig
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "herald probe:", err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%s %s\n", resp.Status, body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return exitFailure
	}
	return exitOK
}
