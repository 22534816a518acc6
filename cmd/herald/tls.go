package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// certPollInterval is how often serve looks at the certificate files for a
// rotation. A stat of two files every few seconds costs nothing, and works
// with every way of replacing them (cert-manager, certbot, a symlink swap).
var certPollInterval = 2 * time.Second

// certReloader serves the key pair held in two PEM files and loads it again
// when they change, so a renewed certificate takes effect for new connections
// without a restart and without touching open ones (a TLS session keeps the
// certificate it was set up with).
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]

	// Used by the goroutine of run alone.
	loaded stamp // the files as last loaded, or last given up on
	failed stamp // the files as they were when a load last failed
}

// stamp tells whether a file pair changed: modification times and sizes. A
// file that cannot be read has a zero part, which is a change too.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func statPair(certFile, keyFile string) stamp {
	var s stamp
	if fi, err := os.Stat(certFile); err == nil {
		s.certMod, s.certSize = fi.ModTime(), fi.Size()
	}
	if fi, err := os.Stat(keyFile); err == nil {
		s.keyMod, s.keySize = fi.ModTime(), fi.Size()
	}
	return s
}

// loadKeyPair reads a certificate chain and its key, with a message that
// names the files.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls-cert %s, tls-key %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls-cert %s: %w", certFile, err)
		}
	}
	return &c, nil
}

// newCertReloader loads the pair; an error here stops the start.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	st := statPair(certFile, keyFile)
	c, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert.Store(c)
	r.loaded = st
	r.logLoaded(c)
	return r, nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

func (r *certReloader) logLoaded(c *tls.Certificate) {
	r.log.Info("TLS certificate loaded", "file", r.certFile, "subject", c.Leaf.Subject.String(),
		"dns_names", c.Leaf.DNSNames, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
}

// poll loads the pair again if the files changed. A pair that does not load is
// tried again at the next poll and reported only if it still fails: a
// certificate and its key are seldom replaced at the same instant, and a
// half-rotated pair is not an error yet. Then it is reported once per change
// of the files, and the pair in use stays.
func (r *certReloader) poll() {
	st := statPair(r.certFile, r.keyFile)
	if st == r.loaded {
		return
	}
	err := r.reload(st)
	if err == nil {
		return
	}
	if st == r.failed {
		r.log.Error("TLS certificate not reloaded; still serving the previous one", "err", err)
		r.loaded = st // give up on these files until they change again
		return
	}
	r.failed = st
}

// reload loads the pair now (SIGHUP) and reports a failure at once.
func (r *certReloader) reloadNow() {
	st := statPair(r.certFile, r.keyFile)
	if err := r.reload(st); err != nil {
		r.log.Error("TLS certificate not reloaded; still serving the previous one", "err", err)
		r.loaded = st
	}
}

func (r *certReloader) reload(st stamp) error {
	c, err := loadKeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.cert.Store(c)
	r.loaded = st
	r.logLoaded(c)
	return nil
}

// run polls the files, and reloads on each value from hup, until ctx ends.
func (r *certReloader) run(ctx context.Context, hup <-chan os.Signal) {
	t := time.NewTicker(certPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.poll()
		case <-hup:
			r.reloadNow()
		}
	}
}

// newTLSConfig is the server side of -tls-*: TLS 1.2 at least, Go's default
// cipher suites (kept current by Go releases), and the
// certificate of certs. With client CAs a certificate is asked for and
// verified when given, but not required at the handshake: browsers subscribe
// without one, and requireClientCert enforces it on the publish API.
func newTLSConfig(certs *certReloader, clientCAs *x509.CertPool) *tls.Config {
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.getCertificate,
	}
	if clientCAs != nil {
		tc.ClientCAs = clientCAs
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc
}

// requireClientCert refuses the publish API (POST /v1/publish, GET
// /v1/backup, whatever the method) to a connection without a client
// certificate verified against -tls-client-ca. The publish key or token is
// still required on top: the certificate says which machine calls, the key
// what it may do.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// r.URL.Path is the decoded path, so /v1/%70ublish is caught too;
		// Herald does not clean paths, so no other spelling reaches these
		// handlers.
		if (r.URL.Path == "/v1/publish" || r.URL.Path == "/v1/backup") && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"error":{"code":"client_certificate_required","message":"%s needs a client certificate signed by a CA of -tls-client-ca"}}`+"\n", r.URL.Path)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loadCertPool reads PEM CA certificates; a file without one is an error.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(path + ": no PEM certificate in it")
	}
	return pool, nil
}
