package engine

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Engines are chosen by URL (-engine local, memory://, redis://...),
// through a registry that each engine package fills from its init function, so
// the binary links the engines it imports and nothing else knows their names.

// Config is what every engine is opened with, beside its URL.
type Config struct {
	// DataDir is the node's data directory, for engines that keep files.
	DataDir string
	// MaxLen is the most events kept per topic (0: the engine's default).
	MaxLen int
	// MaxAge drops events older than this (0: the engine's default; negative:
	// no age limit).
	MaxAge time.Duration
	// Reserve is the room kept back for a full disk, for engines with a
	// local store (0: the engine's default).
	Reserve int64
	// IdempotencyWindow is how long an Event.ID is remembered per topic (0:
	// the engine's default).
	IdempotencyWindow time.Duration
	// SyncInterval, for engines with a local log, answers appends before
	// their fsync and fsyncs at most this long after (0: fsync before every
	// answer). Events are still delivered only once fsynced.
	SyncInterval time.Duration
	// CacheSize is the block cache, in bytes, of engines with a local store
	// (0: the engine's default).
	CacheSize int64
	// Logger receives the engine's messages.
	Logger *slog.Logger
}

// An Opener opens an engine of its scheme from a URL and the node's Config.
type Opener func(u *url.URL, c Config) (Engine, error)

var registry = struct {
	sync.Mutex
	openers map[string]Opener
}{openers: map[string]Opener{}}

// Register makes an engine available under a URL scheme. It panics when the
// scheme is registered twice: two packages claiming one name is a build error.
func Register(scheme string, open Opener) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.openers[scheme]; dup {
		panic("engine: scheme " + scheme + " registered twice")
	}
	registry.openers[scheme] = open
}

// Schemes lists the registered schemes, sorted.
func Schemes() []string {
	registry.Lock()
	defer registry.Unlock()
	var out []string
	for s := range registry.openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Open opens the engine named by rawURL. A bare name ("local") is the URL
// "local:". An unknown scheme is an error that lists the known ones.
func Open(rawURL string, c Config) (Engine, error) {
	if !strings.Contains(rawURL, ":") {
		rawURL += ":"
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("engine URL %q: %w", rawURL, err)
	}
	registry.Lock()
	open, ok := registry.openers[u.Scheme]
	registry.Unlock()
	if !ok {
		return nil, fmt.Errorf("engine %q: unknown scheme %q (this herald has: %s)", rawURL, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(u, c)
}
