package redis

import (
	"fmt"
	"net/url"

	"github.com/redis/rueidis"

	"github.com/herald-hub/herald/engine"
)

// The redis engine is "redis://[user:password@]host:port/db" or "rediss://"
// for TLS. Options in the query: prefix (of every key and channel, default
// "herald:"), pubsub (Pub/Sub connections, default 2), meta-ttl (how long an
// idle topic's head and epoch are kept, a Go duration, default 720h), probe
// (how long a Pub/Sub connection may stay idle before a probe checks that it
// still receives, and how long the probe has to arrive; default 30s), sweep
// (how often the heads of subscribed topics are compared with what was
// delivered; default 5m, and 0 is refused); the other query options are
// rueidis's (dial_timeout, ...).
func init() {
	for _, scheme := range []string{"redis", "rediss"} {
		engine.Register(scheme, openURL)
	}
}

func openURL(u *url.URL, c engine.Config) (engine.Engine, error) {
	opt := Options{
		MaxLen:            c.MaxLen,
		MaxAge:            c.MaxAge,
		IdempotencyWindow: c.IdempotencyWindow,
		Logger:            c.Logger,
	}
	q := engine.NewURLQuery("redis", u)
	q.String("prefix", &opt.Prefix)
	q.Int("pubsub", 1, 64, &opt.PubSubConns)
	q.Duration("probe", false, &opt.ProbeInterval)
	q.Duration("sweep", false, &opt.SweepInterval)
	q.Duration("meta-ttl", false, &opt.MetaTTL)
	if err := q.Err(false); err != nil {
		return nil, err
	}
	rest := *u
	rest.RawQuery = q.Rest().Encode()
	co, err := rueidis.ParseURL(rest.String())
	if err != nil {
		return nil, fmt.Errorf("engine redis: %w", err)
	}
	opt.Client = co
	return Open(opt)
}
