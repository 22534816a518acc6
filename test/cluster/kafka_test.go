package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestKafkaTwoNodes runs two herald processes on the kafka engine, against
// an in-process kfake broker: an event published on either node reaches a
// stream on the other, a stream resumes from its Last-Event-ID on the other
// node, and a node killed and restarted on its data dir (its replica) goes
// on in the same epoch.
func TestKafkaTwoNodes(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	bin := buildHerald(t)
	engineURL := fmt.Sprintf("kafka://%s?partitions=8", c.ListenAddrs()[0])
	nodeA := startNode(t, bin, engineURL)
	nodeB := startNode(t, bin, engineURL)

	topic := "kafka/two"
	s := nodeB.stream(t, topic, "")
	nodeA.publish(t, topic, "a1")
	nodeB.publish(t, topic, "b2")
	got := s.take(t, 2)
	wantData(t, got, "a1", "b2")
	last := got[1].id
	s.close()

	nodeA.publish(t, topic, "a3")
	nodeB.publish(t, topic, "b4")
	for _, n := range []*node{nodeA, nodeB} {
		r := n.stream(t, topic, last)
		wantData(t, r.take(t, 2), "a3", "b4")
		r.close()
	}

	nodeA.kill(t)
	nodeB.publish(t, topic, "b5")
	nodeA.restart(t)
	r := nodeA.stream(t, topic, last)
	wantData(t, r.take(t, 3), "a3", "b4", "b5")
	start := time.Now()
	nodeB.publish(t, topic, "b6")
	wantData(t, r.take(t, 1), "b6")
	t.Logf("published on one node, received on the other after %v", time.Since(start))
	r.close()
}
