// Package server is Herald's HTTP surface: SSE streams, publishing, health and
// metrics, with JSON errors throughout.
package server

import (
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/inbox"
	"github.com/herald-hub/herald/internal/hub"
	"github.com/herald-hub/herald/internal/ratelog"
	"github.com/herald-hub/herald/presence"
)

// Config holds the HTTP surface's limits and credentials. Zero values take the
// defaults in brackets.
type Config struct {
	// PublishKeys are the static publish keys, "name=KEY" or a bare "KEY"
	// (see auth.ParseKeyRing). A publish key may publish and subscribe to
	// every topic.
	PublishKeys []string
	// Tokens verifies JWTs. Nil means no JWT key is configured (development):
	// tokens are refused and anonymous clients may subscribe to every topic
	// but users/**.
	Tokens *auth.Verifier
	// AnonymousSubscribe is what anonymous clients may subscribe to when
	// Tokens is set [nothing].
	AnonymousSubscribe []auth.Pattern
	TokenCookie        string   // cookie holding a token [herald_token]
	CORSOrigins        []string // allowed origins, or "*" [none: same origin only]

	MaxTopics       int     // topics per stream [64]
	MaxEventSize    int     // bytes of data per event [64 KiB]
	MaxBodySize     int64   // bytes of a publish request body [1 MiB]
	MaxBatch        int     // events per publish request [1000]
	MaxConnsPerIP   int     // open streams per client address [no limit]
	MaxConnsPerUser int     // open streams per token subject [no limit]
	PublishRate     float64 // publish requests per second per token subject [no limit]
	PublishBurst    int     // requests a token subject may make at once [rate, at least 1]
	KeyPublishRate  float64 // publish requests per second per publish key [no limit]
	KeyPublishBurst int     // requests a publish key may make at once [rate, at least 1]
	// TrustedProxies are the proxies whose X-Forwarded-For names the client,
	// for the per-address limit [none: the peer address counts].
	TrustedProxies []netip.Prefix
	// NodeID names this node in herald_node_info, the health answers and
	// presence [none: left out].
	NodeID string
	// PresenceFrom shares presence through another back end than the
	// engine's (a Kafka engine's nodes presence through Redis or NATS)
	// [nil: the engine's own when it shares one, else this node's memory].
	PresenceFrom presence.Provider
	// PresenceEvents publishes a user's first stream joining a topic, and
	// the last leaving it, to presence/{topic} [off].
	PresenceEvents bool
	// Inbox stores notifications for /v1/notifications [nil: no inbox API].
	// The server pushes what it holds unpushed to the users' topics; the
	// caller owns the store and closes it after Close.
	Inbox inbox.Store
	// InboxPoll is how often the store is looked at for notifications left
	// unpushed (by another node, or a failure) [1s].
	InboxPoll time.Duration
	// Demo serves the demo page at / and mints demo tokens at
	// POST /v1/demo/token, signed with a key made here, at start; it turns
	// on PresenceEvents. It is refused (logged, and left off) when Tokens is
	// set: a production key never signs a demo token [off].
	Demo bool
	// AdminStats is how often this node appends its statistics to
	// herald/stats, for the admin page [0: never].
	AdminStats time.Duration
	Logger     *slog.Logger

	now             func() time.Time // tests
	demoFS, adminFS fs.FS            // tests [the embedded pages, read once per process]
}

func (c *Config) setDefaults() {
	if c.MaxTopics <= 0 {
		c.MaxTopics = 64
	}
	if c.MaxEventSize <= 0 {
		c.MaxEventSize = 64 << 10
	}
	if c.MaxBodySize <= 0 {
		c.MaxBodySize = 1 << 20
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.TokenCookie == "" {
		c.TokenCookie = DefaultTokenCookie
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.InboxPoll <= 0 {
		c.InboxPoll = time.Second
	}
}

// Server serves Herald's HTTP API for one hub and its engine.
type Server struct {
	cfg     Config
	hub     *hub.Hub
	eng     engine.Engine
	log     *slog.Logger
	metrics *metrics
	reg     *prometheus.Registry
	mux     *http.ServeMux
	handler http.Handler
	guard   *auth.Guard

	ipConns, userConns *connLimiter
	userRate, keyRate  *rateLimiter

	presence  presence.Registry
	announcer *announcer       // nil without PresenceEvents
	pusher    *inbox.Pusher    // nil without an inbox
	warnings  *ratelog.Limiter // repeated warnings, logged once in a while

	demo       *demoMode      // nil without Demo
	demoTokens *auth.Verifier // the demo's, closed by Close
	admin      *page
	stats      *statsReporter // nil without AdminStats

	// publishes counts the publish requests that appended (POST /v1/publish)
	// or stored (POST /v1/notifications); events the events POST /v1/publish
	// appended. Read by the admin statistics.
	publishes, events atomic.Uint64
}

// New returns a server for h, publishing to h's engine.
func New(h *hub.Hub, cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, hub: h, eng: h.Engine(), log: cfg.Logger, mux: http.NewServeMux()}
	s.admin = s.loadPage("admin", cfg.adminFS)
	if cfg.Demo {
		if cfg.Tokens != nil {
			s.log.Error("the demo is refused: JWT keys are configured, and a production key must never sign demo tokens; the demo is off")
		} else if d, v, err := newDemo(s.loadPage("demo", cfg.demoFS), cfg.now); err != nil {
			s.log.Error("the demo could not start; it is off", "err", err)
		} else {
			s.demo, s.demoTokens = d, v
			cfg.Tokens = v
			cfg.PresenceEvents = true
			s.cfg = cfg
		}
	}
	s.guard = newGuard(cfg)
	s.ipConns = newConnLimiter(cfg.MaxConnsPerIP)
	s.userConns = newConnLimiter(cfg.MaxConnsPerUser)
	s.userRate = newRateLimiter(cfg.PublishRate, cfg.PublishBurst, cfg.now)
	s.keyRate = newRateLimiter(cfg.KeyPublishRate, cfg.KeyPublishBurst, cfg.now)
	s.warnings = ratelog.NewLimiter(5 * time.Second)
	reg := prometheus.NewRegistry()
	s.reg = reg
	s.metrics = newMetrics(reg, h, cfg.Tokens, cfg.NodeID)
	popt := presence.Options{Node: cfg.NodeID}
	if cfg.PresenceEvents {
		s.announcer = newAnnouncer(s)
		popt.OnChange = s.announcer.change
	}
	var from any = s.eng
	if cfg.PresenceFrom != nil {
		from = cfg.PresenceFrom
	}
	s.presence = presence.Open(from, popt)
	if cfg.Inbox != nil {
		s.pusher = inbox.NewPusher(cfg.Inbox, s.eng, cfg.InboxPoll, s.log)
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_inbox_pushed_total", Help: "Notifications appended to their users' topics by this node."}, func() float64 { return float64(s.pusher.Pushed()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_inbox_push_failures_total", Help: "Rounds of pushing notifications that failed and were retried (engine or store down)."}, func() float64 { return float64(s.pusher.Failures()) }),
		)
	}
	s.mux.HandleFunc("GET /v1/events", s.handleEvents)
	s.mux.HandleFunc("POST /v1/publish", s.handlePublish)
	s.mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux.HandleFunc("GET /readyz", s.handleReadyz)
	s.mux.HandleFunc("GET /v1/backup", s.handleBackup)
	s.mux.HandleFunc("GET /v1/presence", s.handleTopicPresence)
	s.mux.HandleFunc("GET /v1/presence/users/{id}", s.handleUserPresence)
	s.mux.HandleFunc("POST /v1/notifications", s.handleSend)
	s.mux.HandleFunc("GET /v1/notifications", s.handleList)
	s.mux.HandleFunc("POST /v1/notifications/read-all", s.handleReadAll)
	s.mux.HandleFunc("POST /v1/notifications/{id}/read", s.handleMarkRead)
	s.mux.HandleFunc("DELETE /v1/notifications/{id}", s.handleDelete)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// The pages. GET /{$} is / alone: every other unknown path keeps the
	// JSON 404 of the catch-all below.
	s.mux.HandleFunc("GET /{$}", s.handleRoot)
	s.mux.HandleFunc("GET /admin", s.handleAdmin)
	s.mux.HandleFunc("GET /admin/{file...}", s.handleAdminAsset)
	allows := map[string]string{"/v1/events": "GET, HEAD", "/v1/publish": "POST", "/healthz": "GET, HEAD", "/readyz": "GET, HEAD", "/metrics": "GET, HEAD", "/v1/backup": "GET", "/v1/presence": "GET, HEAD", "/v1/presence/users/{id}": "GET, HEAD", "/v1/notifications": "GET, HEAD, POST", "/v1/notifications/{id}/read": "POST",
		"/{$}": "GET, HEAD", "/admin": "GET, HEAD", "/admin/{file...}": "GET, HEAD"}
	if s.demo != nil {
		s.mux.HandleFunc("GET /demo/{file...}", func(w http.ResponseWriter, r *http.Request) { s.serveAsset(w, r, s.demo.page) })
		s.mux.HandleFunc("POST /v1/demo/token", s.handleDemoToken)
		allows["/demo/{file...}"] = "GET, HEAD"
		allows["/v1/demo/token"] = "POST"
	}
	// A known path with another method gets a JSON 405 too, not net/http's text.
	for path, allow := range allows {
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			s.refuse(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", r.Method + " is not allowed on " + r.URL.Path + "; use " + allow})
		})
	}
	// One fallback for /v1/notifications/read-all and /v1/notifications/{id}:
	// a method-less read-all pattern would conflict with DELETE {id}.
	s.mux.HandleFunc("/v1/notifications/{id}", func(w http.ResponseWriter, r *http.Request) {
		allow := "DELETE"
		if r.PathValue("id") == "read-all" {
			allow = "POST"
		}
		w.Header().Set("Allow", allow)
		s.refuse(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", r.Method + " is not allowed on " + r.URL.Path + "; use " + allow})
	})
	s.mux.HandleFunc("/", s.notFound)
	if cfg.AdminStats > 0 {
		s.stats = newStatsReporter(s, cfg.AdminStats)
	}
	s.handler = newCORS(cfg.CORSOrigins).wrap(http.HandlerFunc(s.route))
	return s
}

// route hands r to the mux unless the mux would redirect it to its cleaned
// path (//v1/events, /v1/./events) with a text body: Herald has no such paths,
// so they get the JSON 404 every unknown path gets.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.EscapedPath(); r.Method != http.MethodConnect && !isCleanPath(p) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+p+" (paths are not cleaned; endpoints are /v1/events, /v1/publish, /v1/notifications, /v1/presence, /v1/presence/users/{id}, /v1/backup, /v1/demo/token, /healthz, /readyz, /metrics; pages are /, /admin)")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// isCleanPath reports whether p is what ServeMux's path cleaning leaves as it
// is: rooted, without empty, "." or ".." segments; a trailing slash is kept.
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c == p
}

// newGuard builds the credential checks. Settings are validated by whoever
// builds cfg (the herald command does); one that slipped through fails closed:
// no publish keys, no anonymous access.
func newGuard(cfg Config) *auth.Guard {
	keys, err := auth.ParseKeyRing(cfg.PublishKeys)
	if err != nil {
		cfg.Logger.Error("publish keys refused; publishing with a key is disabled", "err", err)
		keys = nil
	}
	g, err := auth.NewGuard(cfg.Tokens, keys, cfg.AnonymousSubscribe)
	if err != nil {
		cfg.Logger.Error("anonymous patterns refused; anonymous access is disabled", "err", err)
		g, _ = auth.NewGuard(cfg.Tokens, keys, nil)
	}
	return g
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Close stops what the server runs beside its handlers: it stops the admin
// statistics, removes this node's presence and publishes the changes still
// queued. Call it once the
// streams have ended (after the hub's Shutdown) and before the engine closes.
func (s *Server) Close() {
	if s.stats != nil {
		s.stats.close()
	}
	if s.demoTokens != nil {
		s.demoTokens.Close()
	}
	if s.pusher != nil {
		s.pusher.Close()
	}
	s.presence.Close()
	if s.announcer != nil {
		s.announcer.close()
	}
}

// WakeInbox asks for notifications stored by others (an outbox relay) to be
// pushed now; it never blocks.
func (s *Server) WakeInbox() {
	if s.pusher != nil {
		s.pusher.Wake()
	}
}

// OutboxStats is what an outbox relay counts.
type OutboxStats interface {
	Relayed() uint64
	Failures() uint64
}

// ExportOutbox adds an outbox relay's counters to /metrics.
func (s *Server) ExportOutbox(o OutboxStats) {
	s.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_outbox_relayed_total", Help: "Outbox rows moved into the inbox by this node."}, func() float64 { return float64(o.Relayed()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "herald_outbox_failures_total", Help: "Rounds of relaying the outbox that failed and were retried."}, func() float64 { return float64(o.Failures()) }),
	)
}
