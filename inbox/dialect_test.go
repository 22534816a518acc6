package inbox

import (
	"strings"
	"testing"
)

func TestParseDSN(t *testing.T) {
	for dsn, want := range map[string]string{
		"":                              "sqlite",
		"sqlite:/var/lib/herald/in.db":  "sqlite",
		"/var/lib/herald/in.db":         "sqlite",
		"mysql://u:p@db:3306/herald":    "mysql",
		"mysql://u@db/herald?tls=true":  "mysql",
		"postgres://u@db:5432/herald":   "postgres",
		"postgresql://u@db:5432/herald": "postgres",
	} {
		d, _, err := parseDSN(dsn, "data")
		if err != nil || d.name != want {
			t.Errorf("parseDSN(%q): %q %v, want %s", dsn, d.name, err, want)
		}
	}
	for _, bad := range []string{"mysql://u:secret@db:3306/", "redis://u:secret@x", "sqlite:"} {
		_, _, err := parseDSN(bad, "data")
		if err == nil {
			t.Errorf("parseDSN(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("parseDSN(%q) error shows the password: %v", bad, err)
		}
	}
	_, src, _ := parseDSN("mysql://u:p@db/herald", "")
	if !strings.Contains(src, "tcp(db:3306)/herald") || !strings.Contains(src, "charset=utf8mb4") {
		t.Errorf("mysql source %q", src)
	}
}

func TestStatements(t *testing.T) {
	got := statements("-- a comment\nCREATE TABLE a (\n  x INT\n);\n\nCREATE INDEX i ON a (x);\n")
	if len(got) != 2 || !strings.HasPrefix(got[0], "CREATE TABLE a (") || got[1] != "CREATE INDEX i ON a (x)" {
		t.Fatalf("%q", got)
	}
}
