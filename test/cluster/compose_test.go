package cluster

import (
	"os"
	"strings"
	"testing"
)

// TestComposePlaceholders checks that deploy/compose.yaml, which is not run
// here (no Docker, and no YAML parser among Herald's dependencies), still
// finds in deploy/nginx/herald.conf each line its nginx command rewrites,
// exactly once, and names the Redis settings docs/cluster.md requires.
func TestComposePlaceholders(t *testing.T) {
	compose, err := os.ReadFile("../../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile("../../deploy/nginx/herald.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ sed, line string }{
		{`s/server 10\.0\.0\.1:8080 \(.*\);/`, "server " + nodePlaceholder1 + " "},
		{`s/server 10\.0\.0\.2:8080 \(.*\);/`, "server " + nodePlaceholder2 + " "},
		{`s/server_name herald\.example\.com;/`, "server_name herald.example.com;"},
	} {
		if !strings.Contains(string(compose), r.sed) {
			t.Errorf("deploy/compose.yaml lacks the sed expression %q", r.sed)
		}
		if n := strings.Count(string(conf), r.line); n != 1 {
			t.Errorf("deploy/nginx/herald.conf holds %q %d times, want 1", r.line, n)
		}
	}
	if n := strings.Count(string(conf), listenDirective); n != 1 {
		t.Errorf("deploy/nginx/herald.conf holds %q %d times, want 1 (compose publishes port 80)", listenDirective, n)
	}
	for _, want := range []string{
		`"--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"`,
		`"redis://redis:6379/0?prefix=herald:"`,
		`["CMD", "herald", "probe", "http://127.0.0.1:8080/readyz"]`,
		`./nginx/herald.conf:/etc/herald/herald.conf:ro`,
	} {
		if !strings.Contains(string(compose), want) {
			t.Errorf("deploy/compose.yaml lacks %s", want)
		}
	}
}
