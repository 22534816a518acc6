package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/local"
	"github.com/herald-hub/herald/internal/server"
)

// config is everything `herald serve` can be told. Each setting comes from a flag,
// a HERALD_* environment variable or the config file, in that order of precedence.
type config struct {
	Addr            string
	Engine          string
	DataDir         string
	NodeID          string // empty: generated once into the data dir
	PublishKeys     []string
	Heartbeat       time.Duration
	Retry           time.Duration
	MaxLifetime     time.Duration
	RetentionCount  int
	RetentionAge    time.Duration // local.NoAgeLimit when set to 0
	ReservedSpace   int
	StoreCacheSize  int
	QueueSize       int
	MaxTopics       int
	MaxEventSize    int
	MaxBodySize     int
	ShutdownTimeout time.Duration
	LogFormat       string
	LogLevel        string
	DebugAddr       string

	// Tokens and access.
	JWTSecret          string
	JWTPublicKey       string // path of a PEM file
	JWTJWKSURL         string
	JWTJWKSRefresh     time.Duration
	JWTAudience        string
	JWTIssuer          string
	JWTLeeway          time.Duration
	TokenCookie        string
	AnonymousSubscribe []auth.Pattern
	CORSOrigins        []string
	TrustedProxies     []netip.Prefix

	// Limits.
	MaxConnsPerIP     int
	MaxConnsPerUser   int
	PublishRate       float64
	PublishBurst      int
	PublishKeyRate    float64
	PublishKeyBurst   int
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int

	// Publishing.
	IdempotencyWindow time.Duration
	FsyncInterval     time.Duration
	PresenceEvents    bool
	PresenceURL       string // "": the engine's presence

	// The inbox.
	InboxDSN            string // "": SQLite in DataDir; "off": none
	InboxRetentionAge   time.Duration
	InboxRetentionCount int
	OutboxDSN           string // "": no relay

	// The browser pages.
	Demo               bool
	AdminStatsInterval time.Duration // 0: none

	// TLS: both files or neither; ClientCAs only with them.
	TLSCert, TLSKey string         // paths of PEM files
	TLSClientCA     string         // path of a PEM file
	ClientCAs       *x509.CertPool // read from TLSClientCA
}

// setting describes one knob: its flag name (also its key in the file), the
// kind of value it takes, its environment variable, its default and where it
// lands in config.
//
// Zero is never a stand-in for the default: a limit that can be lifted is
// lifted by 0 (its usage says "0: no limit"), one that cannot refuses 0.
type setting struct {
	name, typ, def, usage string // typ is what -h shows after the flag
	set                   func(c *config, v string) error
}

func (s setting) env() string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

var settings = []setting{
	{"addr", "address", ":8080", "listen address", func(c *config, v string) error { c.Addr = v; return nil }},
	{"data-dir", "dir", "./data", "directory of the embedded store, the generated publish key and the generated node id", func(c *config, v string) error { c.DataDir = v; return nil }},
	{"engine", "url", "local", "the engine: local (the embedded store in -data-dir), redis://host:port/db or rediss:// (a Redis shared by every node), nats://host:port?stream=HERALD (a NATS JetStream stream shared by every node), kafka://host:port[,host:port...]?topic=herald&partitions=32 (a Kafka topic that every node reads into a replica in -data-dir), or memory:// (in memory, lost at exit: for tests and demos)", func(c *config, v string) error {
		scheme, _, _ := strings.Cut(v, ":")
		if !slices.Contains(engine.Schemes(), scheme) {
			return fmt.Errorf("unknown engine %q (this herald has: %s)", v, strings.Join(engine.Schemes(), ", "))
		}
		c.Engine = v
		return nil
	}},
	{"node-id", "id", "", "this node's stable id (letters, digits, -, _, ., 1 to 64 bytes), in metrics, logs and health answers (generated once into the data dir when empty)", func(c *config, v string) error {
		if v != "" {
			if err := checkNodeID(v); err != nil {
				return err
			}
		}
		c.NodeID = v
		return nil
	}},
	{"publish-key", "list", "", "comma-separated publish keys, bare or name=KEY, 16 bytes at least (generated into the data dir when empty)", func(c *config, v string) error {
		c.PublishKeys = splitList(v)
		if len(c.PublishKeys) > 0 {
			if _, err := auth.ParseKeyRing(c.PublishKeys); err != nil {
				return err
			}
		}
		return nil
	}},
	{"heartbeat", "duration", "15s", "interval of heartbeat comments on idle streams (above 0)", positiveDurationTo(func(c *config) *time.Duration { return &c.Heartbeat })},
	{"retry", "duration", "2s", "reconnection delay announced to clients with retry: (above 0)", positiveDurationTo(func(c *config) *time.Duration { return &c.Retry })},
	{"max-lifetime", "duration", "0s", "close streams after this long so clients rebalance (0: no limit)", durationTo(func(c *config) *time.Duration { return &c.MaxLifetime })},
	{"retention-count", "int", "10000", "events kept per topic (at least 1)", positiveIntTo(func(c *config) *int { return &c.RetentionCount })},
	{"retention-age", "duration", "24h", "how long events are kept (0: no limit)", func(c *config, v string) error {
		if err := durationTo(func(c *config) *time.Duration { return &c.RetentionAge })(c, v); err != nil {
			return err
		}
		if c.RetentionAge == 0 {
			c.RetentionAge = local.NoAgeLimit // the engine reads 0 as its default
		}
		return nil
	}},
	{"reserved-space", "int", "67108864", "bytes kept in reserve on the data dir's disk: when the disk fills up they take the last write, and publishing pauses (503) until there is room for them twice over (at least 4194304)", bytesAtLeastTo(minReservedSpace, func(c *config) *int { return &c.ReservedSpace })},
	{"store-cache-size", "int", "67108864", "bytes of the embedded store's block cache (local engine, Kafka's replica), filled as tables are read: it holds the metadata of topics and the idempotency keys that appends look up (at least 1048576)", bytesAtLeastTo(minStoreCacheSize, func(c *config) *int { return &c.StoreCacheSize })},
	{"idempotency-window", "duration", "2m", "how long a publish's idempotency key (Idempotency-Key, or an event's id) keeps a retry from appending again; keys are stored that long (above 0)", positiveDurationTo(func(c *config) *time.Duration { return &c.IdempotencyWindow })},
	{"fsync-interval", "duration", "0s", "answer a publish once it is written to the log, and fsync the log at most this long after; events still reach streams and history only once fsynced, but a crash loses up to this much acknowledged publishes; at most 1s. Default: every publish is fsynced before it is answered (0: none)", func(c *config, v string) error {
		if err := durationTo(func(c *config) *time.Duration { return &c.FsyncInterval })(c, v); err != nil {
			return err
		}
		if c.FsyncInterval > local.MaxSyncInterval {
			return fmt.Errorf("at most %v, got %v", local.MaxSyncInterval, c.FsyncInterval)
		}
		return nil
	}},
	{"queue-size", "int", "1024", "events queued per stream before a slow client is cut off (at least 1)", positiveIntTo(func(c *config) *int { return &c.QueueSize })},
	{"max-topics", "int", "64", "topics per stream (at least 1)", positiveIntTo(func(c *config) *int { return &c.MaxTopics })},
	{"max-event-size", "int", "65536", "bytes of data per event (at least 1)", positiveIntTo(func(c *config) *int { return &c.MaxEventSize })},
	{"max-body-size", "int", "1048576", "bytes of a publish request body (at least 1)", positiveIntTo(func(c *config) *int { return &c.MaxBodySize })},
	{"inbox-dsn", "dsn", "", "the notification inbox's database: empty for SQLite in -data-dir (inbox.db), mysql://user:pass@host:3306/db, postgres://user@host:5432/db, or off for no inbox; nodes of a cluster need one shared database", func(c *config, v string) error {
		c.InboxDSN = v
		return nil
	}},
	{"outbox-dsn", "dsn", "", "the application's database holding herald_outbox (mysql://... or postgres://...), whose committed rows Herald relays to the inbox and the stream; created when missing (empty: no relay)", func(c *config, v string) error {
		c.OutboxDSN = v
		return nil
	}},
	{"inbox-retention-age", "duration", "2160h", "how long notifications are kept in the inbox (0: no limit)", durationTo(func(c *config) *time.Duration { return &c.InboxRetentionAge })},
	{"inbox-retention-count", "int", "1000", "notifications kept per user, the newest (0: no limit)", intTo(func(c *config) *int { return &c.InboxRetentionCount })},
	{"presence-url", "url", "", "share presence (who is online) through this back end rather than the engine: redis://... or nats://..., for an engine that keeps presence per node (kafka); empty: the engine's own", func(c *config, v string) error {
		c.PresenceURL = v
		return nil
	}},
	{"presence-events", "bool", "false", "publish a user's first stream joining a topic (type join) and the last leaving it (type leave) to presence/{topic}, readable by whoever may subscribe to the topic", boolTo(func(c *config) *bool { return &c.PresenceEvents })},
	{"demo", "bool", "false", "serve the demo at / and mint a token for anyone who asks at POST /v1/demo/token, signed with a key made at start; turns on -presence-events, needs the inbox, and is refused with JWT keys (-jwt-secret, -jwt-public-key, -jwt-jwks-url): for trying Herald, never in production", boolTo(func(c *config) *bool { return &c.Demo })},
	{"admin-stats-interval", "duration", "2s", "how often this node appends its statistics (streams, topics, rates) to the topic herald/stats, which the admin page at /admin reads (0: none)", durationTo(func(c *config) *time.Duration { return &c.AdminStatsInterval })},
	{"jwt-secret", "string", "", "HS256 secret for tokens, at least 32 bytes", func(c *config, v string) error {
		if v != "" && len(v) < auth.MinSecretLen {
			return fmt.Errorf("%d bytes, at least %d needed", len(v), auth.MinSecretLen)
		}
		c.JWTSecret = v
		return nil
	}},
	{"jwt-public-key", "file", "", "PEM file of public keys for RS256, ES256 or EdDSA tokens", func(c *config, v string) error {
		// Read and checked here so a bad file is a configuration error; serve
		// reads it again when it builds the verifier.
		if v != "" {
			if err := checkPublicKeyFile(v); err != nil {
				return err
			}
		}
		c.JWTPublicKey = v
		return nil
	}},
	{"jwt-jwks-url", "url", "", "JWKS URL of the token issuer's keys, refreshed in the background", func(c *config, v string) error {
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return errors.New("want an http(s) URL")
			}
		}
		c.JWTJWKSURL = v
		return nil
	}},
	{"jwt-jwks-refresh", "duration", "5m", "how often the JWKS is fetched again", positiveDurationTo(func(c *config) *time.Duration { return &c.JWTJWKSRefresh })},
	{"jwt-audience", "string", "", "when set, tokens must hold this aud", func(c *config, v string) error { c.JWTAudience = v; return nil }},
	{"jwt-issuer", "string", "", "when set, tokens must have this iss", func(c *config, v string) error { c.JWTIssuer = v; return nil }},
	{"jwt-leeway", "duration", "30s", "clock skew allowed on exp, nbf and iat (0: none)", durationTo(func(c *config) *time.Duration { return &c.JWTLeeway })},
	{"token-cookie", "name", "herald_token", "cookie a stream's token is read from", func(c *config, v string) error {
		if v == "" || strings.ContainsAny(v, " \t;,=\"") {
			return errors.New("want a cookie name")
		}
		c.TokenCookie = v
		return nil
	}},
	{"anonymous-subscribe", "list", "", "comma-separated topic patterns anonymous clients may subscribe to once a JWT key is set", func(c *config, v string) error {
		ps, err := auth.ParsePatterns(splitList(v))
		if err == nil {
			err = auth.CheckAnonymous(ps)
		}
		c.AnonymousSubscribe = ps
		return err
	}},
	{"cors-origins", "list", "", "comma-separated origins allowed to call Herald from a browser, or *", func(c *config, v string) (err error) {
		c.CORSOrigins, err = server.ParseOrigins(splitList(v))
		return err
	}},
	{"trusted-proxies", "list", "", "comma-separated proxy addresses or CIDRs whose X-Forwarded-For names the client", func(c *config, v string) (err error) {
		c.TrustedProxies, err = server.ParsePrefixes(splitList(v))
		return err
	}},
	{"max-connections-per-ip", "int", "1000", "open streams per client address (0: no limit)", intTo(func(c *config) *int { return &c.MaxConnsPerIP })},
	{"max-connections-per-user", "int", "32", "open streams per token subject (0: no limit)", intTo(func(c *config) *int { return &c.MaxConnsPerUser })},
	{"publish-rate", "float", "20", "publish requests per second per token subject (0: no limit)", floatTo(func(c *config) *float64 { return &c.PublishRate })},
	{"publish-burst", "int", "40", "publish requests a token subject may make at once (at least 1)", positiveIntTo(func(c *config) *int { return &c.PublishBurst })},
	{"publish-key-rate", "float", "0", "publish requests per second per publish key (0: no limit)", floatTo(func(c *config) *float64 { return &c.PublishKeyRate })},
	{"publish-key-burst", "int", "", "publish requests a publish key may make at once (at least 1; unset: one second's worth of -publish-key-rate)", func(c *config, v string) error {
		if v == "" {
			c.PublishKeyBurst = 0 // the server derives it from the rate
			return nil
		}
		return positiveIntTo(func(c *config) *int { return &c.PublishKeyBurst })(c, v)
	}},
	{"debug-addr", "address", "", "address of a profiling listener (net/http/pprof), e.g. 127.0.0.1:6060; empty: off", func(c *config, v string) error { c.DebugAddr = v; return nil }},
	{"tls-cert", "file", "", "PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1) instead of HTTP, with -tls-key; reloaded when the files change or on SIGHUP", func(c *config, v string) error { c.TLSCert = v; return nil }},
	{"tls-key", "file", "", "PEM private key of -tls-cert", func(c *config, v string) error { c.TLSKey = v; return nil }},
	{"tls-client-ca", "file", "", "PEM CA certificates for mutual TLS: POST /v1/publish and GET /v1/backup then need a client certificate they signed; streams do not", func(c *config, v string) error {
		c.TLSClientCA, c.ClientCAs = v, nil
		if v == "" {
			return nil
		}
		var err error
		c.ClientCAs, err = loadCertPool(v)
		return err
	}},
	{"read-header-timeout", "duration", "10s", "time allowed to send request headers (slowloris)", positiveDurationTo(func(c *config) *time.Duration { return &c.ReadHeaderTimeout })},
	{"idle-timeout", "duration", "2m", "how long an idle keep-alive connection is kept", positiveDurationTo(func(c *config) *time.Duration { return &c.IdleTimeout })},
	{"max-header-bytes", "int", "65536", "bytes of request line and headers (at least 1; Go allows 4096 more)", positiveIntTo(func(c *config) *int { return &c.MaxHeaderBytes })},
	{"shutdown-timeout", "duration", "10s", "how long a graceful stop waits for streams and appends (above 0)", positiveDurationTo(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
	{"log-format", "string", "text", "log format: text or json", func(c *config, v string) error {
		if v != "text" && v != "json" {
			return errors.New("want text or json")
		}
		c.LogFormat = v
		return nil
	}},
	{"log-level", "string", "info", "log level: debug, info, warn or error", func(c *config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return errors.New("want debug, info, warn or error")
	}},
}

func boolTo(field func(*config) *bool) func(*config, string) error {
	return func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q: want true or false", v)
		}
		*field(c) = b
		return nil
	}
}

func durationTo(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("want a non-negative duration like 15s or 2m, got %q", v)
		}
		*field(c) = d
		return nil
	}
}

func positiveDurationTo(field func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration like 10s or 5m, got %q", v)
		}
		*field(c) = d
		return nil
	}
}

func floatTo(field func(*config) *float64) func(*config, string) error {
	return func(c *config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("want a non-negative number, got %q", v)
		}
		*field(c) = f
		return nil
	}
}

// minReservedSpace holds a memtable of the store: reopening a store writes out
// what its log holds.
const minReservedSpace = 4 << 20

// minStoreCacheSize keeps a few blocks of each table in memory; below it the
// store would read the disk for most lookups.
const minStoreCacheSize = 1 << 20

func bytesAtLeastTo(least int, field func(*config) *int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			return fmt.Errorf("want a number of bytes of at least %d (this limit cannot be lifted), got %q", least, v)
		}
		*field(c) = n
		return nil
	}
}

func positiveIntTo(field func(*config) *int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive integer (this limit cannot be lifted), got %q", v)
		}
		*field(c) = n
		return nil
	}
}

// checkPublicKeyFile reads a PEM file of public keys and checks each would
// verify tokens.
func checkPublicKeyFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	keys, err := auth.ParsePublicKeys(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	v, err := auth.NewVerifier(auth.Options{PublicKeys: keys})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return v.Close()
}

func intTo(field func(*config) *int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a non-negative integer, got %q", v)
		}
		*field(c) = n
		return nil
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// boolText is a bool setting's flag: given alone (-demo) it is true, like a
// Go bool flag; its text is checked by the setting, as for the environment.
type boolText struct{ s string }

func (b *boolText) String() string     { return b.s }
func (b *boolText) Set(v string) error { b.s = v; return nil }
func (b *boolText) IsBoolFlag() bool   { return true }

// joinBoolValues turns "-presence-events true" into "-presence-events=true":
// a bool flag alone means true, and the value written after it, which
// herald serve has always accepted, would otherwise be an unexpected
// argument.
func joinBoolValues(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...) // the flags end here
		}
		out = append(out, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") || i+1 >= len(args) {
			continue
		}
		if !isBoolSetting(name) {
			out = append(out, args[i+1]) // a flag's value, whatever it looks like
			i++
			continue
		}
		if _, err := strconv.ParseBool(args[i+1]); err == nil {
			out[len(out)-1] = a + "=" + args[i+1]
			i++
		}
	}
	return out
}

func isBoolSetting(name string) bool {
	for _, s := range settings {
		if s.name == name {
			return s.typ == "bool"
		}
	}
	return false
}

// loadConfig parses args (after the subcommand) with getenv for the environment.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("herald serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := make(map[string]*string, len(settings))
	for _, s := range settings {
		if s.typ == "bool" {
			v := &boolText{s.def}
			fs.Var(v, s.name, s.usage+" ($"+s.env()+")")
			flags[s.name] = &v.s
			continue
		}
		flags[s.name] = fs.String(s.name, s.def, s.usage+" ($"+s.env()+")")
	}
	file := fs.String("config", "", "TOML config file with the same keys as the flags ($HERALD_CONFIG)")
	fs.Usage = func() { printServeUsage(fs.Output()) }
	if err := fs.Parse(joinBoolValues(args)); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	path := *file
	if !given["config"] {
		path = getenv("HERALD_CONFIG")
	}
	fromFile, err := readConfigFile(path)
	if err != nil {
		return config{}, err
	}
	var c config
	for _, s := range settings {
		v, src := s.def, "default"
		if fv, ok := fromFile[s.name]; ok {
			v, src = fv, path
		}
		if ev := getenv(s.env()); ev != "" {
			v, src = ev, s.env()
		}
		if given[s.name] {
			v, src = *flags[s.name], "-"+s.name
		}
		if err := s.set(&c, v); err != nil {
			return config{}, fmt.Errorf("%s (from %s): %w", s.name, src, err)
		}
	}
	if err := checkTLS(c); err != nil {
		return config{}, err
	}
	if err := checkDemo(c); err != nil {
		return config{}, err
	}
	return c, nil
}

// checkDemo refuses the demo where it does not belong: beside real JWT keys
// (a production key must never sign a demo token), on anything shared with
// other nodes or applications (a demo token must never open a real user's
// topic or inbox), and without the inbox its page shows.
func checkDemo(c config) error {
	if !c.Demo {
		return nil
	}
	var keys []string
	for _, k := range []struct{ name, v string }{{"-jwt-secret", c.JWTSecret}, {"-jwt-public-key", c.JWTPublicKey}, {"-jwt-jwks-url", c.JWTJWKSURL}} {
		if k.v != "" {
			keys = append(keys, k.name)
		}
	}
	if len(keys) > 0 {
		return fmt.Errorf("demo: refused with JWT keys (%s): the demo mints tokens for anyone with a key of its own and is for trying Herald, not for a server with real users", strings.Join(keys, ", "))
	}
	if c.InboxDSN == "off" {
		return errors.New("demo: needs the inbox, which -inbox-dsn off turns off: its page shows each user's notifications (leave -inbox-dsn empty for SQLite in -data-dir)")
	}
	// Demo tokens read any users/{id} and publish anywhere: on a shared
	// engine or database they would open real users' streams and inboxes.
	var shared []string
	if scheme, _, _ := strings.Cut(c.Engine, ":"); scheme != "local" && scheme != "memory" {
		shared = append(shared, "-engine "+scheme)
	}
	for _, k := range []struct{ name, v string }{{"-inbox-dsn", c.InboxDSN}, {"-outbox-dsn", c.OutboxDSN}, {"-presence-url", c.PresenceURL}} {
		if k.v != "" {
			shared = append(shared, k.name)
		}
	}
	if len(shared) > 0 {
		return fmt.Errorf("demo: refused with %s: demo tokens open any user's topic and inbox, so the demo runs only on this node's own store (the local or memory engine, the inbox in -data-dir)", strings.Join(shared, ", "))
	}
	return nil
}

// checkTLS checks the TLS settings together and loads the key pair once, so a
// missing file or a key that does not match is a configuration error; serve
// loads them again.
func checkTLS(c config) error {
	switch {
	case c.TLSCert == "" && c.TLSKey == "":
		if c.TLSClientCA != "" {
			return errors.New("tls-client-ca needs -tls-cert and -tls-key")
		}
		return nil
	case c.TLSCert == "":
		return errors.New("tls-key is set without tls-cert: give both or neither")
	case c.TLSKey == "":
		return errors.New("tls-cert is set without tls-key: give both or neither")
	}
	_, err := loadKeyPair(c.TLSCert, c.TLSKey)
	return err
}

const serveUsage = `Usage: herald serve [flags]

Runs a Herald node. Every flag can also be set with its HERALD_* environment
variable or as a key of the TOML file given with -config; flags win over the
environment, which wins over the file.

A limit that can be lifted is lifted by 0 (its help says "0: no limit"); one
that cannot refuses 0. Zero never stands for the default.

Exit status: 0 after a graceful stop; 1 when the node fails while running
(cannot listen, cannot open its store); 2 on a bad command line or a bad
configuration (a value, the config file, a key file).

Flags:
`

// printServeUsage is flag.PrintDefaults with each flag's real kind of value:
// the settings are read as strings (to apply flag > env > file), which
// PrintDefaults would show as "string".
func printServeUsage(w io.Writer) {
	fmt.Fprint(w, serveUsage)
	line := func(name, typ, usage, def, env string) {
		fmt.Fprintf(w, "  -%s %s\n    \t%s", name, typ, usage)
		if def != "" {
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintf(w, " ($%s)\n", env)
	}
	line("config", "file", "TOML config file with the same keys as the flags", "", "HERALD_CONFIG")
	for _, s := range settings {
		line(s.name, s.typ, s.usage, s.def, s.env())
	}
}

// readConfigFile reads a TOML file of `key = value` lines using the flag names
// as keys (dashes or underscores).
func readConfigFile(path string) (map[string]string, error) {
	out := map[string]string{}
	if path == "" {
		return out, nil
	}
	raw := map[string]any{}
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.name] = true
	}
	for k, v := range raw {
		name := strings.ReplaceAll(k, "_", "-")
		if !known[name] {
			return nil, fmt.Errorf("config file %s: unknown key %q", path, k)
		}
		switch v := v.(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			out[name] = strings.Join(parts, ",")
		default:
			out[name] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// maxNodeIDLen is the longest node id.
const maxNodeIDLen = 64

// checkNodeID accepts 1 to 64 bytes of letters, digits, '-', '_' and '.':
// safe in a URL, a metric label and a log line without quoting.
func checkNodeID(id string) error {
	if len(id) == 0 || len(id) > maxNodeIDLen {
		return fmt.Errorf("node id %q: want 1 to %d bytes, got %d", id, maxNodeIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("node id %q: byte %d (%q) is not a letter, a digit, '-', '_' or '.'", id, i, c)
		}
	}
	return nil
}
