//go:build unix

package server

import (
	"bytes"
	"io"
	"net"
	"net/http/httputil"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/hub"
)

// A TryWrite to a socket whose buffers are full takes the whole chunk anyway,
// sends what fits and keeps the rest; Flush sends the rest once the client
// reads. The client reads exactly the chunks written, in order.
func TestTryWriteKeepsWhatTheSocketCannotTake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetWriteBuffer(4096)

	tw, ok := newChunkedWriter(conn).(hub.TryWriter)
	if !ok {
		t.Fatal("a TCP connection's chunked writer cannot write without waiting")
	}
	var sent bytes.Buffer
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	pending := false
	start := time.Now()
	for i := 0; !pending; i++ {
		if i == 1000 {
			t.Fatal("1000 chunks of 16 KiB went out to a client that reads nothing")
		}
		chunk[0] = byte('A' + i%26)
		pending, err = tw.TryWrite(chunk)
		if err != nil {
			t.Fatal(err)
		}
		sent.Write(chunk)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("TryWrite waited: %v", time.Since(start))
	}

	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(httputil.NewChunkedReader(client))
		got <- b
	}()
	_ = tw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	tw.(interface{ end() }).end()
	_ = conn.Close()
	if b := <-got; !bytes.Equal(b, sent.Bytes()) {
		t.Fatalf("client read %d bytes, want the %d written, in order", len(b), sent.Len())
	}
}
