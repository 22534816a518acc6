package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readers are the stream readers to test: newReader's (an epoll reader on
// Linux) and the goroutine per stream.
var readers = map[string]func() reader{
	"default":   nil,
	"goroutine": func() reader { return goroutineReader{} },
}

// rawServer serves each connection with serve(c, its request, its number from
// 0), byte by byte if need be. It stops with the test.
func rawServer(t *testing.T, serve func(c net.Conn, req *http.Request, n int)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					serve(c, req, n)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/sse"
}

// hold keeps a connection open until the client closes it.
func hold(c net.Conn) { io.Copy(io.Discard, c) }

// startFleet runs n streams of url with the reader mk makes (nil: newReader's)
// until the test ends.
func startFleet(t *testing.T, url string, n int, mk func() reader) *fleet {
	t.Helper()
	f, err := newFleet(fleetConfig{
		urls: func(int) string { return url }, topicOf: func(int) int { return 0 }, n: n, concurrency: n,
	})
	if err != nil {
		t.Fatal(err)
	}
	if mk != nil {
		f.reader.close()
		f.reader = mk()
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.start(ctx, make(chan connectResult, n))
	t.Cleanup(func() {
		cancel()
		f.wait()
	})
	return f
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// chunk frames s as one chunk.
func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

const streamHeader = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"

// Events cut anywhere by reads and by chunks arrive whole; the stream's end
// (the last chunk, or EOF for a body without framing) makes it reconnect
// after the server's retry delay with its last event id.
func TestStreamSplitAcrossReadsAndChunks(t *testing.T) {
	var events strings.Builder
	// Herald's opening block is a cursor, not an event: it is not counted.
	events.WriteString(": hello\r\nretry: 20\r\nid: 0\r\nevent: herald.connected\r\ndata: {}\r\n\r\n")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&events, "id: %d\r\nevent: bench\r\ndata: %s\r\n\r\n", i, appendPayload(nil, uint64(i), time.Now().UnixNano(), 30))
	}
	events.WriteString("event: herald.gap\ndata: {}\n\nid: 21\n\n")
	var sizes []int
	for i := range 300 {
		sizes = append(sizes, 1+i*7%23)
	}
	body := chunked(events.String(), "%x", sizes...)
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			var (
				mu      sync.Mutex
				ids     []string // Last-Event-ID of each request
				written atomic.Int64
				ended   time.Time // when the first stream ended
				again   time.Duration
			)
			write := func(c net.Conn, s string) {
				n, _ := io.WriteString(c, s)
				written.Add(int64(n))
			}
			url := rawServer(t, func(c net.Conn, req *http.Request, n int) {
				mu.Lock()
				ids = append(ids, req.Header.Get("Last-Event-ID"))
				if n == 1 {
					again = time.Since(ended)
				}
				mu.Unlock()
				switch n {
				case 0:
					// The headers come with the body's first bytes, which
					// ReadResponse's buffer takes; the rest a few bytes at a
					// time.
					msg := streamHeader + "Transfer-Encoding: chunked\r\n\r\n" + body
					write(c, msg[:len(streamHeader)+40])
					for i := len(streamHeader) + 40; i < len(msg); i += 1 + i%5 {
						time.Sleep(100 * time.Microsecond)
						write(c, msg[i:min(i+1+i%5, len(msg))])
					}
					mu.Lock()
					ended = time.Now()
					mu.Unlock()
					hold(c)
				case 1:
					// No framing: the body runs to EOF.
					write(c, streamHeader+"Connection: close\r\n\r\n")
					time.Sleep(time.Millisecond)
					write(c, fmt.Sprintf("id: 22\ndata: %s\n\ndata: cut off", appendPayload(nil, 22, time.Now().UnixNano(), 0)))
				default:
					write(c, streamHeader+"Transfer-Encoding: chunked\r\n\r\n"+chunk(": hi\n\n"))
					hold(c)
				}
			})
			f := startFleet(t, url, 1, mk)
			s := f.streams[0]
			waitFor(t, "three connections", func() bool { return s.connects.Load() == 3 && s.bytes.Load() == written.Load() })
			if s.distinct.Load() != 21 || s.dups.Load() != 0 || s.gaps.Load() != 1 || s.received.Load() != 22 {
				t.Errorf("distinct %d, duplicates %d, gaps %d, received %d; want 21, 0, 1, 22",
					s.distinct.Load(), s.dups.Load(), s.gaps.Load(), s.received.Load())
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(ids, ",") != ",21,22" {
				t.Errorf("Last-Event-ID of each request: %q, want \"\", 21, 22", ids)
			}
			if again > 500*time.Millisecond {
				t.Errorf("reconnected after %v: the server's retry of 20ms was not taken", again)
			}
		})
	}
}

// A body whose framing is broken ends the stream, which reconnects.
func TestMalformedChunkEndsStream(t *testing.T) {
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			url := rawServer(t, func(c net.Conn, req *http.Request, n int) {
				io.WriteString(c, streamHeader+"Transfer-Encoding: chunked\r\n\r\n")
				if n == 0 {
					time.Sleep(time.Millisecond)
					io.WriteString(c, "a\r\nretry: 1\n\n\r\nzz\r\n")
				}
				hold(c)
			})
			s := startFleet(t, url, 1, mk).streams[0]
			waitFor(t, "a reconnection", func() bool { return s.connects.Load() == 2 })
		})
	}
}

// dropAll ends every stream at once; held, none comes back until released,
// and then each asks for what followed its last event.
func TestDropAndReconnect(t *testing.T) {
	const n = 20
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			var (
				mu  sync.Mutex
				ids []string
			)
			url := rawServer(t, func(c net.Conn, req *http.Request, _ int) {
				mu.Lock()
				ids = append(ids, req.Header.Get("Last-Event-ID"))
				mu.Unlock()
				io.WriteString(c, streamHeader+"Transfer-Encoding: chunked\r\n\r\n")
				if req.Header.Get("Last-Event-ID") == "" {
					for i := 1; i <= 3; i++ {
						ev := fmt.Sprintf("id: %d\ndata: %s\n\n", i, appendPayload(nil, uint64(i), time.Now().UnixNano(), 0))
						io.WriteString(c, chunk(ev))
					}
				}
				hold(c)
			})
			f := startFleet(t, url, n, mk)
			waitFor(t, "every event", func() bool {
				got := 0
				for _, s := range f.streams {
					got += int(s.distinct.Load())
				}
				return got == 3*n && f.upCount() == n
			})
			f.holdReconnects()
			f.dropAll()
			waitFor(t, "every stream down", func() bool { return f.upCount() == 0 })
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			if len(ids) != n {
				t.Errorf("%d requests while reconnects were held, want %d", len(ids), n)
			}
			mu.Unlock()
			f.releaseReconnects()
			waitFor(t, "every stream back", func() bool { return f.upCount() == n })
			mu.Lock()
			defer mu.Unlock()
			if len(ids) != 2*n {
				t.Fatalf("%d requests, want %d", len(ids), 2*n)
			}
			for _, id := range ids[n:] {
				if id != "3" {
					t.Fatalf("reconnected with Last-Event-ID %q, want 3", id)
				}
			}
		})
	}
}
