// Package web runs the tests of the browser packages in web/ (@herald/client)
// from go test, so that the project's one test command covers them: the
// TypeScript check and Vitest unit tests, then the integration tests, which
// drive the built client in Node and in Chromium against a real herald, pages
// that use the browser's EventSource and event-source-polyfill, and the demo
// and admin pages, saving screenshots of what the browser showed.
package web

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/testenv"
)

// webDir is the npm workspace, from this package's directory.
var webDir = filepath.Join("..", "..", "web")

// setup skips the test unless HERALD_TEST_WEB=1; once asked for (or under
// CI=true) a missing piece is a failure, not a skip. It returns node's path.
func setup(t *testing.T) string {
	t.Helper()
	if os.Getenv("HERALD_TEST_WEB") != "1" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but HERALD_TEST_WEB is not 1: the web tests would not run (.ci/run sets it after `npm ci` in web/)")
		}
		t.Skip("set HERALD_TEST_WEB=1 to run the web tests; they need Node.js 20, `npm ci` in web/ and /usr/bin/chromium (.ci/run sets them up)")
	}
	if _, err := os.Stat(filepath.Join(webDir, "node_modules")); err != nil {
		t.Fatalf("HERALD_TEST_WEB=1 but web/node_modules is missing: run `npm ci` in web/ (%v)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("HERALD_TEST_WEB=1 but node is not installed: %v", err)
	}
	return node
}

// TestWebUnit runs `npm test` in web/: tsc (strict) and Vitest.
func TestWebUnit(t *testing.T) {
	setup(t)
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("HERALD_TEST_WEB=1 but npm is not installed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "test")
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "FORCE_COLOR=0")
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm test in web/: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Tests\s+(\d+ passed[^\n]*)`).FindSubmatch(out); m != nil {
		t.Logf("vitest: %s", m[1])
	}
}

// TestWebIntegration builds herald and @herald/client, then runs
// web/integration with node's test runner: the client in Node (resume,
// tokens, refusals) and in Chromium (ten tabs share one stream by /metrics;
// the leader's close loses nothing; a SIGKILL and restart of herald loses
// nothing), pages using the browser's EventSource and event-source-polyfill
// (both resume by their last event id after a cut and a restart), and the
// demo (two users: presence, a notification's toast and unread count, marking
// read across tabs, a room message) and admin pages of `herald serve -demo`.
// Each test is reported as a subtest, read from the TAP report so that a
// skipped one shows. The PNG screenshots go to $HERALD_SCREENSHOT_DIR, by
// default web/integration/screenshots; the test logs their paths.
func TestWebIntegration(t *testing.T) {
	node := setup(t)
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("HERALD_TEST_WEB=1 but Chromium is missing at %s (install Debian's chromium, or set CHROMIUM_PATH): %v", chromium, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "herald")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/herald")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald: %v\n%s", err, out)
	}
	// Built only when its sources changed: test/examples reads the same dist/
	// (examples/react links it), perhaps at the same time.
	if client := filepath.Join(webDir, "packages", "client"); !testenv.NPMBuildFresh(client, "index.js", "index.d.ts", "herald-client.min.js") {
		bundle := exec.CommandContext(ctx, node, filepath.Join("scripts", "build-client.mjs"))
		bundle.Dir = webDir
		out, err := bundle.CombinedOutput()
		if err != nil {
			t.Fatalf("building @herald/client: %v\n%s", err, out)
		}
		t.Log(strings.TrimSpace(string(out)))
	}

	shots := os.Getenv("HERALD_SCREENSHOT_DIR")
	if shots == "" {
		shots = filepath.Join(webDir, "integration", "screenshots")
	}
	shots, err := filepath.Abs(shots)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	defer logScreenshots(t, shots, started)

	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=tap", "--test-concurrency=1", "integration/")
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(), "HERALD_BIN="+bin, "CHROMIUM_PATH="+chromium, "HERALD_SCREENSHOT_DIR="+shots)
	testenv.RunNodeTests(ctx, t, cmd, "web")
}

// logScreenshots logs the PNG files written to dir since the run started.
func logScreenshots(t *testing.T, dir string, since time.Time) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Logf("screenshots: none in %s (%v)", dir, err)
		return
	}
	var names []string
	for _, e := range entries {
		info, err := e.Info()
		if err == nil && strings.HasSuffix(e.Name(), ".png") && !info.ModTime().Before(since.Add(-time.Second)) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	t.Logf("screenshots: %d in %s: %s", len(names), dir, strings.Join(names, ", "))
}
