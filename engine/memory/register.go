package memory

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/herald-hub/herald/engine"
)

// The memory engine is "memory://": a log of its own, in this process, lost
// at exit; for tests and demos. "memory://?sparse=K" gives offsets that grow
// by a random 1..K, as a log shared by many topics would.
func init() {
	engine.Register("memory", func(u *url.URL, c engine.Config) (engine.Engine, error) {
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
			return nil, fmt.Errorf("engine memory takes no address, got %q", u)
		}
		opt := Options{MaxLen: c.MaxLen, MaxAge: max(c.MaxAge, 0), IdempotencyWindow: c.IdempotencyWindow}
		for k, v := range u.Query() {
			switch k {
			case "sparse":
				n, err := strconv.Atoi(v[0])
				if err != nil || n < 1 {
					return nil, fmt.Errorf("engine memory: sparse=%q, want a number of at least 1", v[0])
				}
				opt.Sparse = n
			default:
				return nil, fmt.Errorf("engine memory: unknown option %q (it takes sparse)", k)
			}
		}
		return New(opt), nil
	})
}
