package local

import (
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/herald-hub/herald/engine"
)

// The local engine is "local" (or "local:"): its store is the log directory
// of the node's data dir. It takes no other part of a URL.
func init() {
	engine.Register("local", func(u *url.URL, c engine.Config) (engine.Engine, error) {
		if u.Opaque != "" || u.Host != "" || u.Path != "" || u.RawQuery != "" {
			return nil, fmt.Errorf("engine local takes no address or options (its store is in -data-dir), got %q", u)
		}
		if c.DataDir == "" {
			return nil, fmt.Errorf("engine local needs a data dir")
		}
		return Open(filepath.Join(c.DataDir, "log"), Options{
			MaxLen:            c.MaxLen,
			MaxAge:            c.MaxAge,
			Reserve:           c.Reserve,
			IdempotencyWindow: c.IdempotencyWindow,
			SyncInterval:      c.SyncInterval,
			CacheSize:         c.CacheSize,
			Logger:            c.Logger,
		})
	})
}
