package nats

import (
	"fmt"
	"net/url"
	"strings"

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
	q := engine.NewURLQuery("nats", u)
	q.String("stream", &opt.Stream)
	q.Int("replicas", 1, 5, &opt.Replicas)
	q.Duration("sweep", false, &opt.SweepInterval)
	servers := q.Strings("server")
	if err := q.Err(true, "server", "stream", "replicas", "sweep"); err != nil {
		return nil, err
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
