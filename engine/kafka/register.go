package kafka

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
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
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "topic":
			if v == "" {
				return opt, fmt.Errorf("engine kafka: empty topic")
			}
			opt.Topic = v
		case "partitions":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10_000 {
				return opt, fmt.Errorf("engine kafka: partitions=%q, want 1 to 10000", v)
			}
			opt.Partitions = int32(n)
		case "replication":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 32 {
				return opt, fmt.Errorf("engine kafka: replication=%q, want 1 to 32", v)
			}
			opt.ReplicationFactor = int16(n)
		case "linger":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return opt, fmt.Errorf("engine kafka: linger=%q, want a duration, 0 for none", v)
			}
			opt.Linger = d
			if d == 0 {
				opt.Linger = -1
			}
		case "fetch-max-wait":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return opt, fmt.Errorf("engine kafka: fetch-max-wait=%q, want a positive duration", v)
			}
			opt.FetchMaxWait = d
		default:
			return opt, fmt.Errorf("engine kafka: unknown option %q (known: topic, partitions, replication, linger, fetch-max-wait)", k)
		}
	}
	return opt, nil
}
