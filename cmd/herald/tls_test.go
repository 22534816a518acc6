package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A herald process started by a test polls its certificate files every
// HERALD_TEST_CERT_POLL when that is set: fast for rotation tests, never for
// the SIGHUP one.
func init() {
	if os.Getenv("HERALD_TEST_AS_SERVER") != "1" {
		return
	}
	if d, err := time.ParseDuration(os.Getenv("HERALD_TEST_CERT_POLL")); err == nil {
		certPollInterval = d
	}
}

// testCA signs the certificates of a test: servers for 127.0.0.1, and clients.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    []byte
	serial atomic.Int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{}
	ca.serial.Store(1)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "herald test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.key = key
	ca.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca
}

// issue returns a new certificate and key, PEM-encoded, and its serial number.
func (ca *testCA) issue(t *testing.T, client bool) (certPEM, keyPEM []byte, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial = ca.serial.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "herald test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses, tmpl.DNSNames = nil, nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), serial
}

// writePair writes a server pair to dir's cert.pem and key.pem, each by a
// rename so the server never reads half a file.
func (ca *testCA) writePair(t *testing.T, dir string) (certFile, keyFile string, serial int64) {
	t.Helper()
	c, k, serial := ca.issue(t, false)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeAtomic(t, keyFile, k)
	writeAtomic(t, certFile, c)
	return certFile, keyFile, serial
}

func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsClient is a browser-like client trusting ca: HTTP/2 when the server
// offers it. With h1only it speaks HTTP/1.1 alone.
func (ca *testCA) tlsClient(h1only bool, certs ...tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: certs},
		ForceAttemptHTTP2: !h1only,
	}
	if h1only {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr}
}

// sseStream is an open event stream; its lines arrive on lines until the body
// is closed, which the test's cleanup does.
type sseStream struct {
	resp  *http.Response
	lines chan string
}

func openStream(t *testing.T, c *http.Client, url string) *sseStream {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	s := &sseStream{resp: resp, lines: make(chan string, 64)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	s.await(t, "event: herald.connected") // the stream is live
	return s
}

// await reads the stream until a line that starts with want.
func (s *sseStream) await(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended before %q", want)
			}
			if strings.HasPrefix(line, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q within 15s", want)
		}
	}
}

func publishTLS(t *testing.T, c *http.Client, addr, topic, data string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"topic": topic, "data": data})
	req, _ := http.NewRequest("POST", "https://"+addr+"/v1/publish", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+processKey)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// peerSerial makes a new TLS connection and returns the serial number of the
// certificate the server showed.
func peerSerial(t *testing.T, ca *testCA, addr string) int64 {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// With -tls-cert and -tls-key Herald speaks HTTPS: a browser-like client gets
// HTTP/2 by ALPN, an HTTP/1.1 one gets its stream on the taken-over TLS
// connection, both receive events, and TLS below 1.2 is refused.
func TestTLSServesHTTP2AndHTTP1Streams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	ca := newTestCA(t)
	certFile, keyFile, _ := ca.writePair(t, t.TempDir())
	p := startProcess(t, t.TempDir(), "-tls-cert", certFile, "-tls-key", keyFile)

	h2 := openStream(t, ca.tlsClient(false), "https://"+p.addr+"/v1/events?topic=a")
	if h2.resp.ProtoMajor != 2 || h2.resp.TLS == nil || h2.resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("browser-like client got %s, ALPN %q; want HTTP/2", h2.resp.Proto, h2.resp.TLS.NegotiatedProtocol)
	}
	h1 := openStream(t, ca.tlsClient(true), "https://"+p.addr+"/v1/events?topic=a")
	if h1.resp.ProtoMajor != 1 {
		t.Fatalf("HTTP/1.1 client got %s", h1.resp.Proto)
	}
	if code, body := publishTLS(t, ca.tlsClient(false), p.addr, "a", "hello"); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	h2.await(t, "data: hello")
	h1.await(t, "data: hello")

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if conn, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}); err == nil {
		conn.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	// Plain HTTP on the TLS port gets no event stream.
	if resp, err := http.Get("http://" + p.addr + "/v1/events?topic=a"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served a stream on the TLS port")
		}
	}
}

// A certificate written over the files is served to new connections without
// a restart, while streams opened before it stay open and keep receiving
// events; a pair that does not match keeps the current one and is logged;
// SIGHUP reloads at once.
func TestTLSCertificateRotationKeepsOpenStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile, first := ca.writePair(t, dir)
	t.Setenv("HERALD_TEST_CERT_POLL", "200ms")
	p := startProcess(t, t.TempDir(), "-tls-cert", certFile, "-tls-key", keyFile)
	if got := peerSerial(t, ca, p.addr); got != first {
		t.Fatalf("serving serial %d, want %d", got, first)
	}
	pub := ca.tlsClient(false)
	h2 := openStream(t, ca.tlsClient(false), "https://"+p.addr+"/v1/events?topic=a")
	h1 := openStream(t, ca.tlsClient(true), "https://"+p.addr+"/v1/events?topic=a")

	_, _, second := ca.writePair(t, dir)
	waitForSerial(t, ca, p.addr, second)
	for i, data := range []string{"after-rotation-1", "after-rotation-2"} {
		if code, body := publishTLS(t, pub, p.addr, "a", data); code != 200 {
			t.Fatalf("publish %d: %d %s", i, code, body)
		}
		h2.await(t, "data: "+data)
		h1.await(t, "data: "+data)
	}

	// A key that is not the certificate's: the current pair stays.
	c, _, _ := ca.issue(t, false)
	writeAtomic(t, certFile, c)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.logs.String(), "TLS certificate not reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no error logged for a mismatched pair:\n%s", p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := peerSerial(t, ca, p.addr); got != second {
		t.Fatalf("after a bad pair: serving serial %d, want %d (the last good one)", got, second)
	}

}

// SIGHUP loads the files at once, whatever the poll; the process keeps
// running and its streams stay open.
func TestTLSReloadsOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	t.Setenv("HERALD_TEST_CERT_POLL", "1h") // only the signal can reload
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile, _ := ca.writePair(t, dir)
	p := startProcess(t, t.TempDir(), "-tls-cert", certFile, "-tls-key", keyFile)
	h2 := openStream(t, ca.tlsClient(false), "https://"+p.addr+"/v1/events?topic=a")
	_, _, second := ca.writePair(t, dir)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForSerial(t, ca, p.addr, second)
	if code, body := publishTLS(t, ca.tlsClient(false), p.addr, "a", "after-sighup"); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	h2.await(t, "data: after-sighup")

	// A graceful stop over TLS ends the stream with its retry: hint.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	h2.await(t, "retry: ")
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit: %v\n%s", p.err, p.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("herald did not stop within 15s of SIGTERM")
	}
}

func waitForSerial(t *testing.T, ca *testCA, addr string, want int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for got := peerSerial(t, ca, addr); got != want; got = peerSerial(t, ca, addr) {
		if time.Now().After(deadline) {
			t.Fatalf("new connections still get serial %d, want %d", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With -tls-client-ca the publish API needs a client certificate signed by
// it, while streams are open to clients without one (browsers).
func TestTLSClientCAGuardsThePublishAPIOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts herald processes")
	}
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile, _ := ca.writePair(t, dir)
	caFile := filepath.Join(dir, "clients.pem")
	os.WriteFile(caFile, ca.pem, 0o600)
	p := startProcess(t, t.TempDir(), "-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", caFile)

	anon := ca.tlsClient(false)
	s := openStream(t, anon, "https://"+p.addr+"/v1/events?topic=a")

	for _, c := range []struct{ method, path string }{{"POST", "/v1/publish"}, {"GET", "/v1/backup"}, {"POST", "/v1/%70ublish"}} {
		req, _ := http.NewRequest(c.method, "https://"+p.addr+c.path, strings.NewReader(`{"topic":"a","data":"x"}`))
		req.Header.Set("Authorization", "Bearer "+processKey)
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body errorJSON
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 403 || err != nil || body.Error.Code != "client_certificate_required" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s without a client certificate: %d %+v %v", c.method, c.path, resp.StatusCode, body, err)
		}
	}

	// A certificate from another CA fails the handshake.
	other := newTestCA(t)
	oc, ok, _ := other.issue(t, true)
	stranger, err := tls.X509KeyPair(oc, ok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.tlsClient(false, stranger).Get("https://" + p.addr + "/healthz"); err == nil {
		t.Error("a client certificate from an unknown CA was accepted")
	}

	cc, ck, _ := ca.issue(t, true)
	mine, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := publishTLS(t, ca.tlsClient(false, mine), p.addr, "a", "with-cert"); code != 200 {
		t.Fatalf("publish with a client certificate: %d %s", code, body)
	}
	s.await(t, "data: with-cert")
	// The certificate does not replace the publish key.
	req, _ := http.NewRequest("POST", "https://"+p.addr+"/v1/publish", strings.NewReader(`{"topic":"a","data":"x"}`))
	resp, err := ca.tlsClient(false, mine).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("publish with a certificate and no key: %d, want 401", resp.StatusCode)
	}
}

type errorJSON struct {
	Error struct{ Code, Message string }
}

// Bad TLS settings are configuration errors (exit 2) that name the setting.
func TestTLSBadConfigurationExitsTwo(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile, _ := ca.writePair(t, dir)
	_, otherKey, _ := ca.issue(t, false)
	otherKeyFile := filepath.Join(dir, "other.key")
	os.WriteFile(otherKeyFile, otherKey, 0o600)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	missing := filepath.Join(dir, "missing.pem")

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // anything that wrongly starts stops at once
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-tls-cert", certFile}, "tls-cert is set without tls-key"},
		{[]string{"-tls-key", keyFile}, "tls-key is set without tls-cert"},
		{[]string{"-tls-cert", missing, "-tls-key", keyFile}, "missing.pem: no such file"},
		{[]string{"-tls-cert", certFile, "-tls-key", otherKeyFile}, "private key does not match public key"},
		{[]string{"-tls-cert", garbage, "-tls-key", keyFile}, "tls-cert " + garbage},
		{[]string{"-tls-client-ca", caFileFor(t, ca, dir)}, "tls-client-ca needs -tls-cert"},
		{[]string{"-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", garbage}, "tls-client-ca (from -tls-client-ca): " + garbage + ": no PEM certificate"},
		{[]string{"-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", missing}, "tls-client-ca"},
	} {
		var errb strings.Builder
		args := append([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "data")}, c.args...)
		code := run(ctx, args, func(string) string { return "" }, io.Discard, &errb)
		if code != exitBadConfig || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, want 2 and %q in:\n%s", c.args, code, c.want, errb.String())
		}
	}
	// The environment works as well as the flags.
	env := map[string]string{"HERALD_TLS_CERT": certFile, "HERALD_TLS_KEY": keyFile}
	cfg, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.TLSCert != certFile || cfg.TLSKey != keyFile {
		t.Fatalf("from the environment: %+v %v", cfg, err)
	}
}

func caFileFor(t *testing.T, ca *testCA, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
