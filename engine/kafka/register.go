package kafka

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-hub/herald/engine"
)

// The kafka engine is "kafka://host:port[,host:port...][?options]": the seed
// brokers are a comma-separated list in the URL's host part (a broker
// without a port is on 9092, but Go's URL parser wants the last one's port
// written: kafka://b1,b2:9092). Options:
// topic (the Kafka topic, default "herald"), partitions (its partition
// count: the topic is created with it when missing, and a topic with
// another count is refused; default the existing topic's count, or 32),
// replication (the replication factor used when creating the topic,
// default the broker's), linger (the producer's linger, a Go duration,
// default 1ms; 0 for none), fetch-max-wait (the reader's long poll, default
// 100ms). The replica lives in <data dir>/kafka/<topic>.
func init() {
	engine.Register("kafka", openURL)
}

func openURL(u *url.URL, c engine.Config) (engine.Engine, error) {
	opt, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	if c.DataDir == "" {
		return nil, fmt.Errorf("engine kafka needs a data dir for its replica of the log")
	}
	opt.Dir = filepath.Join(c.DataDir, "kafka", opt.Topic)
	opt.MaxLen = c.MaxLen
	opt.MaxAge = c.MaxAge
	opt.IdempotencyWindow = c.IdempotencyWindow
	opt.CacheSize = c.CacheSize
	opt.Logger = c.Logger
	return Open(opt)
}

func parseURL(u *url.URL) (Options, error) {
	var opt Options
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.Fragment != "" {
		return opt, fmt.Errorf("engine kafka: want kafka://host:port[,host:port...][?options], got %q", u.Redacted())
	}
	for b := range strings.SplitSeq(u.Host, ",") {
		if b = strings.TrimSpace(b); b == "" {
			continue
		}
		if !strings.Contains(b, ":") {
			b += ":9092"
		}
		opt.Brokers = append(opt.Brokers, b)
	}
	if len(opt.Brokers) == 0 {
		return opt, fmt.Errorf("engine kafka: no broker in %q (want kafka://host:port[,host:port...])", u.Redacted())
	}
	q := engine.NewURLQuery("kafka", u)
	q.String("topic", &opt.Topic)
	partitions, replication := -1, -1
	q.Int("partitions", 1, 10_000, &partitions)
	q.Int("replication", 1, 32, &replication)
	linger := time.Duration(-1)
	q.Duration("linger", true, &linger)
	q.Duration("fetch-max-wait", false, &opt.FetchMaxWait)
	if err := q.Err(true, "topic", "partitions", "replication", "linger", "fetch-max-wait"); err != nil {
		return opt, err
	}
	if partitions > 0 {
		opt.Partitions = int32(partitions)
	}
	if replication > 0 {
		opt.ReplicationFactor = int16(replication)
	}
	switch {
	case linger == 0:
		opt.Linger = -1 // none: Options' zero is the default linger
	case linger > 0:
		opt.Linger = linger
	}
	return opt, nil
}
