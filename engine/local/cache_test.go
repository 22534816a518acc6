package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-hub/herald/engine"
)

// An append to a topic the store has never seen, and one with a new
// idempotency key, look up keys that are not there. The tables' filters
// answer those lookups without reading the tables' blocks.
func TestLookupsOfAbsentKeysAreAnsweredByFilters(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, dir, Options{NoSync: true})
	var batch []engine.Event
	for i := range 2000 {
		batch = append(batch, engine.Event{Topic: fmt.Sprintf("users/%d", i), ID: fmt.Sprintf("k%d", i), Data: []byte(`{}`)})
	}
	if _, err := e.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	e.Close()

	e = openT(t, dir, Options{NoSync: true}) // no topic state in memory
	before := e.db.Metrics().Filter.Hits
	const appends = 100
	for i := range appends {
		ev := []engine.Event{
			{Topic: fmt.Sprintf("users/new-%d", i), Data: []byte(`{}`)},
			{Topic: "users/7", ID: fmt.Sprintf("new-%d", i), Data: []byte(`{}`)},
		}
		if _, err := e.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	// A filter gives a false positive about once in a hundred lookups.
	if hits, want := e.db.Metrics().Filter.Hits-before, int64(2*appends*9/10); hits < want {
		t.Fatalf("the filters answered %d of %d lookups of absent keys, want at least %d", hits, 2*appends, want)
	}
}

// The block cache is the size asked for, and DefaultCacheSize otherwise.
func TestStoreCacheSize(t *testing.T) {
	for _, tc := range []struct {
		size, want int64
	}{{0, DefaultCacheSize}, {3 << 20, 3 << 20}} {
		dir := t.TempDir()
		e := openT(t, dir, Options{CacheSize: tc.size})
		e.Close()
		files, _ := filepath.Glob(filepath.Join(dir, "OPTIONS-*"))
		if len(files) == 0 {
			t.Fatal("the store wrote no OPTIONS file")
		}
		raw, err := os.ReadFile(files[len(files)-1])
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("cache_size=%d\n", tc.want); !strings.Contains(string(raw), want) {
			t.Errorf("CacheSize %d: the store's options do not hold %q", tc.size, strings.TrimSpace(want))
		}
	}
}
