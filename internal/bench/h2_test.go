package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// h2Hub is the fake hub behind a server that counts its connections and
// refuses a stream that does not come over HTTP/2.
type h2Hub struct {
	hub   *fakeHub
	conns atomic.Int64
}

func (h *h2Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/sse" && r.ProtoMajor != 2 {
		http.Error(w, "want HTTP/2, got "+r.Proto, http.StatusHTTPVersionNotSupported)
		return
	}
	h.hub.ServeHTTP(w, r)
}

func newH2Server(t *testing.T, mode string) (*httptest.Server, *h2Hub) {
	h := &h2Hub{hub: newFakeHub(nil, nil)}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			h.conns.Add(1)
		}
	}
	if mode == H2C {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	} else {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	}
	t.Cleanup(srv.Close)
	return srv, h
}

// A few hundred streams share exactly ceil(N/per) HTTP/2 connections, get
// every event once, and come back with their last id after a storm.
func TestHTTP2Streams(t *testing.T) {
	for _, mode := range []string{H2C, H2TLS} {
		t.Run(mode, func(t *testing.T) {
			srv, h := newH2Server(t, mode)
			var conf *tls.Config
			if mode == H2TLS {
				pool := x509.NewCertPool()
				pool.AddCert(srv.Certificate())
				conf = &tls.Config{RootCAs: pool}
			}
			l, _ := ParseLayout("rooms:50")
			const n, per = 300, 70 // 5 connections, the last one with 20 streams
			res, err := Run(context.Background(), Config{
				SubscribeTemplate: srv.URL + "/sse?topic={topic}",
				Publish:           &HTTPTemplate{URL: srv.URL + "/pub?topic={topic}", Body: "{data}"},
				HTTP2:             mode,
				StreamsPerConn:    per,
				TLS:               conf,
				Connections:       n,
				Layout:            l,
				Rate:              60,
				Duration:          500 * time.Millisecond,
				Settle:            time.Millisecond,
				Drain:             2 * time.Second,
				Storm:             true,
				StormMissed:       5,
				StormLimit:        10 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.ConnectErrors != 0 || res.TCPConnections != 5 {
				t.Fatalf("%d connect errors (%s), %d TCP connections, want 0 and 5", res.ConnectErrors, res.ConnectError, res.TCPConnections)
			}
			// Six publishing connections at most, on top of the streams'.
			if c := h.conns.Load(); c < 5 || c > 5+4 {
				t.Errorf("server saw %d connections", c)
			}
			if res.Published != 30 || res.Expected != 50*30 || res.Delivered != res.Expected || res.Lost != 0 || res.Duplicates != 0 {
				t.Errorf("published %d, delivered %d of %d, lost %d, duplicates %d", res.Published, res.Delivered, res.Expected, res.Lost, res.Duplicates)
			}
			if res.Latency.P50 <= 0 || res.Protocol == "HTTP/1.1" {
				t.Errorf("latency %+v, protocol %s", res.Latency, res.Protocol)
			}
			if st := res.Storm; st == nil || !st.Recovered || st.Lost != 0 || st.Duplicates != 0 || st.Expected != n*5 {
				t.Errorf("storm %+v", st)
			}
		})
	}
}

// An HTTP/1.1-only server is reported as such, not waited for.
func TestHTTP2AgainstHTTP1Server(t *testing.T) {
	srv := httptest.NewServer(newFakeHub(nil, nil))
	defer srv.Close()
	_, err := Run(context.Background(), Config{
		SubscribeTemplate: srv.URL + "/sse?topic={topic}",
		Publish:           &HTTPTemplate{URL: srv.URL + "/pub"},
		HTTP2:             H2C,
		Connections:       3,
	})
	if err == nil {
		t.Fatal("Run succeeded with h2c against an HTTP/1.1 server")
	}
}

func TestHTTP2SchemeMustMatch(t *testing.T) {
	_, err := Run(context.Background(), Config{
		SubscribeTemplate: "http://127.0.0.1:1/sse?topic={topic}",
		Publish:           &HTTPTemplate{URL: "http://127.0.0.1:1/pub"},
		HTTP2:             H2TLS,
		Connections:       1,
	})
	if err == nil {
		t.Fatal("tls mode accepted an http:// URL")
	}
}
