package server

import (
	"archive/tar"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A backup holds every topic, private ones too: only a publish key gets it.
func TestBackupNeedsAPublishKey(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	n.publish("users/42", "t", "secret")
	get := func(auth string) *http.Response {
		req, _ := http.NewRequest("GET", n.srv.URL+"/v1/backup", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, auth := range []string{"", "Bearer wrong-key", "Bearer a.b.c"} {
		resp := get(auth)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(body), `"error"`) {
			t.Errorf("backup with %q: %d %s, want a JSON 401", auth, resp.StatusCode, body)
		}
	}
	resp := get("Bearer " + testKey)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("backup with the publish key: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	tr := tar.NewReader(resp.Body)
	manifest := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		manifest = manifest || strings.HasPrefix(hdr.Name, "MANIFEST-")
	}
	if !manifest {
		t.Fatal("the backup archive holds no MANIFEST")
	}
}
