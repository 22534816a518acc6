package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/internal/server"
)

// config is everything `herald serve` can be told. Each setting comes from a flag,
// a HERALD_* environment variable or the config file, in that order of precedence.
type config struct {
	Addr            string
	DataDir         string
	PublishKeys     []string
	Heartbeat       time.Duration
	Retry           time.Duration
	MaxLifetime     time.Duration
	RetentionCount  int
	RetentionAge    time.Duration
	ReservedSpace   int
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
}

// setting describes one knob: its flag name (also its key in the file), its
// environment variable, its default and where it lands in config.
type setting struct {
	name, def, usage string
	set              func(c *config, v string) error
}

func (s setting) env() string {
	return "HERALD_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

var settings = []setting{
	{"addr", ":8080", "listen address", func(c *config, v string) error { c.Addr = v; return nil }},
	{"data-dir", "./data", "directory of the embedded store and generated keys", func(c *config, v string) error { c.DataDir = v; return nil }},
	{"publish-key", "", "comma-separated publish keys (generated into the data dir when empty)", func(c *config, v string) error {
		c.PublishKeys = splitList(v)
		return nil
	}},
	{"heartbeat", "15s", "interval of heartbeat comments on idle streams", durationTo(func(c *config) *time.Duration { return &c.Heartbeat })},
	{"retry", "2s", "reconnection delay announced to clients with retry:", durationTo(func(c *config) *time.Duration { return &c.Retry })},
	{"max-lifetime", "0s", "close streams after this long so clients rebalance (0: never)", durationTo(func(c *config) *time.Duration { return &c.MaxLifetime })},
	{"retention-count", "10000", "events kept per topic", intTo(func(c *config) *int { return &c.RetentionCount })},
	{"retention-age", "24h", "how long events are kept (0: no age limit)", durationTo(func(c *config) *time.Duration { return &c.RetentionAge })},
	{"reserved-space", "67108864", "bytes kept in reserve on the data dir's disk: when the disk fills up they take the last write, and publishing pauses (503) until there is room for them twice over (at least 4194304)", func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < minReservedSpace {
			return fmt.Errorf("want a number of bytes of at least %d, got %q", minReservedSpace, v)
		}
		c.ReservedSpace = n
		return nil
	}},
	{"queue-size", "1024", "events queued per stream before a slow client is cut off", intTo(func(c *config) *int { return &c.QueueSize })},
	{"max-topics", "64", "topics per stream", intTo(func(c *config) *int { return &c.MaxTopics })},
	{"max-event-size", "65536", "bytes of data per event", intTo(func(c *config) *int { return &c.MaxEventSize })},
	{"max-body-size", "1048576", "bytes of a publish request body", intTo(func(c *config) *int { return &c.MaxBodySize })},
	{"jwt-secret", "", "HS256 secret for tokens, at least 32 bytes", func(c *config, v string) error {
		if v != "" && len(v) < auth.MinSecretLen {
			return fmt.Errorf("%d bytes, at least %d needed", len(v), auth.MinSecretLen)
		}
		c.JWTSecret = v
		return nil
	}},
	{"jwt-public-key", "", "PEM file of public keys for RS256, ES256 or EdDSA tokens", func(c *config, v string) error { c.JWTPublicKey = v; return nil }},
	{"jwt-jwks-url", "", "JWKS URL of the token issuer's keys, refreshed in the background", func(c *config, v string) error {
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return errors.New("want an http(s) URL")
			}
		}
		c.JWTJWKSURL = v
		return nil
	}},
	{"jwt-jwks-refresh", "5m", "how often the JWKS is fetched again", positiveDurationTo(func(c *config) *time.Duration { return &c.JWTJWKSRefresh })},
	{"jwt-audience", "", "when set, tokens must hold this aud", func(c *config, v string) error { c.JWTAudience = v; return nil }},
	{"jwt-issuer", "", "when set, tokens must have this iss", func(c *config, v string) error { c.JWTIssuer = v; return nil }},
	{"jwt-leeway", "30s", "clock skew allowed on exp, nbf and iat", durationTo(func(c *config) *time.Duration { return &c.JWTLeeway })},
	{"token-cookie", "herald_token", "cookie a stream's token is read from", func(c *config, v string) error {
		if v == "" || strings.ContainsAny(v, " \t;,=\"") {
			return errors.New("want a cookie name")
		}
		c.TokenCookie = v
		return nil
	}},
	{"anonymous-subscribe", "", "comma-separated topic patterns anonymous clients may subscribe to once a JWT key is set", func(c *config, v string) error {
		ps, err := auth.ParsePatterns(splitList(v))
		if err == nil {
			err = auth.CheckAnonymous(ps)
		}
		c.AnonymousSubscribe = ps
		return err
	}},
	{"cors-origins", "", "comma-separated origins allowed to call Herald from a browser, or *", func(c *config, v string) (err error) {
		c.CORSOrigins, err = server.ParseOrigins(splitList(v))
		return err
	}},
	{"trusted-proxies", "", "comma-separated proxy addresses or CIDRs whose X-Forwarded-For names the client", func(c *config, v string) (err error) {
		c.TrustedProxies, err = server.ParsePrefixes(splitList(v))
		return err
	}},
	{"max-connections-per-ip", "1000", "open streams per client address (0: no limit)", intTo(func(c *config) *int { return &c.MaxConnsPerIP })},
	{"max-connections-per-user", "32", "open streams per token subject (0: no limit)", intTo(func(c *config) *int { return &c.MaxConnsPerUser })},
	{"publish-rate", "20", "publish requests per second per token subject (0: no limit)", floatTo(func(c *config) *float64 { return &c.PublishRate })},
	{"publish-burst", "40", "publish requests a token subject may make at once", intTo(func(c *config) *int { return &c.PublishBurst })},
	{"publish-key-rate", "0", "publish requests per second per publish key (0: no limit)", floatTo(func(c *config) *float64 { return &c.PublishKeyRate })},
	{"publish-key-burst", "0", "publish requests a publish key may make at once (0: one second's worth)", intTo(func(c *config) *int { return &c.PublishKeyBurst })},
	{"debug-addr", "", "address of a profiling listener (net/http/pprof), e.g. 127.0.0.1:6060; empty: off", func(c *config, v string) error { c.DebugAddr = v; return nil }},
	{"read-header-timeout", "10s", "time allowed to send request headers (slowloris)", positiveDurationTo(func(c *config) *time.Duration { return &c.ReadHeaderTimeout })},
	{"idle-timeout", "2m", "how long an idle keep-alive connection is kept", positiveDurationTo(func(c *config) *time.Duration { return &c.IdleTimeout })},
	{"max-header-bytes", "65536", "bytes of request headers", intTo(func(c *config) *int { return &c.MaxHeaderBytes })},
	{"shutdown-timeout", "10s", "how long a graceful stop waits for streams and appends", durationTo(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
	{"log-format", "text", "log format: text or json", func(c *config, v string) error {
		if v != "text" && v != "json" {
			return errors.New("want text or json")
		}
		c.LogFormat = v
		return nil
	}},
	{"log-level", "info", "log level: debug, info, warn or error", func(c *config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return errors.New("want debug, info, warn or error")
	}},
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

// loadConfig parses args (after the subcommand) with getenv for the environment.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("herald serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags := make(map[string]*string, len(settings))
	for _, s := range settings {
		flags[s.name] = fs.String(s.name, s.def, s.usage+" ($"+s.env()+")")
	}
	file := fs.String("config", "", "TOML config file with the same keys as the flags ($HERALD_CONFIG)")
	if err := fs.Parse(args); err != nil {
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
	return c, nil
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
