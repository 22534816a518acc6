package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// repoRoot is the repository, from this package's directory.
var repoRoot = filepath.Join("..", "..")

// setup skips the test unless HERALD_TEST_EXAMPLES=1, and fails it under
// CI=true without it; needs says what the test needs besides, for the skip's
// message.
func setup(t *testing.T, needs string) {
	t.Helper()
	if os.Getenv("HERALD_TEST_EXAMPLES") != "1" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but HERALD_TEST_EXAMPLES is not 1: the examples' tests would not run (.ci/run sets it after installing what they need)")
		}
		t.Skipf("set HERALD_TEST_EXAMPLES=1 to run this example's test; it needs %s (.ci/run sets it up)", needs)
	}
}

// build compiles the Go packages pkgs of this repository (./cmd/herald,
// ./examples/rooms) into dir and returns the binaries' paths, in order.
func build(t *testing.T, dir string, pkgs ...string) []string {
	t.Helper()
	bins := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		bins[i] = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", bins[i], pkg)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return bins
}
