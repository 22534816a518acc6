package nats

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herald-hub/herald/engine"
)

// The nats engine is "nats://[user:password@]host:port" with
// options in the query: server (host:port of another server of the same
// NATS cluster, repeated as needed), stream (the JetStream stream, default HERALD),
// replicas (of the stream when the engine creates it, default 1), sweep (how
// often subscribed topics' heads are checked and expired events removed, a
// Go duration, default 30s).
func init() {
	engine.Register("nats", openURL)
}

func openURL(u *url.URL, c engine.Config) (engine.Engine, error) {
	opt := Options{
		MaxLen:            c.MaxLen,
		MaxAge:            c.MaxAge,
		IdempotencyWindow: c.IdempotencyWindow,
		Logger:            c.Logger,
	}
	q := u.Query()
	if v, ok := q["stream"]; ok {
		if v[0] == "" {
			return nil, fmt.Errorf("engine nats: empty stream name")
		}
		opt.Stream = v[0]
		q.Del("stream")
	}
	if v, ok := q["replicas"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > 5 {
			return nil, fmt.Errorf("engine nats: replicas=%q, want 1 to 5", v[0])
		}
		opt.Replicas = n
		q.Del("replicas")
	}
	if v, ok := q["sweep"]; ok {
		d, err := time.ParseDuration(v[0])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("engine nats: sweep=%q, want a positive duration (the sweep cannot be turned off)", v[0])
		}
		opt.SweepInterval = d
		q.Del("sweep")
	}
	servers := q["server"]
	q.Del("server")
	for k := range q {
		return nil, fmt.Errorf("engine nats: unknown option %q (known: server, stream, replicas, sweep)", k)
	}
	rest := *u
	rest.RawQuery = ""
	opt.URL = rest.String()
	for _, srv := range servers { // more servers of the same cluster
		if srv == "" || strings.ContainsAny(srv, "/,") {
			return nil, fmt.Errorf("engine nats: server=%q, want host:port", srv)
		}
		opt.URL += "," + rest.Scheme + "://" + srv
	}
	return Open(opt)
}
