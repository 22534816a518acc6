package redistest

import (
	"bytes"
	"testing"

	"github.com/herald-hub/herald/internal/blackhole"
)

// NewBlackhole starts a proxy to the Redis at address to whose Pub/Sub
// connections (those whose client sent a SUBSCRIBE) can be blackholed;
// connections made afterwards are forwarded as usual.
func NewBlackhole(t testing.TB, to string) *blackhole.Proxy {
	return blackhole.New(t, to, func(b []byte) bool { return bytes.Contains(bytes.ToUpper(b), []byte("SUBSCRIBE")) })
}
