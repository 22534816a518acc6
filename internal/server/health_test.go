package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The health answers name the node when it has an id, and are unchanged
// without one; herald_node_info carries the id.
func TestHealthNamesTheNode(t *testing.T) {
	get := func(n *testNode, path string) string {
		resp, err := http.Get(n.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	n := newTestNode(t, nodeOptions{server: Config{NodeID: "eu-1"}})
	if b := get(n, "/healthz"); b != `{"node":"eu-1","status":"ok"}` {
		t.Errorf("/healthz: %s", b)
	}
	if b := get(n, "/readyz"); b != `{"node":"eu-1","status":"ready"}` {
		t.Errorf("/readyz: %s", b)
	}
	if m := get(n, "/metrics"); !strings.Contains(m, `herald_node_info{node="eu-1"} 1`) {
		t.Error("/metrics lacks herald_node_info")
	}
	n = newTestNode(t, nodeOptions{})
	if b := get(n, "/healthz"); b != `{"status":"ok"}` {
		t.Errorf("/healthz without a node id: %s", b)
	}
	if m := get(n, "/metrics"); strings.Contains(m, "herald_node_info") {
		t.Error("herald_node_info without a node id")
	}
}
