// Package clients runs the JavaScript client-library tests (clients.test.js)
// from go test, so that the project's one test command covers them.
package clients

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/testenv"
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
	testenv.RunNodeTests(ctx, t, cmd, "client")
}
