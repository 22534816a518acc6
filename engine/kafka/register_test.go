package kafka

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
)

func TestParseURL(t *testing.T) {
	u, err := url.Parse("kafka://b1:9092,b3,b2:9093?topic=notify&partitions=64&replication=3&linger=0&fetch-max-wait=20ms")
	if err != nil {
		t.Fatal(err)
	}
	opt, err := parseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(opt.Brokers, []string{"b1:9092", "b3:9092", "b2:9093"}) || opt.Topic != "notify" || opt.Partitions != 64 ||
		opt.ReplicationFactor != 3 || opt.Linger >= 0 || opt.FetchMaxWait != 20*time.Millisecond {
		t.Fatalf("parsed %+v", opt)
	}
	for _, bad := range []string{"kafka://", "kafka://h:9092/path", "kafka://h:9092?partitions=0", "kafka://h:9092?topic=", "kafka://h:9092?nope=1", "kafka://h:9092?linger=-1s", "kafka://h:9092?topic=a&topic=b"} {
		u, err := url.Parse(bad)
		if err != nil {
			continue
		}
		if _, err := parseURL(u); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestRegistered(t *testing.T) {
	if !slices.Contains(engine.Schemes(), "kafka") {
		t.Fatalf("schemes %v lack kafka", engine.Schemes())
	}
	_, err := engine.Open("kafka://127.0.0.1:9092", engine.Config{})
	if err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("open without a data dir: %v", err)
	}
}
