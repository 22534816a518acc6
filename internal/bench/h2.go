package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herald-hub/herald/sse"
)

// The values of Config.HTTP2.
const (
	H2C   = "h2c" // cleartext HTTP/2 to an http:// URL
	H2TLS = "tls" // HTTP/2 chosen by ALPN to an https:// URL
)

// headersTimeout bounds the wait for an HTTP/2 stream's response headers, as
// the dialer's timeout bounds an HTTP/1.1 stream's connection.
const headersTimeout = 10 * time.Second

// HTTP/2 streams are opened as a browser opens them: many requests on one
// connection. The streams are cut into groups of streamsPerConn, and each
// group has its own http.Transport limited to one connection, so N streams
// use exactly ceil(N/streamsPerConn) TCP connections. Each stream is read by
// its goroutine with the pull decoder: the HTTP/2 transport already runs a
// read loop per connection and hands each stream its bytes through a pipe,
// so the epoll reader has nothing to take over.

// newH2Transports returns the transports of n streams in groups of per, the
// group i dialling from the source address src(i) (nil: the kernel picks).
func newH2Transports(mode string, n, per int, tlsConf *tls.Config, network string, src func(group int) net.IP, dials func()) []*http.Transport {
	groups := make([]*http.Transport, (n+per-1)/per)
	for g := range groups {
		d := &net.Dialer{Timeout: 10 * time.Second}
		if ip := src(g); ip != nil {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		t := &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				dials()
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:     tlsConf.Clone(),
			TLSHandshakeTimeout: 10 * time.Second,
			// One connection: a request beyond the server's stream limit
			// waits for a stream to end instead of opening a second one.
			MaxConnsPerHost: 1,
			Protocols:       new(http.Protocols),
		}
		if mode == H2C {
			t.Protocols.SetUnencryptedHTTP2(true)
		} else {
			t.Protocols.SetHTTP2(true)
		}
		groups[g] = t
	}
	return groups
}

// connectH2 opens s as one stream of its group's HTTP/2 connection and
// reads it until it ends, ctx ends or dropAll cancels it. It is connect's
// HTTP/2 counterpart, with the same results.
// It holds a connect slot, which release gives back (connect calls it again
// on return; it is idempotent).
func (f *fleet) connectH2(ctx context.Context, s *stream, retry *time.Duration, onUp func(time.Duration), release func()) (up bool, err error) {
	start := time.Now()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.setHangup(cancel)
	defer s.setHangup(nil)

	req, err := http.NewRequestWithContext(rctx, http.MethodGet, s.url.String(), nil)
	if err != nil {
		return false, err
	}
	for k, vs := range f.h2Header {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	req.Header.Set("User-Agent", "herald-bench")
	if s.lastID != "" {
		req.Header.Set("Last-Event-ID", s.lastID)
	}
	late := time.AfterFunc(headersTimeout, cancel)
	resp, err := f.h2[s.conn].RoundTrip(req)
	inTime := late.Stop()
	if err != nil {
		if !inTime && ctx.Err() == nil {
			err = fmt.Errorf("no response headers within %v: %w", headersTimeout, err)
		}
		return false, err
	}
	// Closing an HTTP/2 body resets the stream; it does not read to the end.
	defer resp.Body.Close()
	switch {
	case !inTime:
		return false, fmt.Errorf("no response headers within %v", headersTimeout)
	case resp.ProtoMajor != 2:
		return false, fmt.Errorf("the server answered with %s, not HTTP/2", resp.Proto)
	case resp.StatusCode != http.StatusOK:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, fmt.Errorf("Content-Type %q is not text/event-stream", resp.Header.Get("Content-Type"))
	}
	release()
	onUp(time.Since(start))
	s.connects.Add(1)
	s.up.Store(true)
	defer s.up.Store(false)
	f.back(s)

	dec := sse.NewDecoder(countingReader{resp.Body, &s.bytes})
	for {
		ev, ok, err := dec.NextBlock()
		if r, set := dec.Retry(); set {
			*retry = max(r, 10*time.Millisecond)
		}
		if err != nil {
			f.dropped(ctx, s)
			if errors.Is(err, io.EOF) || rctx.Err() != nil {
				err = nil
			}
			return true, err
		}
		s.lastID = dec.LastEventID()
		if ok {
			f.deliver(s, ev)
		}
	}
}

// closeH2 closes the HTTP/2 connections once no stream uses them.
func (f *fleet) closeH2() {
	for _, t := range f.h2 {
		t.CloseIdleConnections()
	}
}

// selfSigned writes a throwaway certificate for 127.0.0.1, ::1 and localhost
// and its key to dir, for a TLS server the bench starts itself, and returns
// the files and a client configuration that trusts the certificate.
func selfSigned(dir string) (certFile, keyFile string, conf *tls.Config, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "herald bench"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// TLSConfig returns the client configuration of -insecure and -ca-file: nil
// (the system roots) when neither is given.
func TLSConfig(insecure bool, caFile string) (*tls.Config, error) {
	if !insecure && caFile == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}
