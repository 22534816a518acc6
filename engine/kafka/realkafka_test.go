package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/enginetest"
)

// TestRealKafka runs the conformance suite against the brokers in
// HERALD_TEST_KAFKA_BROKERS (host:port, comma-separated), on a topic of its
// own per engine, deleted at the end. Real Kafka is optional: CI has none.
func TestRealKafka(t *testing.T) {
	brokers := os.Getenv("HERALD_TEST_KAFKA_BROKERS")
	if brokers == "" {
		t.Skip("HERALD_TEST_KAFKA_BROKERS is not set: no real Kafka to test against (the kfake tests cover the engine)")
	}
	seeds := strings.Split(brokers, ",")
	newTopic := func(t *testing.T) string {
		b := make([]byte, 6)
		rand.Read(b)
		topic := "herald-test-" + hex.EncodeToString(b)
		t.Cleanup(func() {
			cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
			if err != nil {
				return
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			kadm.NewClient(cl).DeleteTopic(ctx, topic)
		})
		return topic
	}
	base := func(t *testing.T) Options {
		return Options{
			Brokers:      seeds,
			Topic:        newTopic(t),
			Partitions:   4,
			Dir:          t.TempDir(),
			TrimInterval: time.Hour,
			FetchMaxWait: 50 * time.Millisecond,
		}
	}
	enginetest.Run(t, enginetest.Harness{
		Open: func(t *testing.T, o enginetest.Options) engine.Engine {
			opt := base(t)
			opt.MaxLen = o.MaxLen
			return openEngine(t, opt)
		},
		OpenPeer: func(t *testing.T, e engine.Engine) engine.Engine {
			opt := optionsOf(t, e)
			opt.Dir = t.TempDir()
			return openEngine(t, opt)
		},
		Reopen: func(t *testing.T, e engine.Engine) engine.Engine {
			opt := optionsOf(t, e)
			if err := e.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openEngine(t, opt)
		},
		Aging: &enginetest.Aging{
			Open: func(t *testing.T, maxAge time.Duration, now func() time.Time) engine.Engine {
				opt := base(t)
				opt.MaxAge, opt.Now = maxAge, now
				return openEngine(t, opt)
			},
			Trim: func(t *testing.T, e engine.Engine) {
				if err := e.(*Engine).trim(); err != nil {
					t.Fatalf("trim: %v", err)
				}
			},
		},
	})
}
