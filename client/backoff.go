package client

import (
	"math/rand/v2"
	"time"
)

// delay returns how long to wait before the next attempt. After a stream that
// was up, it is the base delay plus up to half of it, so clients the server
// closed together (shutdown, max lifetime) do not all come back at once, and
// never earlier than the server's retry: asked. After failures it is full
// jitter over an exponentially growing ceiling, at least retryAfter.
func delay(base, maxBackoff time.Duration, failures int, retryAfter time.Duration) time.Duration {
	if failures == 0 {
		return base + randN(base/2)
	}
	ceil := base
	for i := 1; i < failures && ceil < maxBackoff; i++ {
		ceil *= 2
	}
	ceil = min(ceil, max(maxBackoff, base))
	return max(randN(ceil), retryAfter)
}

func randN(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
