package engine_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/herald-hub/herald/engine"
)

func TestOpenByScheme(t *testing.T) {
	var got *url.URL
	engine.Register("test-scheme", func(u *url.URL, c engine.Config) (engine.Engine, error) {
		got = u
		return nil, nil
	})
	if _, err := engine.Open("test-scheme://host:1/ns?x=1", engine.Config{}); err != nil {
		t.Fatal(err)
	}
	if got.Host != "host:1" || got.Path != "/ns" || got.Query().Get("x") != "1" {
		t.Fatalf("opener got %v", got)
	}
	if _, err := engine.Open("test-scheme", engine.Config{}); err != nil || got.Scheme != "test-scheme" {
		t.Fatalf("a bare name: %v, %v", got, err)
	}
	_, err := engine.Open("nosuch://x", engine.Config{})
	if err == nil || !strings.Contains(err.Error(), `unknown scheme "nosuch"`) || !strings.Contains(err.Error(), "test-scheme") {
		t.Fatalf("unknown scheme: %v, want an error naming it and the known ones", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a scheme registered twice did not panic")
		}
	}()
	engine.Register("test-scheme", nil)
}
