package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// RunNodeTests runs cmd, a `node --test --test-reporter=tap` command, and
// reports each of its top-level tests as a subtest of t: failed, skipped or
// marked TODO (what, such as "web", names the suite: a skipped test of it
// does not count), or passed with its diagnostics logged. It fails t when
// node reports no test, fails for another reason than a failed test, or
// outlives ctx, the context cmd was made with.
func RunNodeTests(ctx context.Context, t *testing.T, cmd *exec.Cmd, what string) {
	t.Helper()
	cmd.WaitDelay = 10 * time.Second // node's children must not keep the pipes open for ever
	var report bytes.Buffer
	cmd.Stdout = &report
	cmd.Stderr = &report
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("node --test did not finish within the time limit\n%s", report.String())
	}
	results := parseTAP(report.String())
	if len(results) == 0 {
		t.Fatalf("node --test reported no tests (%v)\n%s", runErr, report.String())
	}
	failed := false
	for _, r := range results {
		t.Run(r.name, func(t *testing.T) {
			switch {
			case r.directive != "":
				failed = true
				t.Errorf("reported as %s: a skipped %s test does not count\n%s", r.directive, what, r.detail)
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
		t.Fatalf("node --test: %v\n%s", runErr, report.String())
	}
}

// tapResult is one top-level test of node's TAP report.
type tapResult struct {
	name      string
	ok        bool
	directive string // SKIP or TODO
	detail    string // its YAML block and the diagnostics after it
}

var tapLine = regexp.MustCompile(`^(not )?ok \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$`)

// parseTAP reads the top-level results of a TAP 13 report (node --test runs
// each file as its own top-level tests), keeping with each the indented lines
// and diagnostics that follow it.
func parseTAP(report string) []tapResult {
	var rs []tapResult
	sc := bufio.NewScanner(strings.NewReader(report))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := tapLine.FindStringSubmatch(line); m != nil {
			rs = append(rs, tapResult{name: m[2], ok: m[1] == "", directive: m[3]})
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
