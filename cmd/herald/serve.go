package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/inbox"
	"github.com/herald-hub/herald/internal/hub"
	"github.com/herald-hub/herald/internal/ratelog"
	"github.com/herald-hub/herald/internal/server"
	"github.com/herald-hub/herald/presence"
)

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	// A repeating warning or error (every publish failing on a full disk) is
	// logged once every few seconds, with the count of the lines held back.
	return slog.New(ratelog.New(h, 0))
}

// serve runs one node until ctx is cancelled, then stops gracefully: new streams
// are refused, open ones get a jittered retry: and close, pending appends finish
// and the store is flushed.
func serve(ctx context.Context, cfg config, logOut io.Writer) error {
	log := newLogger(cfg, logOut)
	// Listen first: a busy port must leave nothing behind, neither a data dir
	// nor a key nor a store.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	var certs *certReloader
	if cfg.TLSCert != "" {
		// Loaded again (loadConfig checked them): the files may have changed.
		if certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	nodeID := cfg.NodeID
	if nodeID == "" {
		if nodeID, err = loadOrCreateNodeID(cfg.DataDir); err != nil {
			return err
		}
	}
	keys := cfg.PublishKeys
	if len(keys) == 0 {
		key, path, err := loadOrCreateKey(cfg.DataDir)
		if err != nil {
			return err
		}
		keys = []string{key}
		log.Info("no publish key configured; using the generated one", "file", path)
	}
	ring, err := auth.ParseKeyRing(keys)
	if err != nil {
		return fmt.Errorf("publish-key: %w", err)
	}
	tokens, err := newVerifier(cfg, log)
	if err != nil {
		return err
	}
	if tokens != nil {
		defer tokens.Close()
	}
	logAccess(log, cfg, tokens, ring)
	eng, err := engine.Open(cfg.Engine, engine.Config{
		DataDir:           cfg.DataDir,
		MaxLen:            cfg.RetentionCount,
		MaxAge:            cfg.RetentionAge,
		Reserve:           int64(cfg.ReservedSpace),
		CacheSize:         int64(cfg.StoreCacheSize),
		Logger:            log,
		IdempotencyWindow: cfg.IdempotencyWindow,
		SyncInterval:      cfg.FsyncInterval,
	})
	if err != nil {
		return fmt.Errorf("open engine: %w", err)
	}
	var presenceFrom presence.Provider
	if cfg.PresenceURL != "" {
		pe, err := engine.Open(cfg.PresenceURL, engine.Config{DataDir: cfg.DataDir, Logger: log})
		if err != nil {
			eng.Close()
			return fmt.Errorf("presence-url: %w", err)
		}
		defer pe.Close() // after the server's Close, which removes this node's presence
		p, ok := pe.(presence.Provider)
		if !ok {
			eng.Close()
			return fmt.Errorf("presence-url: %s keeps no presence shared by nodes; use redis:// or nats://", strings.SplitN(cfg.PresenceURL, ":", 2)[0])
		}
		presenceFrom = p
	}
	var store inbox.Store
	if cfg.InboxDSN != "off" {
		ictx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := inbox.Open(ictx, cfg.InboxDSN, cfg.DataDir)
		cancel()
		if err != nil {
			eng.Close()
			return fmt.Errorf("open inbox: %w", err)
		}
		defer st.Close()
		store = st
		if st.Dialect() == "sqlite" && !strings.HasPrefix(cfg.Engine, "local") && !strings.HasPrefix(cfg.Engine, "memory") {
			log.Warn("the inbox is SQLite in this node's data dir while the engine is shared: each node has its own inbox; set -inbox-dsn to a shared MySQL or PostgreSQL", "engine", strings.SplitN(cfg.Engine, ":", 2)[0])
		}
		trimmer := inbox.StartTrimmer(st, inbox.Retention{MaxAge: cfg.InboxRetentionAge, MaxPerUser: cfg.InboxRetentionCount}, log)
		defer trimmer.Close()
	}
	h := hub.New(eng, hub.Options{
		QueueSize:   cfg.QueueSize,
		Heartbeat:   cfg.Heartbeat,
		Retry:       cfg.Retry,
		MaxLifetime: cfg.MaxLifetime,
		Logger:      log,
	})
	api := server.New(h, server.Config{
		PublishKeys:        keys,
		Tokens:             tokens,
		AnonymousSubscribe: cfg.AnonymousSubscribe,
		TokenCookie:        cfg.TokenCookie,
		CORSOrigins:        cfg.CORSOrigins,
		TrustedProxies:     cfg.TrustedProxies,
		MaxTopics:          cfg.MaxTopics,
		MaxEventSize:       cfg.MaxEventSize,
		MaxBodySize:        int64(cfg.MaxBodySize),
		MaxConnsPerIP:      cfg.MaxConnsPerIP,
		MaxConnsPerUser:    cfg.MaxConnsPerUser,
		PublishRate:        cfg.PublishRate,
		PublishBurst:       cfg.PublishBurst,
		KeyPublishRate:     cfg.PublishKeyRate,
		KeyPublishBurst:    cfg.PublishKeyBurst,
		NodeID:             nodeID,
		PresenceEvents:     cfg.PresenceEvents || cfg.Demo,
		Demo:               cfg.Demo,
		AdminStats:         cfg.AdminStatsInterval,
		PresenceFrom:       presenceFrom,
		Inbox:              store,
		Logger:             log,
	})
	var relay *inbox.Relay
	if cfg.OutboxDSN != "" {
		if store == nil {
			api.Close()
			eng.Close()
			return fmt.Errorf("-outbox-dsn needs the inbox: it relays into it (-inbox-dsn is off)")
		}
		octx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		relay, err = inbox.OpenRelay(octx, cfg.OutboxDSN, store, inbox.RelayOptions{Wake: api.WakeInbox, Logger: log})
		cancel()
		if err != nil {
			api.Close()
			eng.Close()
			return fmt.Errorf("open outbox: %w", err)
		}
		defer relay.Close()
		api.ExportOutbox(relay)
	}
	var handler http.Handler = api
	if cfg.ClientCAs != nil {
		handler = requireClientCert(handler)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// HTTP/1.1, and HTTP/2: browsers allow only six HTTP/1.1 connections per
	// host, and share one HTTP/2 connection between all their streams. Over
	// TLS ALPN chooses; without TLS, cleartext HTTP/2 (h2c) is for a proxy.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if certs != nil {
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = newTLSConfig(certs, cfg.ClientCAs)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}

	if cfg.DebugAddr != "" {
		stopDebug, err := startDebug(cfg.DebugAddr, log)
		if err != nil {
			ln.Close()
			api.Close()
			eng.Close()
			return fmt.Errorf("debug listener: %w", err)
		}
		defer stopDebug()
	}
	// SIGHUP reloads the certificates at once (the files are polled too). It
	// is caught without TLS as well: `systemctl reload` must not kill a node
	// by the signal's default action.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rctx, stopReload := context.WithCancel(context.Background())
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		if certs != nil {
			certs.run(rctx, hup)
			return
		}
		for {
			select {
			case <-rctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: nothing to reload without TLS")
			}
		}
	}()
	defer func() { stopReload(); <-reloaded }()
	log.Info("listening", "addr", ln.Addr().String(), "node", nodeID, "tls", certs != nil, "mutual_tls", cfg.ClientCAs != nil, "data_dir", cfg.DataDir, "version", version)
	if cfg.Demo {
		log.Info("demo: open " + pageURL(ln.Addr(), certs != nil) + " in a browser")
	}
	served := make(chan error, 1)
	go func() {
		if certs != nil {
			served <- srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig
			return
		}
		served <- srv.Serve(ln)
	}()

	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("stopping: closing streams and finishing appends")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		hubDone := make(chan error, 1)
		go func() { hubDone <- h.Shutdown(sctx) }()
		err = srv.Shutdown(sctx)
		if herr := <-hubDone; err == nil {
			err = herr
		}
		cancel()
		<-served
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if relay != nil {
		relay.Close() // before the pusher it wakes
	}
	api.Close() // the streams have ended: presence leaves with them
	if cerr := eng.Close(); err == nil {
		err = cerr
	}
	log.Info("stopped")
	return err
}

// loadOrCreateKey returns the publish key kept in the data dir, generating it on
// first start so a fresh install is never open for publishing.
func loadOrCreateKey(dir string) (key, path string, err error) {
	path = filepath.Join(dir, "publish.key")
	b, err := os.ReadFile(path)
	if err == nil {
		if k := strings.TrimSpace(string(b)); k != "" {
			return k, path, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", path, fmt.Errorf("read publish key: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", path, err
	}
	key = hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", path, fmt.Errorf("write publish key: %w", err)
	}
	return key, path, nil
}

// badConfigError is a configuration error found while starting (a bad file
// in the data dir): the command exits 2, as for a bad flag.
type badConfigError struct{ err error }

func (e *badConfigError) Error() string { return e.err.Error() }
func (e *badConfigError) Unwrap() error { return e.err }

// loadOrCreateNodeID returns the node id kept in the data dir, generating it
// on first start: 12 random characters of the base32 alphabet, lower case.
// A stored id that is not valid is a configuration error.
func loadOrCreateNodeID(dir string) (string, error) {
	path := filepath.Join(dir, "node.id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if err := checkNodeID(id); err != nil {
			return "", &badConfigError{fmt.Errorf("%s: %w (fix or delete the file, or set -node-id)", path, err)}
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	for i := range raw {
		raw[i] = alphabet[raw[i]%32]
	}
	id := string(raw[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}

// newVerifier builds the token verifier from the jwt-* settings; nil when no key
// is configured (development).
func newVerifier(cfg config, log *slog.Logger) (*auth.Verifier, error) {
	o := auth.Options{
		JWKSURL:     cfg.JWTJWKSURL,
		JWKSRefresh: cfg.JWTJWKSRefresh,
		Audience:    cfg.JWTAudience,
		Issuer:      cfg.JWTIssuer,
		Leeway:      cfg.JWTLeeway,
		Logger:      log,
	}
	if o.Leeway == 0 {
		o.Leeway = -1 // asked for none; zero would mean the default
	}
	if cfg.JWTSecret != "" {
		o.Secret = []byte(cfg.JWTSecret)
	}
	if cfg.JWTPublicKey != "" {
		b, err := os.ReadFile(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("jwt-public-key: %w", err)
		}
		if o.PublicKeys, err = auth.ParsePublicKeys(b); err != nil {
			return nil, fmt.Errorf("jwt-public-key %s: %w", cfg.JWTPublicKey, err)
		}
	}
	if o.Secret == nil && o.PublicKeys == nil && o.JWKSURL == "" {
		return nil, nil
	}
	v, err := auth.NewVerifier(o)
	if err != nil {
		return nil, fmt.Errorf("jwt: %w", err)
	}
	return v, nil
}

// logAccess says at start who may do what, without any secret.
func logAccess(log *slog.Logger, cfg config, tokens *auth.Verifier, keys *auth.KeyRing) {
	log.Info("publish keys", "names", keys.Names())
	if cfg.Demo {
		log.Warn("DEMO MODE: POST /v1/demo/token mints a token for anyone who asks, for any user name; the demo is for trying Herald only: never expose it, never run it in production")
		return
	}
	if tokens == nil {
		log.Warn("no JWT key configured (development): tokens are refused and anonymous clients may subscribe to every topic except users/**")
		return
	}
	anon := make([]string, len(cfg.AnonymousSubscribe))
	for i, p := range cfg.AnonymousSubscribe {
		anon[i] = p.String()
	}
	log.Info("tokens accepted", "secret", cfg.JWTSecret != "", "public_key_file", cfg.JWTPublicKey, "jwks_url", cfg.JWTJWKSURL,
		"audience", cfg.JWTAudience, "issuer", cfg.JWTIssuer, "anonymous_subscribe", anon)
}

// pageURL is where a browser on this machine finds the server listening on
// addr: a wildcard address is reached on loopback.
func pageURL(addr net.Addr, tls bool) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}
