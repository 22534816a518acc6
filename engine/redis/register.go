package redis

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

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
	q := u.Query()
	if v, ok := q["prefix"]; ok {
		if v[0] == "" {
			return nil, fmt.Errorf("engine redis: empty prefix")
		}
		opt.Prefix = v[0]
		q.Del("prefix")
	}
	if v, ok := q["pubsub"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("engine redis: pubsub=%q, want 1 to 64 connections", v[0])
		}
		opt.PubSubConns = n
		q.Del("pubsub")
	}
	if v, ok := q["probe"]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("engine redis: probe=%q, want a positive duration", v[0])
		}
		opt.ProbeInterval = d
		q.Del("probe")
	}
	if v, ok := q["sweep"]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("engine redis: sweep=%q, want a positive duration (the sweep cannot be turned off)", v[0])
		}
		opt.SweepInterval = d
		q.Del("sweep")
	}
	if v, ok := q["meta-ttl"]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("engine redis: meta-ttl=%q, want a positive duration", v[0])
		}
		opt.MetaTTL = d
		q.Del("meta-ttl")
	}
	rest := *u
	rest.RawQuery = q.Encode()
	co, err := rueidis.ParseURL(rest.String())
	if err != nil {
		return nil, fmt.Errorf("engine redis: %w", err)
	}
	opt.Client = co
	return Open(opt)
}
