package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/client"
)

// roomsFreeAddr returns a loopback address with a port free a moment ago.
func roomsFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// roomsStart starts a process that lives as long as the test, its output in
// the test's log when the test fails.
func roomsStart(t *testing.T, name string, env []string, args ...string) {
	t.Helper()
	var out bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	w := &lockedWriter{mu: &mu, w: &out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
			mu.Unlock()
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// roomsWaitUp waits until url answers 200.
func roomsWaitUp(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within 30s (last error: %v)", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roomState is the part of examples/rooms' State the test reads.
type roomState struct {
	Room     string          `json:"room"`
	Version  uint64          `json:"version"`
	Board    []string        `json:"board"`
	Moves    uint64          `json:"moves"`
	LastMove json.RawMessage `json:"last_move"`
}

// TestRoomsExample builds herald and examples/rooms, starts both, follows
// rooms/1 with members (Herald's Go client) and makes moves: every member
// gets every state, in order, once; the polling endpoint answers the latest;
// a member joining late gets the current state from GET state and the next
// ones from the stream; a room id holding '/' (as `herald bench` names its
// topics) works on both endpoints.
func TestRoomsExample(t *testing.T) {
	setup(t, "nothing more than Go")
	dir := t.TempDir()
	bins := build(t, dir, "./cmd/herald", "./examples/rooms")
	herald, rooms := bins[0], bins[1]
	const key = "rooms-example-test-key-0123456789"
	heraldAddr, roomsAddr := roomsFreeAddr(t), roomsFreeAddr(t)
	heraldURL, roomsURL := "http://"+heraldAddr, "http://"+roomsAddr
	roomsStart(t, herald, []string{"HERALD_PUBLISH_KEY=" + key},
		"serve", "-addr", heraldAddr, "-data-dir", filepath.Join(dir, "data"), "-inbox-dsn", "off")
	roomsWaitUp(t, heraldURL+"/healthz")
	roomsStart(t, rooms, []string{"HERALD_PUBLISH_KEY=" + key}, "-addr", roomsAddr, "-herald", heraldURL)
	roomsWaitUp(t, roomsURL+"/healthz")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A room's state before its first move: 404, as the bench's pollers expect.
	if code, _ := roomsGet(t, roomsURL+"/rooms/1/state"); code != http.StatusNotFound {
		t.Fatalf("GET /rooms/1/state before any move: %d, want 404", code)
	}

	const members, moves = 20, 30
	streams := make([]*client.Stream, members)
	connected := make(chan struct{}, members)
	for i := range streams {
		var once sync.Once
		streams[i] = client.Dial(ctx, client.Config{
			URL: heraldURL + "/v1/events?topic=" + url.QueryEscape("rooms/1"),
			OnState: func(s client.State, _ error) {
				if s == client.Connected {
					once.Do(func() { connected <- struct{}{} })
				}
			},
		})
		defer streams[i].Close()
	}
	for range members {
		select {
		case <-connected:
		case <-ctx.Done():
			t.Fatal("the members' streams did not connect")
		}
	}

	// Each member collects its states on its own goroutine.
	got := make([][]roomState, members)
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(got[i]) < moves {
				select {
				case ev, ok := <-s.Events():
					if !ok {
						return
					}
					if ev.Type != "state" || ev.Topic != "rooms/1" {
						t.Errorf("member %d: event of type %q on %q, want state on rooms/1", i, ev.Type, ev.Topic)
						continue
					}
					var st roomState
					if err := json.Unmarshal([]byte(ev.Data), &st); err != nil {
						t.Errorf("member %d: %v in %q", i, err, ev.Data)
						continue
					}
					got[i] = append(got[i], st)
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	for m := 1; m <= moves; m++ {
		mark := "X"
		if m%2 == 0 {
			mark = "O"
		}
		st := roomsMove(t, roomsURL, "1", fmt.Sprintf(`{"cell":%d,"mark":%q,"n":%d}`, (m*5)%9, mark, m))
		if st.Version != uint64(m) {
			t.Fatalf("move %d answered version %d", m, st.Version)
		}
	}
	wg.Wait()
	for i, states := range got {
		if len(states) != moves {
			t.Fatalf("member %d got %d states, want %d", i, len(states), moves)
		}
		for j, st := range states {
			if st.Version != uint64(j+1) || st.Room != "1" {
				t.Fatalf("member %d: state %d is room %q version %d, want room 1 version %d", i, j, st.Room, st.Version, j+1)
			}
			if want := fmt.Sprintf(`"n":%d`, j+1); !strings.Contains(string(st.LastMove), want) {
				t.Fatalf("member %d: state %d has last_move %s, want %s in it", i, j, st.LastMove, want)
			}
		}
	}

	// The polling endpoint answers the latest state, the one every member has.
	code, body := roomsGet(t, roomsURL+"/rooms/1/state")
	if code != http.StatusOK {
		t.Fatalf("GET /rooms/1/state: %d %s", code, body)
	}
	var polled roomState
	if err := json.Unmarshal(body, &polled); err != nil {
		t.Fatal(err)
	}
	last := got[0][moves-1]
	if polled.Version != moves || fmt.Sprint(polled.Board) != fmt.Sprint(last.Board) {
		t.Fatalf("GET state: version %d board %v; the members' last: version %d board %v", polled.Version, polled.Board, last.Version, last.Board)
	}

	// A late joiner: its stream first, then GET state once, then the stream.
	late := client.Dial(ctx, client.Config{URL: heraldURL + "/v1/events?topic=" + url.QueryEscape("rooms/1")})
	defer late.Close()
	// Herald sends the stream's headers once the subscription is registered;
	// a move made before that would only show in GET state, which is the
	// point of fetching it after subscribing. Wait for the connection.
	roomsWaitConnected(t, ctx, late)
	code, body = roomsGet(t, roomsURL+"/rooms/1/state")
	var first roomState
	if code != http.StatusOK || json.Unmarshal(body, &first) != nil || first.Version != moves {
		t.Fatalf("late joiner's GET state: %d %s", code, body)
	}
	roomsMove(t, roomsURL, "1", `{"cell":0,"mark":"X"}`)
	select {
	case ev := <-late.Events():
		var st roomState
		if err := json.Unmarshal([]byte(ev.Data), &st); err != nil || st.Version != moves+1 {
			t.Fatalf("late joiner's first event: %q (%v), want version %d", ev.Data, err, moves+1)
		}
	case <-ctx.Done():
		t.Fatal("the late joiner got no state")
	}

	// A room named as the bench names its topics, escaped into one segment.
	id := "bench/0a1b2c3d/all"
	roomsMove(t, roomsURL, url.QueryEscape(id), `{"seq":1,"ts":1700000000000000000}`)
	code, body = roomsGet(t, roomsURL+"/rooms/"+url.QueryEscape(id)+"/state")
	if code != http.StatusOK || !strings.Contains(string(body), `"seq":1,"ts":1700000000000000000`) || !strings.Contains(string(body), `"room":"bench/0a1b2c3d/all"`) {
		t.Fatalf("GET state of room %q: %d %s", id, code, body)
	}

	// A bad move is refused and changes nothing.
	resp, err := http.Post(roomsURL+"/rooms/1/move", "application/json", strings.NewReader(`{"cell":9,"mark":"X"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a move to cell 9: %d, want 400", resp.StatusCode)
	}
}

func roomsWaitConnected(t *testing.T, ctx context.Context, s *client.Stream) {
	t.Helper()
	for s.LastEventID() == "" {
		if ctx.Err() != nil {
			t.Fatal("the stream did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func roomsMove(t *testing.T, base, id, move string) roomState {
	t.Helper()
	resp, err := http.Post(base+"/rooms/"+id+"/move", "application/json", strings.NewReader(move))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /rooms/%s/move %s: %d %s", id, move, resp.StatusCode, b)
	}
	var st roomState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("POST /rooms/%s/move: %v in %s", id, err, b)
	}
	return st
}

func roomsGet(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
