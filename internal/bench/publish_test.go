package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// The pump never puts more than the publisher's batch in one request, and a
// batch of one goes as a single JSON object, as applications send it.
func TestHeraldPublisherBatchSize(t *testing.T) {
	for _, batch := range []int{1, 3} {
		var mu sync.Mutex
		var bodies [][]byte
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond) // let events queue up behind the request
		}))
		client := newPublishClient(1, nil)
		pub := &heraldPublisher{client: client, url: srv.URL, key: "k", topics: []string{"a", "b"}, batch: batch}
		p := newPump(pub, 2, 1)
		p.each(context.Background(), 10)
		client.CloseIdleConnections()
		srv.Close()
		if err := p.err(); err != nil {
			t.Fatal(err)
		}
		events := 0
		for _, b := range bodies {
			var one map[string]any
			var many []map[string]any
			switch {
			case json.Unmarshal(b, &one) == nil:
				if batch != 1 && len(bodies) == 20 {
					t.Fatalf("batch %d: every request held one event", batch)
				}
				events++
			case json.Unmarshal(b, &many) == nil:
				if batch == 1 || len(many) < 2 || len(many) > batch {
					t.Fatalf("batch %d: a request held %d events as an array", batch, len(many))
				}
				events += len(many)
			default:
				t.Fatalf("batch %d: body %q is neither an event nor an array", batch, b)
			}
		}
		if events != 20 || p.published.Load() != 20 {
			t.Fatalf("batch %d: %d events sent, %d counted, want 20", batch, events, p.published.Load())
		}
	}
}
