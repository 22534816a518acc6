package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/engine/local"
)

func TestConfigPrecedenceFlagsThenEnvThenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.toml")
	os.WriteFile(file, []byte("addr = \":7000\"\nheartbeat = \"5s\"\nqueue_size = 7\npublish-key = [\"k1=0123456789abcdef\", \"k2=fedcba9876543210\"]\n"), 0o600)
	env := map[string]string{"HERALD_CONFIG": file, "HERALD_ADDR": ":7001", "HERALD_HEARTBEAT": "6s"}
	c, err := loadConfig([]string{"-heartbeat", "9s"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":7001" { // env beats file
		t.Errorf("addr %q", c.Addr)
	}
	if c.Heartbeat != 9*time.Second { // flag beats env and file
		t.Errorf("heartbeat %v", c.Heartbeat)
	}
	if c.QueueSize != 7 || strings.Join(c.PublishKeys, ",") != "k1=0123456789abcdef,k2=fedcba9876543210" { // file beats default
		t.Errorf("queue %d keys %v", c.QueueSize, c.PublishKeys)
	}
	if c.DataDir != "./data" || c.MaxTopics != 64 { // defaults
		t.Errorf("defaults: %+v", c)
	}
}

func TestConfigErrorsNameTheSettingAndItsSource(t *testing.T) {
	env := map[string]string{"HERALD_QUEUE_SIZE": "lots"}
	_, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "queue-size (from HERALD_QUEUE_SIZE)") {
		t.Fatalf("err = %v", err)
	}
	file := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(file, []byte("adr = \":1\"\n"), 0o600)
	_, err = loadConfig([]string{"-config", file}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `unknown key "adr"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestSecuritySettings(t *testing.T) {
	env := map[string]string{
		"HERALD_JWT_SECRET":               strings.Repeat("s", 32),
		"HERALD_JWT_JWKS_URL":             "https://id.example/.well-known/jwks.json",
		"HERALD_JWT_AUDIENCE":             "herald",
		"HERALD_JWT_ISSUER":               "https://id.example",
		"HERALD_TOKEN_COOKIE":             "sess",
		"HERALD_ANONYMOUS_SUBSCRIBE":      "public/**, news",
		"HERALD_CORS_ORIGINS":             "https://app.example, http://localhost:5173",
		"HERALD_TRUSTED_PROXIES":          "10.0.0.0/8,127.0.0.1",
		"HERALD_PUBLISH_RATE":             "2.5",
		"HERALD_MAX_CONNECTIONS_PER_USER": "4",
	}
	c, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTSecret != env["HERALD_JWT_SECRET"] || c.JWTJWKSURL != env["HERALD_JWT_JWKS_URL"] || c.JWTAudience != "herald" || c.JWTIssuer != "https://id.example" {
		t.Errorf("jwt: %+v", c)
	}
	if c.TokenCookie != "sess" || len(c.AnonymousSubscribe) != 2 || c.AnonymousSubscribe[0].String() != "public/**" || len(c.CORSOrigins) != 2 || len(c.TrustedProxies) != 2 {
		t.Errorf("access: %+v", c)
	}
	if c.PublishRate != 2.5 || c.MaxConnsPerUser != 4 || c.MaxConnsPerIP != 1000 || c.JWTLeeway != 30*time.Second || c.ReadHeaderTimeout != 10*time.Second {
		t.Errorf("limits: %+v", c)
	}
	for k, v := range map[string]string{
		"HERALD_JWT_SECRET":          "short",
		"HERALD_ANONYMOUS_SUBSCRIBE": "users/**",
		"HERALD_CORS_ORIGINS":        "app.example",
		"HERALD_TRUSTED_PROXIES":     "proxy",
		"HERALD_JWT_JWKS_URL":        "ftp://x",
		"HERALD_PUBLISH_RATE":        "-1",
		"HERALD_READ_HEADER_TIMEOUT": "0s",
	} {
		_, err := loadConfig(nil, func(key string) string {
			if key == k {
				return v
			}
			return ""
		}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

func TestTokenCommandMintsWithTheServersSecret(t *testing.T) {
	secret := strings.Repeat("k", 40)
	env := map[string]string{"HERALD_JWT_SECRET": secret, "HERALD_JWT_AUDIENCE": "herald"}
	var out, errb strings.Builder
	code := run(t.Context(), []string{"token", "-sub", "42", "-subscribe", "rooms/*", "-publish", "rooms/7,games/{sub}/*", "-ttl", "5m"}, func(k string) string { return env[k] }, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	v, err := auth.NewVerifier(auth.Options{Secret: []byte(secret), Audience: "herald"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p, err := v.Verify(t.Context(), strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "42" || !p.CanSubscribe("users/42") || !p.CanSubscribe("rooms/1") || !p.CanPublish("games/42/1") || p.CanPublish("rooms/8") {
		t.Fatalf("principal %+v", p)
	}
	if d := time.Until(p.Expires); d > 5*time.Minute+30*time.Second || d < 5*time.Minute { // ttl + leeway
		t.Fatalf("expires in %v", d)
	}
	// Without a secret, or a subject, it explains and fails.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "-sub", "42"}, "HERALD_JWT_SECRET"},
		{[]string{"token"}, "-sub is required"},
	} {
		errb.Reset()
		if code := run(t.Context(), c.args, func(string) string { return "" }, &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d %q", c.args, code, errb.String())
		}
	}
}

// herald serve wires the security settings through: a token minted by herald
// token opens the user's own topic, another user's topic is refused, anonymous
// access follows -anonymous-subscribe, and limits are counted in /metrics.
func TestServeAppliesSecuritySettings(t *testing.T) {
	secret := strings.Repeat("x", 32)
	p := startProcess(t, t.TempDir(), "-jwt-secret", secret, "-anonymous-subscribe", "public/**", "-max-connections-per-user", "1", "-cors-origins", "https://app.example")
	var out strings.Builder
	env := map[string]string{"HERALD_JWT_SECRET": secret}
	if code := run(t.Context(), []string{"token", "-sub", "7"}, func(k string) string { return env[k] }, &out, io.Discard); code != 0 {
		t.Fatalf("token: exit %d", code)
	}
	tok := strings.TrimSpace(out.String())
	get := func(path string, header ...string) *http.Response {
		req, _ := http.NewRequest("GET", p.url(path), nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	own := get("/v1/events?topic=users/7", "Authorization", "Bearer "+tok, "Origin", "https://app.example")
	if own.StatusCode != 200 || own.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("own topic: %d %v", own.StatusCode, own.Header)
	}
	for path, want := range map[string]int{
		"/v1/events?topic=users/8":                       401, // anonymous: a token could grant it
		"/v1/events?topic=rooms/1":                       401,
		"/v1/events?topic=users/8&access_token=" + tok:   403, // a token that does not grant it
		"/v1/events?topic=public/news":                   200,
		"/v1/events?topic=users/7&access_token=" + tok:   429, // one stream per user
		"/v1/events?topic=rooms/1&access_token=bad.to.k": 401,
	} {
		if resp := get(path); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	metrics := get("/metrics")
	raw, _ := io.ReadAll(metrics.Body)
	if !strings.Contains(string(raw), `herald_limit_exceeded_total{limit="connections_per_user"} 1`) {
		t.Fatal("connections_per_user not counted in /metrics")
	}
}

// A zero lifts a limit where Herald can run without it, and is refused where
// it cannot; it never quietly means the default. Every numeric setting is in
// one list or the other, so a new one must be decided too.
func TestZeroLiftsALimitOrIsRefused(t *testing.T) {
	lifts := map[string]bool{
		"max-lifetime": true, "retention-age": true, "jwt-leeway": true,
		"max-connections-per-ip": true, "max-connections-per-user": true,
		"publish-rate": true, "publish-key-rate": true, "fsync-interval": true,
		"inbox-retention-age": true, "inbox-retention-count": true,
		"admin-stats-interval": true,
	}
	refuses := map[string]bool{
		"heartbeat": true, "retry": true, "retention-count": true, "queue-size": true,
		"max-topics": true, "max-event-size": true, "max-body-size": true, "jwt-jwks-refresh": true,
		"publish-burst": true, "publish-key-burst": true, "read-header-timeout": true,
		"idle-timeout": true, "max-header-bytes": true, "shutdown-timeout": true,
		"reserved-space": true, "idempotency-window": true, "store-cache-size": true,
	}
	none := func(string) string { return "" }
	for _, s := range settings {
		switch s.typ {
		case "int", "float", "duration":
		default:
			continue
		}
		if lifts[s.name] == refuses[s.name] {
			t.Errorf("-%s: decide what 0 means", s.name)
			continue
		}
		for _, neg := range []string{"-1", "-1s"} {
			if _, err := loadConfig([]string{"-" + s.name, neg}, none, io.Discard); err == nil {
				t.Errorf("-%s %s accepted", s.name, neg)
			}
		}
		_, err := loadConfig([]string{"-" + s.name, "0"}, none, io.Discard)
		if refuses[s.name] {
			if err == nil || !strings.Contains(err.Error(), s.name) {
				t.Errorf("-%s 0: %v, want an error naming it", s.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("-%s 0: %v", s.name, err)
		}
		if !strings.Contains(s.usage, "(0: no limit)") && !strings.Contains(s.usage, "(0: none)") {
			t.Errorf("-%s: help %q does not say what 0 means", s.name, s.usage)
		}
	}
	// The engine reads a zero age as its 24h default: 0 must reach it as
	// "no age limit".
	// The idempotency window reaches the engine as given; its default is the engine's.
	w, err := loadConfig([]string{"-idempotency-window", "90s"}, none, io.Discard)
	if err != nil || w.IdempotencyWindow != 90*time.Second {
		t.Fatalf("idempotency-window 90s: %v %v", w.IdempotencyWindow, err)
	}
	if d, _ := loadConfig(nil, none, io.Discard); d.IdempotencyWindow != local.DefaultIdempotencyWindow {
		t.Fatalf("idempotency-window default %v, want %v", d.IdempotencyWindow, local.DefaultIdempotencyWindow)
	}
	// The store's cache: its default is the engine's, and below 1 MiB is refused.
	if d, _ := loadConfig(nil, none, io.Discard); d.StoreCacheSize != local.DefaultCacheSize {
		t.Fatalf("store-cache-size default %d, want %d", d.StoreCacheSize, local.DefaultCacheSize)
	}
	if _, err := loadConfig([]string{"-store-cache-size", "1048575"}, none, io.Discard); err == nil || !strings.Contains(err.Error(), "at least 1048576") {
		t.Fatalf("store-cache-size 1048575: %v, want refused", err)
	}
	c, err := loadConfig([]string{"-retention-age", "0"}, none, io.Discard)
	if err != nil || c.RetentionAge != local.NoAgeLimit {
		t.Fatalf("retention-age 0: %v %v, want local.NoAgeLimit", c.RetentionAge, err)
	}
	// Unset, the publish key burst is derived from the key rate.
	if c.PublishKeyBurst != 0 {
		t.Fatalf("publish-key-burst unset: %d", c.PublishKeyBurst)
	}
}

// -h shows each flag's kind of value, not "string" or "value".
func TestHelpShowsEachFlagsType(t *testing.T) {
	help := func(args ...string) string {
		var out, errb strings.Builder
		if code := run(t.Context(), args, func(string) string { return "" }, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		return errb.String()
	}
	serve := help("serve", "-h")
	for _, want := range []string{"-heartbeat duration\n", "-max-topics int\n", "-cors-origins list\n", "-publish-rate float\n", "-jwt-public-key file\n", "-config file\n", "Exit status"} {
		if !strings.Contains(serve, want) {
			t.Errorf("serve -h lacks %q", want)
		}
	}
	for _, s := range settings {
		if !strings.Contains(serve, "-"+s.name+" "+s.typ+"\n") {
			t.Errorf("serve -h lacks -%s %s", s.name, s.typ)
		}
	}
	if strings.Contains(serve, " value\n") {
		t.Errorf("serve -h shows untyped flags:\n%s", serve)
	}
	token := help("token", "-h")
	for _, want := range []string{"-ttl duration\n", "-subscribe pattern\n", "-publish pattern\n", "Exit status"} {
		if !strings.Contains(token, want) {
			t.Errorf("token -h lacks %q:\n%s", want, token)
		}
	}
	bench := help("bench", "-h")
	if strings.Contains(bench, " value\n") || !strings.Contains(bench, "-header header\n") {
		t.Errorf("bench -h:\n%s", bench)
	}
}

// Every bad command line or configuration exits 2, whichever command and
// wherever the problem is found; a failure while running exits 1.
func TestBadConfigurationExitsTwo(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	secret := strings.Repeat("s", 32)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // anything that wrongly starts stops at once
	serve := func(args ...string) []string {
		return append([]string{"serve", "-addr", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "data")}, args...)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "Usage"},
		{[]string{"nope"}, nil, "unknown command"},
		{serve("-nope"), nil, "not defined"},
		{serve("extra"), nil, "unexpected argument"},
		{serve("-max-topics", "0"), nil, "max-topics"},
		{serve("-heartbeat", "soon"), nil, "heartbeat"},
		{serve(), map[string]string{"HERALD_QUEUE_SIZE": "0"}, "HERALD_QUEUE_SIZE"},
		{serve("-config", filepath.Join(dir, "missing.toml")), nil, "missing.toml"},
		{serve("-publish-key", "short"), nil, "publish-key"},
		{serve("-node-id", "a/b"), nil, "node-id"},
		{serve("-node-id", strings.Repeat("n", 65)), nil, "node-id"},
		{serve(), map[string]string{"HERALD_NODE_ID": "has space"}, "HERALD_NODE_ID"},
		{serve("-jwt-public-key", filepath.Join(dir, "missing.pem")), nil, "jwt-public-key"},
		{serve("-jwt-public-key", garbage), nil, "jwt-public-key"},
		{serve("-demo", "-jwt-secret", secret), nil, "demo: refused with JWT keys (-jwt-secret)"},
		{serve("-demo", "-jwt-jwks-url", "https://id.example/jwks"), nil, "-jwt-jwks-url"},
		{serve(), map[string]string{"HERALD_DEMO": "true", "HERALD_JWT_SECRET": secret}, "demo: refused with JWT keys"},
		{serve("-demo", "-inbox-dsn", "off"), nil, "demo: needs the inbox"},
		{serve("-demo=maybe"), nil, "demo"},
		{serve("-demo", "-engine", "redis://127.0.0.1:6379/0"), nil, "demo: refused with -engine redis"},
		{serve("-demo", "-inbox-dsn", "mysql://app@tcp(db:3306)/shop"), nil, "demo: refused with -inbox-dsn"},
		{serve("-demo", "-outbox-dsn", "postgres://app@db/shop"), nil, "-outbox-dsn"},
		{[]string{"token", "-nope"}, nil, "not defined"},
		{[]string{"token", "-sub", "42"}, nil, "HERALD_JWT_SECRET"},
		{[]string{"token", "-sub", "42", "-ttl", "0"}, map[string]string{"HERALD_JWT_SECRET": secret}, "-ttl"},
		{[]string{"token", "-sub", "42", "-ttl", "-1h"}, map[string]string{"HERALD_JWT_SECRET": secret}, "-ttl"},
		{[]string{"token", "-sub", "42", "-subscribe", "a/**/b"}, map[string]string{"HERALD_JWT_SECRET": secret}, "a/**/b"},
		{[]string{"token", "-sub", "42"}, map[string]string{"HERALD_JWT_SECRET": secret, "HERALD_JWT_PUBLIC_KEY": garbage}, "jwt-public-key"},
		{[]string{"bench", "-nope"}, nil, "not defined"},
		{[]string{"bench", "-rate", "-1"}, nil, "-rate"},
		{[]string{"bench", "-connections", "0"}, nil, "-connections"},
		{[]string{"bench", "-duration", "0s"}, nil, "-duration"},
		{[]string{"bench", "-sources", "300"}, nil, "-sources"},
		{[]string{"bench", "-compare", "websockets"}, nil, "-compare"},
		{[]string{"bench", "-subscribe-url-template", "http://x/{topic}"}, nil, "-publish-template"},
	} {
		var out, errb strings.Builder
		code := run(ctx, c.args, func(k string) string { return c.env[k] }, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v %v: exit %d, want 2 and %q in:\n%s", c.args, c.env, code, c.want, errb.String())
		}
	}

	// A failure while running is not a configuration error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var errb strings.Builder
	if code := run(ctx, []string{"serve", "-addr", ln.Addr().String(), "-data-dir", filepath.Join(dir, "data2")}, func(string) string { return "" }, io.Discard, &errb); code != 1 {
		t.Errorf("serve on a busy port: exit %d, want 1:\n%s", code, errb.String())
	}
}

func TestEngineIsChosenByURLAndAnUnknownOneIsABadConfiguration(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := loadConfig(nil, none, io.Discard)
	if err != nil || cfg.Engine != "local" {
		t.Fatalf("default engine: %q, %v", cfg.Engine, err)
	}
	var stderr strings.Builder
	code := run(context.Background(), []string{"serve", "-engine", "nosuch://host"}, none, io.Discard, &stderr)
	if code != exitBadConfig || !strings.Contains(stderr.String(), `unknown engine "nosuch://host"`) || !strings.Contains(stderr.String(), "local") {
		t.Fatalf("unknown engine: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	code = run(context.Background(), []string{"serve", "-addr", "127.0.0.1:0", "-engine", "local://somewhere", "-data-dir", t.TempDir()}, none, io.Discard, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "takes no address") {
		t.Fatalf("local with an address: exit %d, %q", code, stderr.String())
	}
}

// herald serve -engine memory:// runs without a store: a stream gets what is
// published.
func TestServeOnTheMemoryEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a herald process")
	}
	dataDir := t.TempDir()
	p := startProcess(t, dataDir, "-engine", "memory://")
	s := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=demo")})
	defer s.Close()
	waitFor(t, func() bool { return s.LastEventID() != "" })
	p.publish("demo", "hello")
	if got := receive(t, s, 1); got[0].Data != "hello" {
		t.Fatalf("got %q", got[0].Data)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "log")); err == nil {
		t.Fatal("the memory engine created a store in the data dir")
	}
}

// The node id: generated once into the data dir and kept across restarts,
// or set; shown in the start log, /healthz, /readyz and herald_node_info.
// A bad stored id is a configuration error, like a bad flag.
func TestNodeID(t *testing.T) {
	for _, id := range []string{"a", "node-1_eu.west", strings.Repeat("Z", 64)} {
		if err := checkNodeID(id); err != nil {
			t.Errorf("checkNodeID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "a b", "a/b", "é", "a\n", strings.Repeat("z", 65)} {
		if err := checkNodeID(id); err == nil {
			t.Errorf("checkNodeID(%q) accepted", id)
		}
	}

	dir := t.TempDir()
	id, err := loadOrCreateNodeID(dir)
	if err != nil || checkNodeID(id) != nil {
		t.Fatalf("generated %q, %v", id, err)
	}
	again, err := loadOrCreateNodeID(dir)
	if err != nil || again != id {
		t.Fatalf("second load %q, %v; want %q", again, err, id)
	}
	other, _ := loadOrCreateNodeID(t.TempDir())
	if other == id {
		t.Errorf("two data dirs generated the same id %q", id)
	}

	bad := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(bad, 0o700)
	os.WriteFile(filepath.Join(bad, "node.id"), []byte("not valid\n"), 0o600)
	var errb strings.Builder
	code := run(t.Context(), []string{"serve", "-addr", "127.0.0.1:0", "-data-dir", bad}, func(string) string { return "" }, io.Discard, &errb)
	if code != exitBadConfig || !strings.Contains(errb.String(), "node.id") {
		t.Errorf("bad stored node id: exit %d, want 2 naming node.id:\n%s", code, errb.String())
	}
	// A configured id wins over the bad file.
	cfg, err := loadConfig([]string{"-node-id", "set-1"}, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.NodeID != "set-1" {
		t.Fatalf("-node-id set-1: %q, %v", cfg.NodeID, err)
	}
}

func TestProcessNodeID(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	get := func(p *process, path string) string {
		resp, err := http.Get(p.url(path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	p := startProcess(t, dataDir)
	b, err := os.ReadFile(filepath.Join(dataDir, "node.id"))
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(b))
	for _, path := range []string{"/healthz", "/readyz"} {
		if body := get(p, path); !strings.Contains(body, `"node":"`+id+`"`) {
			t.Errorf("%s: %s, want node %q", path, body, id)
		}
	}
	if m := get(p, "/metrics"); !strings.Contains(m, `herald_node_info{node="`+id+`"} 1`) {
		t.Errorf("/metrics lacks herald_node_info for %q", id)
	}
	if !strings.Contains(p.logs.String(), "node="+id) {
		t.Errorf("start log does not name node %q:\n%s", id, p.logs)
	}
	p.cmd.Process.Kill()
	<-p.done

	p = startProcess(t, dataDir) // kept across restarts
	if body := get(p, "/healthz"); !strings.Contains(body, `"node":"`+id+`"`) {
		t.Errorf("after a restart /healthz: %s, want node %q", body, id)
	}
	p.cmd.Process.Kill()
	<-p.done

	p = startProcess(t, dataDir, "-node-id", "eu-1") // a set id wins
	if m := get(p, "/metrics"); !strings.Contains(m, `herald_node_info{node="eu-1"} 1`) {
		t.Errorf("-node-id eu-1: /metrics lacks it")
	}
}

// A bool setting given alone is true (herald serve -demo); a value after it,
// with = or as the next argument, is read too.
func TestBoolFlags(t *testing.T) {
	none := func(string) string { return "" }
	for _, c := range []struct {
		args           []string
		demo, presence bool
	}{
		{[]string{"-demo"}, true, false},
		{[]string{"--demo", "-presence-events"}, true, true},
		{[]string{"-demo=false", "-presence-events", "true"}, false, true},
		{[]string{"-presence-events", "false", "-demo", "1"}, true, false},
		{[]string{"-addr", ":0", "-presence-events", "true", "-node-id", "-demo"}, false, true},
		{[]string{"-jwt-audience", "true", "-demo", "-retry", "1s"}, true, false},
		{nil, false, false},
	} {
		cfg, err := loadConfig(c.args, none, io.Discard)
		if err != nil || cfg.Demo != c.demo || cfg.PresenceEvents != c.presence {
			t.Errorf("%v: demo %v presence %v (%v), want %v %v", c.args, cfg.Demo, cfg.PresenceEvents, err, c.demo, c.presence)
		}
	}
	if _, err := loadConfig([]string{"-demo", "extra"}, none, io.Discard); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Errorf("-demo extra: %v", err)
	}
	if cfg, err := loadConfig(nil, func(k string) string { return map[string]string{"HERALD_DEMO": "true"}[k] }, io.Discard); err != nil || !cfg.Demo || cfg.AdminStatsInterval != 2*time.Second {
		t.Errorf("HERALD_DEMO=true: %v %v %v", cfg.Demo, cfg.AdminStatsInterval, err)
	}
}
