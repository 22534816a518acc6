// Package testenv is the rule for tests on real services: a test that needs
// one reads where it is from a HERALD_TEST_* variable, and without it fails
// under CI=true (.ci/run sets every variable) and is skipped otherwise, so
// that such a test never passes without having run. It also holds the
// helpers several test packages share: building the web packages, running
// node's test suites, reading a stream.
package testenv

import (
	"os"
	"testing"
)

// Get returns the variable name, or fails or skips the test without it;
// what says what the tests need it for, example is a value to set.
func Get(t testing.TB, name, what, example string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set, and CI=true: %s must run in CI (.ci/run sets it)", name, what)
		}
		t.Skipf("set %s (for example %s) to run %s", name, example, what)
	}
	return v
}
