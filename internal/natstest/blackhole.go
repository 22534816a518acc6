package natstest

import (
	"testing"

	"github.com/herald-hub/herald/internal/blackhole"
)

// Blackhole is a proxy to a NATS server whose connections can be
// blackholed or deafened; connections made afterwards are forwarded as
// usual.
type Blackhole struct{ *blackhole.Proxy }

// NewBlackhole starts a proxy to the server at address to (host:port).
func NewBlackhole(t testing.TB, to string) *Blackhole {
	return &Blackhole{blackhole.New(t, to, nil)}
}

// URL is the proxy's nats:// URL.
func (p *Blackhole) URL() string { return "nats://" + p.Addr() }
