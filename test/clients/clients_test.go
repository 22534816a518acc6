// Package clients runs the JavaScript client-library tests (clients.test.js)
// from go test, so that the project's one test command covers them.
package clients

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestClientLibrariesResume drives native EventSource, event-source-polyfill,
// @microsoft/fetch-event-source (in Chromium) and eventsource (in Node) against
// a real herald: each must resume, after a drop before its first event, with
// every event published meanwhile. Each library is reported as a subtest. The
// node test runner's TAP report is read rather than only its exit status, so
// that a skipped or missing library shows.
func TestClientLibrariesResume(t *testing.T) {
	if os.Getenv("HERALD_TEST_CLIENTS") != "1" {
		t.Skip("set HERALD_TEST_CLIENTS=1 to run the client library tests; they need Node.js, `npm ci` in test/clients and /usr/bin/chromium (.ci/run sets them up)")
	}
	// Asked for, they must run: a missing set-up is a failure, not a skip.
	if _, err := os.Stat("node_modules"); err != nil {
		t.Fatalf("HERALD_TEST_CLIENTS=1 but test/clients/node_modules is missing: run `npm ci` in test/clients (%v)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("HERALD_TEST_CLIENTS=1 but node is not installed: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/herald")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=tap", "clients.test.js")
	cmd.Env = append(os.Environ(), "HERALD_BIN="+bin)
	cmd.WaitDelay = 10 * time.Second // node's children must not keep the pipes open for ever
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("node --test did not finish within the time limit\n%s", out.String())
	}

	results := parseTAP(out.String())
	if len(results) == 0 {
		t.Fatalf("node --test reported no tests (%v)\n%s", runErr, out.String())
	}
	failed := false
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			switch {
			case r.directive != "":
				failed = true
				t.Errorf("reported as %s: a skipped client test does not count\n%s", r.directive, r.detail)
			case !r.ok:
				failed = true
				t.Errorf("failed\n%s", r.detail)
			default:
				for _, l := range strings.Split(r.detail, "\n") {
					if strings.HasPrefix(l, "# ") {
						t.Log(strings.TrimPrefix(l, "# ")) // the test's diagnostics
					}
				}
			}
		})
	}
	var exit *exec.ExitError
	if runErr != nil && (!failed || !errors.As(runErr, &exit)) {
		t.Fatalf("node --test: %v\n%s", runErr, out.String())
	}
}

// result is one top-level test of node's TAP report.
type result struct {
	name      string
	ok        bool
	directive string // SKIP or TODO
	detail    string // its YAML block and the diagnostics after it
}

var tapResult = regexp.MustCompile(`^(not )?ok \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$`)

// parseTAP reads the top-level results of a TAP 13 report, keeping with each
// the indented lines and diagnostics that follow it.
func parseTAP(report string) []result {
	var rs []result
	sc := bufio.NewScanner(strings.NewReader(report))
	for sc.Scan() {
		line := sc.Text()
		if m := tapResult.FindStringSubmatch(line); m != nil {
			rs = append(rs, result{name: m[2], ok: m[1] == "", directive: m[3]})
			continue
		}
		if strings.HasPrefix(line, "1..") {
			break // the plan; the summary follows
		}
		if len(rs) == 0 || strings.HasPrefix(line, "# Subtest:") {
			continue
		}
		rs[len(rs)-1].detail += line + "\n"
	}
	return rs
}
