package examples

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/testenv"
)

// TestReactExample builds @herald/client and @herald/react when their dist/
// is missing or stale (npm run build in web/; the example's file:
// dependencies point at it), then
// typechecks examples/react with tsc (strict) and bundles it with esbuild,
// and checks the bundle: the app before (SSEProvider/useSSE over
// event-source-polyfill) and after (HeraldProvider/useTopic/useNotifications)
// the migration.
func TestReactExample(t *testing.T) {
	setup(t, "Node.js 20, `npm ci` in web/ and in examples/react")
	app := filepath.Join(repoRoot, "examples", "react")
	web := filepath.Join(repoRoot, "web")
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("HERALD_TEST_EXAMPLES=1 but npm is not installed: %v", err)
	}
	for _, dir := range []string{web, app} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
			t.Fatalf("HERALD_TEST_EXAMPLES=1 but %s/node_modules is missing: run `npm ci` there (.ci/run does) (%v)", dir, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, npm, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NO_COLOR=1", "FORCE_COLOR=0")
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("npm %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
		}
		return string(out)
	}
	// test/web builds and serves @herald/client's dist/ too, perhaps at the
	// same time: rebuild only what is missing or older than its sources.
	if !testenv.NPMBuildFresh(filepath.Join(web, "packages", "client"), "index.js", "index.d.ts") || !testenv.NPMBuildFresh(filepath.Join(web, "packages", "react"), "index.js", "index.d.ts") {
		run(web, "run", "build")
	}
	run(app, "run", "typecheck")
	out := run(app, "run", "build")
	for _, f := range []string{"app.js", "index.html"} {
		st, err := os.Stat(filepath.Join(app, "dist", f))
		if err != nil || st.Size() == 0 {
			t.Fatalf("examples/react/dist/%s is missing or empty after the build (%v):\n%s", f, err, out)
		}
	}
	js, err := os.ReadFile(filepath.Join(app, "dist", "app.js"))
	if err != nil {
		t.Fatal(err)
	}
	// Both versions are in the bundle: the polyfill's header and Herald's stream.
	for _, want := range []string{"/api/sse/subscribe", "/v1/events", "/v1/notifications"} {
		if !strings.Contains(string(js), want) {
			t.Errorf("dist/app.js does not contain %q", want)
		}
	}
	t.Logf("examples/react: %d bytes of dist/app.js", len(js))
}
