// Command rooms is a room-state service as a game or a dashboard has one: it
// keeps each room's state, applies moves to it, and publishes every new state
// to the Herald topic rooms/{id}, so that every member of the room gets it
// pushed. It still answers GET /rooms/{id}/state, the endpoint clients used
// to poll every half second, for late joiners and for comparing the two with
// `herald bench --compare polling`. It uses the standard library only.
//
//	HERALD_PUBLISH_KEY=… go run ./examples/rooms -herald http://127.0.0.1:8080 -simulate 1s
//
// Endpoints:
//
//	POST /rooms/{id}/move   a move (JSON object: {"cell":4,"mark":"X"}); answers the new state
//	GET  /rooms/{id}/state  the room's latest state (404 before its first move)
//	GET  /                  a page following a room (?room=1) with EventSource
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Parse(pageHTML))

func main() {
	var (
		addr      = flag.String("addr", "127.0.0.1:8090", "listen address")
		heraldURL = flag.String("herald", envOr("HERALD_URL", "http://127.0.0.1:8080"), "Herald's base URL, to publish to ($HERALD_URL)")
		publicURL = flag.String("herald-public", "", "Herald's base URL as browsers reach it (default: -herald)")
		key       = flag.String("key", os.Getenv("HERALD_PUBLISH_KEY"), "Herald publish key ($HERALD_PUBLISH_KEY)")
		simulate  = flag.Duration("simulate", 0, "play a random move in each of -simulate-rooms this often (0: only POSTed moves)")
		simRooms  = flag.String("simulate-rooms", "1", "comma-separated rooms the simulator plays in")
		maxRooms  = flag.Int("max-rooms", 100000, "rooms kept at most (a move to a new room beyond it is refused)")
		cors      = flag.String("cors-origin", "", "an origin allowed to call the rooms API from a browser (a page served elsewhere, e.g. examples/react), or *")
	)
	flag.Parse()
	if *key == "" {
		log.Fatal("rooms: no publish key: set HERALD_PUBLISH_KEY or -key")
	}
	if *publicURL == "" {
		*publicURL = *heraldURL
	}
	s := &server{
		rooms:  newRooms(*maxRooms),
		herald: newPublisher(*heraldURL, *key),
		public: strings.TrimRight(*publicURL, "/"),
		cors:   *cors,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if *simulate > 0 {
		go s.simulate(ctx, *simulate, strings.Split(*simRooms, ","))
	}
	log.Printf("rooms: listening on http://%s, publishing to %s", ln.Addr(), *heraldURL)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type server struct {
	rooms  *rooms
	herald *publisher
	public string
	cors   string
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rooms/{id}/move", s.move)
	mux.HandleFunc("GET /rooms/{id}/state", s.state)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, struct{ Herald string }{s.public})
	})
	if s.cors == "" {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", s.cors)
		w.Header().Add("Vary", "Origin")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// state answers the room's latest state, as the polling clients asked for it.
func (s *server) state(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rm := s.rooms.get(id)
	if rm == nil {
		httpError(w, http.StatusNotFound, "no state yet for room "+strconv.Quote(id))
		return
	}
	b := rm.encoded.Load()
	if b == nil {
		httpError(w, http.StatusNotFound, "no state yet for room "+strconv.Quote(id))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(*b)
}

// move applies a move and publishes the new state. The room stays locked
// until Herald has stored the state, so the topic holds the versions in the
// order they were made.
func (s *server) move(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validRoomID(id) {
		httpError(w, http.StatusBadRequest, "room id: 1-200 bytes of A-Z a-z 0-9 . _ ~ : / @ + -")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<10))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "a move is 16 KiB at most")
		return
	}
	var raw bytes.Buffer
	var m Move
	if err := json.Compact(&raw, body); err != nil || !bytes.HasPrefix(raw.Bytes(), []byte("{")) {
		httpError(w, http.StatusBadRequest, "a move is a JSON object")
		return
	}
	if err := json.Unmarshal(raw.Bytes(), &m); err != nil {
		httpError(w, http.StatusBadRequest, "move: "+err.Error())
		return
	}
	// A client that hangs up does not cut the publish short: the move is
	// applied, so its state must reach the members.
	st, err := s.apply(context.WithoutCancel(r.Context()), id, m, raw.Bytes())
	switch {
	case errors.Is(err, errBadMove):
		httpError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, errTooManyRooms):
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		// The move is applied and GET state shows it; members get it with
		// the next change that Herald takes.
		log.Printf("rooms: room %s version %d not published: %v", id, st.Version, err)
		httpError(w, http.StatusBadGateway, "the move is applied but Herald did not take the new state: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// apply applies m to room id and publishes the new state to rooms/{id}.
func (s *server) apply(ctx context.Context, id string, m Move, raw []byte) (State, error) {
	rm, err := s.rooms.getOrCreate(id)
	if err != nil {
		return State{}, err
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	st, err := rm.state.apply(m, raw, time.Now())
	if err != nil {
		return st, err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return st, err
	}
	rm.state = st
	rm.encoded.Store(&b)
	// The room stays locked until Herald has the state, so versions reach
	// the topic in order; publishBudget bounds that wait, retries included,
	// so a Herald that is down holds each room for seconds, not minutes.
	pctx, cancel := context.WithTimeout(ctx, publishBudget)
	defer cancel()
	return st, s.herald.publish(pctx, "rooms/"+id, "state", b, strconv.FormatUint(st.Version, 10))
}

// publishBudget is the longest a move waits for Herald to take its state.
const publishBudget = 3 * time.Second

// simulate plays a random move in each room every interval, as players would.
func (s *server) simulate(ctx context.Context, every time.Duration, ids []string) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, id := range ids {
			id = strings.TrimSpace(id)
			if !validRoomID(id) {
				continue
			}
			cell := rand.N(9)
			mark := "X"
			if rm := s.rooms.get(id); rm != nil {
				rm.mu.Lock()
				if rm.state.Moves%2 == 1 {
					mark = "O"
				}
				rm.mu.Unlock()
			}
			raw := fmt.Sprintf(`{"cell":%d,"mark":%q,"by":"simulator"}`, cell, mark)
			if _, err := s.apply(ctx, id, Move{Cell: &cell, Mark: mark}, []byte(raw)); err != nil && ctx.Err() == nil {
				log.Printf("rooms: simulated move in room %s: %v", id, err)
			}
		}
	}
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// publisher publishes to Herald's POST /v1/publish with the publish key.
// Every event carries an Idempotency-Key (this process's boot id and the
// state's version), so a retry after a timeout or a 5xx never appends the
// state twice; the boot id keeps a restarted service, whose versions start
// again at 1, from reusing a key within Herald's idempotency window.
type publisher struct {
	url, key string
	boot     string
	client   *http.Client
}

func newPublisher(base, key string) *publisher {
	return &publisher{
		url:  strings.TrimRight(base, "/") + "/v1/publish",
		key:  key,
		boot: strconv.FormatUint(rand.Uint64(), 36),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute},
		},
	}
}

// publish sends one event, retrying network errors, 408, 429 and 5xx up to
// four times, honouring Retry-After.
func (p *publisher) publish(ctx context.Context, topic, typ string, data []byte, key string) error {
	body, err := json.Marshal(struct {
		Topic string          `json:"topic"`
		Type  string          `json:"type"`
		Data  json.RawMessage `json:"data"`
	}{topic, typ, data})
	if err != nil {
		return err
	}
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		retryAfter, err := p.attempt(ctx, body, p.boot+"-"+key)
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) || attempt == 4 {
			return err
		}
		d := max(wait, retryAfter)
		wait *= 2
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

type permanentError struct{ error }

func (p *publisher) attempt(ctx context.Context, body []byte, key string) (retryAfter time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return 0, permanentError{err}
	}
	req.Header.Set("Authorization", "Bearer "+p.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return 0, nil
	}
	err = fmt.Errorf("herald answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500 {
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return min(time.Duration(secs)*time.Second, 5*time.Second), err
	}
	return 0, permanentError{err}
}
