package cluster

import (
	"os"
	"testing"

	"github.com/herald-hub/herald/internal/natstest"
)

// The same nginx checks with the two nodes on the NATS engine: a stream of
// the test's own on the NATS of HERALD_TEST_NATS_URL.
func TestNginxInFrontOfTwoNodesOnNATS(t *testing.T) {
	natsURL := os.Getenv("HERALD_TEST_NATS_URL")
	need(t, natsURL != "", "set HERALD_TEST_NATS_URL (for example nats://127.0.0.1:4222) to run the nginx cluster test on NATS")
	_, err := os.Stat(nginxPath)
	need(t, err == nil, nginxPath+" is missing: apt-get install nginx to run the nginx cluster test")
	nginxInFrontOfTwoNodes(t, buildHerald(t), natsURL+"?stream="+natstest.Name(t, natsURL, "cluster"))
}
