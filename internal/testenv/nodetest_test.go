package testenv

import (
	"strings"
	"testing"
)

// parseTAP keeps node's top-level results, their skips and their details,
// and stops at the plan.
func TestParseTAP(t *testing.T) {
	report := `TAP version 13
# Subtest: resumes
ok 1 - resumes
  ---
  duration_ms: 12
  ...
# got 5 events
# Subtest: refreshes
not ok 2 - refreshes
  ---
  error: 'boom'
  ...
ok 3 - needs chromium # SKIP no browser
ok 4 - later # TODO
1..4
# tests 4
ok 5 - after the plan
`
	got := parseTAP(report)
	if len(got) != 4 {
		t.Fatalf("%d results, want 4: %+v", len(got), got)
	}
	want := []tapResult{
		{name: "resumes", ok: true},
		{name: "refreshes", ok: false},
		{name: "needs chromium", ok: true, directive: "SKIP"},
		{name: "later", ok: true, directive: "TODO"},
	}
	for i, w := range want {
		g := got[i]
		if g.name != w.name || g.ok != w.ok || g.directive != w.directive {
			t.Errorf("result %d = %q ok=%v %q, want %q ok=%v %q", i, g.name, g.ok, g.directive, w.name, w.ok, w.directive)
		}
	}
	if !strings.Contains(got[0].detail, "# got 5 events") || strings.Contains(got[0].detail, "Subtest") {
		t.Errorf("details of the first result: %q", got[0].detail)
	}
	if !strings.Contains(got[1].detail, "boom") {
		t.Errorf("details of the failed result: %q", got[1].detail)
	}
}
