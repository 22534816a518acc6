package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
	"github.com/herald-hub/herald/sse"
)

func TestPublishedEventReachesSubscriber(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	s := n.dial("", "rooms/7")
	waitConnected(t, n, 1)
	r := n.publish("rooms/7", "state", `{"phase":"night"}`)
	ev := next(t, s, 5*time.Second)
	if ev.Type != "state" || ev.Topic != "rooms/7" || ev.Data != `{"phase":"night"}` || ev.ID == "" {
		t.Fatalf("got %+v", ev)
	}
	if r.Offset != 1 || offsetOf(t, ev.ID, "rooms/7") != 1 {
		t.Fatalf("offsets: publish %d, event id %q", r.Offset, ev.ID)
	}
}

// waitConnected waits until the hub holds n streams: a stream's live interest
// is registered before its first bytes, so events published after this are seen.
func waitConnected(t *testing.T, n *testNode, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.hub.Stats().Connections < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams connected, want %d", n.hub.Stats().Connections, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStreamStartsWithRetryCommentAndCursor(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	n.publish("a", "", "before")
	resp, err := http.Get(n.eventsURL("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for k, v := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// Nothing is published after connecting: the preamble must arrive on its own.
	br := bufio.NewReader(resp.Body)
	var lines []string
	for len(lines) < 6 {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		lines = append(lines, strings.TrimRight(l, "\n"))
	}
	// The cursor travels as a named event with JSON data: the one block every
	// client library stores the id of without handing it to onmessage.
	if !strings.HasPrefix(lines[0], "retry: ") || !strings.HasPrefix(lines[1], ":") || !strings.HasPrefix(lines[2], "id: ") ||
		lines[3] != "event: "+hub.ConnectedType || lines[4] != "data: {}" || lines[5] != "" {
		t.Fatalf("preamble %q", lines)
	}
	if off := offsetOf(t, strings.TrimPrefix(lines[2], "id: "), "a"); off != 1 {
		t.Fatalf("starting cursor at offset %d, want the head (1)", off)
	}
}

func TestMultiTopicCursorResumesEveryTopic(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	const total = 200
	s := n.dial("", "a", "b")
	waitConnected(t, n, 1)
	for i := range total {
		topic := "a"
		if i%2 == 1 {
			topic = "b"
		}
		n.publish(topic, "", fmt.Sprint(i))
	}
	// Disconnect at a random point of the interleaved sequence.
	cut := 1 + rand.IntN(total-2)
	var last string
	for range cut {
		last = next(t, s, 5*time.Second).ID
	}
	s.Close()
	seenA, seenB := offsetOf(t, last, "a"), offsetOf(t, last, "b")

	s2 := n.dial(last, "a", "b")
	got := collect(t, s2, map[string]int{"a": total/2 - int(seenA), "b": total/2 - int(seenB)}, 5*time.Second)
	for topic, seen := range map[string]uint64{"a": seenA, "b": seenB} {
		for i, ev := range got[topic] {
			if off := offsetOf(t, ev.ID, topic); off != seen+uint64(i)+1 {
				t.Fatalf("%s: event %d has offset %d, want %d", topic, i, off, seen+uint64(i)+1)
			}
		}
	}
	expectQuiet(t, s2, 100*time.Millisecond)
}

func expectQuiet(t *testing.T, s *client.Stream, d time.Duration) {
	t.Helper()
	select {
	case ev := <-s.Events():
		t.Fatalf("unexpected extra event %+v", ev)
	case <-time.After(d):
	}
}

// Hand-over: while 8 goroutines publish, 100 clients connect with cursors at
// random points; each must see every later event exactly once, in order.
func TestReplayToLiveHandOverUnderConcurrentPublishing(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	const topic = "rooms/handover"
	const publishers, perPublisher, clients = 8, 150, 100

	var mu sync.Mutex
	ids := map[uint64]string{} // offset -> id, as publish answered
	data := map[uint64]string{}
	record := func(r publishResult, d string) {
		mu.Lock()
		ids[r.Offset], data[r.Offset] = r.ID, d
		mu.Unlock()
	}
	record(n.publish(topic, "", "seed"), "seed")

	var pub sync.WaitGroup
	for p := range publishers {
		pub.Go(func() {
			for i := range perPublisher {
				d := fmt.Sprintf("p%d-%d", p, i)
				record(n.publish(topic, "", d), d)
			}
		})
	}
	type result struct {
		from uint64
		got  []client.Event
	}
	results := make(chan result, clients)
	var subs sync.WaitGroup
	for range clients {
		// A cursor at a random offset already published.
		mu.Lock()
		var from uint64
		var id string
		for off, i := range ids { // map order is random
			from, id = off, i
			break
		}
		mu.Unlock()
		s := n.dial(id, topic)
		subs.Go(func() {
			var got []client.Event
			timeout := time.After(30 * time.Second)
			for from+uint64(len(got)) < 1+publishers*perPublisher {
				select {
				case ev, ok := <-s.Events():
					if !ok {
						t.Errorf("stream stopped: %v", s.Err())
						results <- result{from, got}
						return
					}
					got = append(got, ev)
				case <-timeout:
					results <- result{from, got}
					return
				}
			}
			results <- result{from, got}
		})
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	}
	pub.Wait()
	subs.Wait()
	close(results)
	const last = 1 + publishers*perPublisher
	for r := range results {
		if r.from+uint64(len(r.got)) != last {
			t.Errorf("client from %d got %d events, want %d", r.from, len(r.got), last-r.from)
			continue
		}
		for i, ev := range r.got {
			want := r.from + uint64(i) + 1
			if off := offsetOf(t, ev.ID, topic); off != want || ev.Data != data[want] {
				t.Errorf("client from %d: event %d is offset %d %q, want %d %q", r.from, i, off, ev.Data, want, data[want])
				break
			}
		}
	}
}

func TestGapAnnouncedWhenHistoryNoLongerCoversCursor(t *testing.T) {
	n := newTestNode(t, nodeOptions{retention: 10})
	var old string
	for i := range 60 {
		r := n.publish("news", "", fmt.Sprint(i))
		if i == 9 { // offset 10: 50 events old at the end
			old = r.ID
		}
	}
	s := n.dial(old, "news")
	gap := next(t, s, 5*time.Second)
	if gap.Type != hub.GapType {
		t.Fatalf("first event %+v, want %s", gap, hub.GapType)
	}
	var body struct{ Topics []string }
	if err := json.Unmarshal([]byte(gap.Data), &body); err != nil || len(body.Topics) != 1 || body.Topics[0] != "news" {
		t.Fatalf("gap data %q: %v", gap.Data, err)
	}
	// What history still holds follows the announcement, in order.
	for i := range 10 {
		ev := next(t, s, 5*time.Second)
		if want := fmt.Sprint(50 + i); ev.Data != want {
			t.Fatalf("retained event %d = %q, want %q", i, ev.Data, want)
		}
	}
}

func TestUnreadableCursorAnnouncesGapInsteadOfSilence(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	s := n.dial("not-a-cursor!", "a")
	if ev := next(t, s, 5*time.Second); ev.Type != hub.GapType {
		t.Fatalf("got %+v, want a %s event", ev, hub.GapType)
	}
	n.publish("a", "", "live")
	if ev := next(t, s, 5*time.Second); ev.Data != "live" {
		t.Fatalf("got %+v", ev)
	}
}

// A cursor past the end of the topic's log (forged, or from before a store was
// restored from an older copy) must not make the stream skip the next events as
// already sent.
func TestCursorAheadOfHistoryAnnouncesGapAndDeliversLive(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	r := n.publish("a", "", "0")
	head := firstPos(t, n, "a")
	head.Offset = offsetOf(t, r.ID, "a") + 100
	s := n.dial(hub.EncodeCursor("a", head, 0), "a")
	if ev := next(t, s, 5*time.Second); ev.Type != hub.GapType {
		t.Fatalf("got %+v, want a %s event", ev, hub.GapType)
	}
	n.publish("a", "", "live")
	if ev := next(t, s, 5*time.Second); ev.Data != "live" {
		t.Fatalf("got %+v, want the live event", ev)
	}
}

// A client that stops reading is cut off once its queue overflows; the others
// keep their latency, and the slow one catches up from history on return. What
// it was sent before the cut is a valid stream: every event it would dispatch is
// whole, even though the cut interrupted a write.
func TestSlowClientIsCutOffWithoutSlowingOthers(t *testing.T) {
	n := newTestNode(t, nodeOptions{hub: hub.Options{QueueSize: 16}})
	const topic = "firehose"
	// The slow client: a raw connection that reads nothing until the end.
	conn, err := net.Dial("tcp", n.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/events?topic=%s HTTP/1.1\r\nHost: x\r\n\r\n", topic)
	waitConnected(t, n, 1)
	fast := n.dial("", topic)
	waitConnected(t, n, 2)

	big := strings.Repeat("x", 16<<10) // fills socket buffers quickly
	payload := func(i int) string { return fmt.Sprintf("%d %s", i, big) }
	var worst time.Duration
	for i := range 400 {
		start := time.Now()
		n.publish(topic, "", payload(i))
		ev := next(t, fast, 5*time.Second)
		if d := time.Since(start); d > worst {
			worst = d
		}
		if ev.Data != payload(i) {
			t.Fatalf("fast client got event %.10q, want %d", ev.Data, i)
		}
	}
	if n.hub.Stats().DroppedSlow == 0 {
		t.Fatal("the slow client was never cut off")
	}
	if worst > 2*time.Second {
		t.Fatalf("fast client waited up to %v for an event while a slow one was attached", worst)
	}
	// Cut off means closed within moments (its goodbye gets 100ms), not at the
	// next heartbeat or write timeout.
	start := time.Now()
	waitFor(t, time.Second, "slow stream closed", func() bool { return n.hub.Stats().Connections == 1 })
	t.Logf("slow stream closed %v after the last publish", time.Since(start))

	// Now read what the slow client was sent, as a browser would.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("slow client response: %v %v", resp, err)
	}
	dec := sse.NewDecoder(resp.Body)
	got := 0
	for {
		ev, err := dec.Next()
		if err != nil {
			break // the body may end abruptly: the cut interrupted a chunk
		}
		if ev.Type == hub.ConnectedType {
			continue // the opening block
		}
		if ev.Data != payload(got) {
			t.Fatalf("slow client would dispatch event %d as %d bytes %.12q..., want it whole (%d bytes)", got, len(ev.Data), ev.Data, len(payload(got)))
		}
		got++
	}
	t.Logf("slow client had %d whole events before the cut", got)

	// On return with its cursor, the slow client catches up from history.
	s := n.dial(hub.EncodeCursor(topic, firstPos(t, n, topic), 0), topic)
	for i := range 400 {
		ev := next(t, s, 5*time.Second)
		if ev.Data != payload(i) {
			t.Fatalf("catch-up event %d = %.10q", i, ev.Data)
		}
	}
}

// firstPos is the position before the topic's first event.
func firstPos(t *testing.T, n *testNode, topic string) engine.Position {
	head, err := n.eng.Head(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	head.Offset = 0
	return head
}
