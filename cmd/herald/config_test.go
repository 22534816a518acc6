package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/auth"
)

func TestConfigPrecedenceFlagsThenEnvThenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "herald.toml")
	os.WriteFile(file, []byte("addr = \":7000\"\nheartbeat = \"5s\"\nqueue_size = 7\npublish-key = [\"k1\", \"k2\"]\n"), 0o600)
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
	if c.QueueSize != 7 || strings.Join(c.PublishKeys, ",") != "k1,k2" { // file beats default
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
