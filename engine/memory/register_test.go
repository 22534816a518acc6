package memory_test

import (
	"context"
	"testing"

	"github.com/herald-hub/herald/engine"
	_ "github.com/herald-hub/herald/engine/memory"
)

func TestOpenedByURL(t *testing.T) {
	for _, u := range []string{"memory://", "memory:", "memory://?sparse=5"} {
		e, err := engine.Open(u, engine.Config{})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if _, err := e.Append(context.Background(), []engine.Event{{Topic: "a", Type: "t", Data: []byte("x")}}); err != nil {
			t.Fatalf("%s: append: %v", u, err)
		}
		e.Close()
	}
	for _, u := range []string{"memory://host", "memory://?sparse=0", "memory://?other=1"} {
		if e, err := engine.Open(u, engine.Config{}); err == nil {
			e.Close()
			t.Errorf("%s accepted", u)
		}
	}
}
