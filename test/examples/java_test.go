package examples

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/herald-hub/herald/client"
)

// javaDir holds the Java example, from this package's directory.
var javaDir = filepath.Join("..", "..", "examples", "java")

// javaTools are what the Java test runs: the JDK's javac and java, the
// MariaDB Connector/J jar, and the MariaDB to use (go-sql-driver form).
type javaTools struct {
	javac, java, jar string
	dsn              *mysql.Config
}

// javaSetup is setup, then finds what the Java test runs: once asked for, a
// missing piece is a failure.
func javaSetup(t *testing.T) javaTools {
	t.Helper()
	setup(t, "javac and java 17+, Debian's libmariadb-java and a MariaDB in HERALD_TEST_MYSQL_DSN")
	var tools javaTools
	var err error
	if tools.javac, err = exec.LookPath("javac"); err != nil {
		t.Fatalf("HERALD_TEST_EXAMPLES=1 but javac is not installed (Debian: default-jdk-headless): %v", err)
	}
	if tools.java, err = exec.LookPath("java"); err != nil {
		t.Fatalf("HERALD_TEST_EXAMPLES=1 but java is not installed (Debian: default-jdk-headless): %v", err)
	}
	tools.jar = os.Getenv("HERALD_TEST_MARIADB_JAR")
	if tools.jar == "" {
		tools.jar = "/usr/share/java/mariadb-java-client.jar"
		if _, err := os.Stat(tools.jar); err != nil {
			if m, _ := filepath.Glob("/usr/share/java/mariadb-java-client*.jar"); len(m) > 0 {
				tools.jar = m[0]
			}
		}
	}
	if _, err := os.Stat(tools.jar); err != nil {
		t.Fatalf("HERALD_TEST_EXAMPLES=1 but MariaDB Connector/J is missing (Debian: libmariadb-java; or set HERALD_TEST_MARIADB_JAR): %v", err)
	}
	raw := os.Getenv("HERALD_TEST_MYSQL_DSN")
	if raw == "" {
		t.Fatal("HERALD_TEST_EXAMPLES=1 but HERALD_TEST_MYSQL_DSN is not set: the Java example writes its orders to MariaDB (e.g. root@tcp(127.0.0.1:3306)/test)")
	}
	if tools.dsn, err = mysql.ParseDSN(raw); err != nil {
		t.Fatalf("HERALD_TEST_MYSQL_DSN: %v", err)
	}
	if tools.dsn.Net != "tcp" {
		t.Fatalf("HERALD_TEST_MYSQL_DSN: want a tcp address, got %q", tools.dsn.Net)
	}
	return tools
}

// javaDatabase creates a database of the test's own and drops it at the end.
func javaDatabase(t *testing.T, base *mysql.Config) *mysql.Config {
	t.Helper()
	db, err := sql.Open("mysql", base.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	name := "herald_java_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		db.Close()
		t.Fatalf("create the test's database in MariaDB: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE "+name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		db.Close()
	})
	c := base.Clone()
	c.DBName = name
	return c
}

// javaHerald is a herald serve process on a loopback port.
type javaHerald struct {
	base string // http://127.0.0.1:port
	mu   sync.Mutex
	logs bytes.Buffer
}

func (h *javaHerald) log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logs.String()
}

// javaStartHerald starts bin serve with args on a free loopback port, and
// kills it at the end of the test.
func javaStartHerald(t *testing.T, bin string, args ...string) *javaHerald {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "-addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &javaHerald{}
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		re := regexp.MustCompile(`msg=listening addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			h.mu.Lock()
			h.logs.WriteString(sc.Text() + "\n")
			h.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("herald did not exit within 10s of SIGKILL")
		}
		if t.Failed() {
			t.Logf("herald's log:\n%s", h.log())
		}
	})
	select {
	case addr := <-addrc:
		h.base = "http://" + addr
	case err := <-done:
		t.Fatalf("herald exited before listening: %v\n%s", err, h.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("herald did not listen within 30s\n%s", h.log())
	}
	return h
}

// javaRun is one run of the Java program.
type javaRun struct {
	stdout, stderr string
	code           int
}

// TestJavaExample compiles examples/java with javac and runs it against a
// real herald relaying from a real MariaDB: events published by the Java
// publisher reach a stream in order and once, a retried publish with the same
// Idempotency-Key (and a batch with the same ids) appends nothing more, a
// publish that meets a 503 with Retry-After and then a dropped connection is
// retried with its key and arrives once, Herald's refusals come out as their
// error codes, a notification sent over HTTP and the committed order's
// outbox row reach users/42, and the rolled-back order never does.
func TestJavaExample(t *testing.T) {
	tools := javaSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()

	bin := build(t, dir, "./cmd/herald")[0] // Herald, built from this checkout

	// The example, compiled as its README says, for Java 17.
	classes := filepath.Join(dir, "classes")
	srcs, err := filepath.Glob(filepath.Join(javaDir, "src", "*.java"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no Java sources in %s (%v)", javaDir, err)
	}
	javac := exec.CommandContext(ctx, tools.javac, append([]string{"--release", "17", "-Xlint:all", "-encoding", "UTF-8", "-d", classes, "-cp", tools.jar}, srcs...)...)
	out, err := javac.CombinedOutput()
	if err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("javac warned:\n%s", out)
	}

	// The application's database, which Herald's relay reads herald_outbox from.
	app := javaDatabase(t, tools.dsn)
	outboxDSN := (&url.URL{Scheme: "mysql", Host: app.Addr, Path: "/" + app.DBName}).String()
	if app.Passwd != "" {
		outboxDSN = (&url.URL{Scheme: "mysql", User: url.UserPassword(app.User, app.Passwd), Host: app.Addr, Path: "/" + app.DBName}).String()
	} else if app.User != "" {
		outboxDSN = (&url.URL{Scheme: "mysql", User: url.User(app.User), Host: app.Addr, Path: "/" + app.DBName}).String()
	}
	const key = "java-example-publish-key-0123456789"
	h := javaStartHerald(t, bin, "-data-dir", filepath.Join(dir, "data"), "-publish-key", key,
		"-outbox-dsn", outboxDSN, "-admin-stats-interval", "0")

	java := func(t *testing.T, baseURL string, args ...string) javaRun {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
		defer rcancel()
		cmd := exec.CommandContext(rctx, tools.java, append([]string{"-cp", classes + string(os.PathListSeparator) + tools.jar, "Main"}, args...)...)
		cmd.Env = append(os.Environ(),
			"HERALD_URL="+baseURL, "HERALD_PUBLISH_KEY="+key,
			"JDBC_URL=jdbc:mariadb://"+app.Addr+"/"+app.DBName, "JDBC_USER="+app.User, "JDBC_PASSWORD="+app.Passwd)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		r := javaRun{stdout: strings.TrimSpace(stdout.String()), stderr: strings.TrimSpace(stderr.String())}
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			r.code = exit.ExitCode()
		case err != nil:
			t.Fatalf("java %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		if rctx.Err() != nil {
			t.Fatalf("java %s did not finish within 90s", strings.Join(args, " "))
		}
		return r
	}
	ok := func(t *testing.T, r javaRun, args ...string) string {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("java Main %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
		return r.stdout
	}
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		return ok(t, java(t, h.base, args...), args...)
	}

	// A stream on the example's topics, opened with the publish key (which
	// may read every topic), read into events.
	const orders, room, user = "shop/orders", "rooms/7", "users/42"
	s := client.Dial(ctx, client.Config{
		URL:    h.base + "/v1/events?topic=" + orders + "&topic=" + room + "&topic=" + user,
		Header: http.Header{"Authorization": {"Bearer " + key}},
	})
	t.Cleanup(func() { s.Close() })
	var (
		mu     sync.Mutex
		events []client.Event
	)
	go func() {
		for ev := range s.Events() {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	}()
	// byTopic returns the events received so far on topic, in order.
	byTopic := func(topic string) []client.Event {
		mu.Lock()
		defer mu.Unlock()
		var got []client.Event
		for _, ev := range events {
			if ev.Topic == topic {
				got = append(got, ev)
			}
		}
		return got
	}
	// waitFor polls cond for at most d.
	waitFor := func(t *testing.T, d time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				mu.Lock()
				n := len(events)
				mu.Unlock()
				t.Fatalf("%s: not within %v (%d events received, stream error %v)", what, d, n, s.Err())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(t, 15*time.Second, "the stream connects", func() bool { return s.LastEventID() != "" })

	type published struct {
		ID     string `json:"id"`
		Topic  string `json:"topic"`
		Offset int64  `json:"offset"`
	}
	parse := func(t *testing.T, line string) published {
		t.Helper()
		var p published
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.ID == "" {
			t.Fatalf("not a publish answer: %q (%v)", line, err)
		}
		return p
	}

	// 1. One event, published twice with the same Idempotency-Key (a retry
	// after a lost answer): the same answer, and one event on the stream.
	first := parse(t, run(t, "publish", "--topic", orders, "--type", "order.created", "--data", `{"order":1,"note":"caf\u00e9 \"quoted\"\nline 2"}`, "--idempotency-key", "order-1-created"))
	again := parse(t, run(t, "publish", "--topic", orders, "--type", "order.created", "--data", `{"order":1}`, "--idempotency-key", "order-1-created"))
	if again != first {
		t.Errorf("the same Idempotency-Key answered %+v, then %+v: want the first publish's answer", first, again)
	}
	// A text payload with characters that need escaping, and no key given:
	// the publisher draws one.
	text := "shipped: \"tab\there\" back\\slash\nsecond line \u00e9\u20ac \U0001F680 \u2028"
	second := parse(t, run(t, "publish", "--topic", orders, "--type", "order.shipped", "--text", text))
	if second.Offset <= first.Offset {
		t.Errorf("second publish at offset %d, first at %d", second.Offset, first.Offset)
	}

	// 2. A batch with an id per event, sent twice: three events, once.
	batch := []string{"batch", "--topic", room, "--type", "state", "--key-prefix", "room7-v", `{"v":1}`, `{"v":2}`, `"three"`}
	b1 := run(t, batch...)
	b2 := run(t, batch...)
	if b1 != b2 || len(strings.Split(b1, "\n")) != 3 {
		t.Errorf("the same batch answered\n%s\nthen\n%s\nwant three answers, the same twice", b1, b2)
	}

	// 3. Retries: a proxy in front of herald answers the first attempt 503
	// with Retry-After: 1, drops the connection of the second, and passes the
	// third on. The event is appended once, every attempt had the same key,
	// and the publisher waited the second Herald asked for.
	target, _ := url.Parse(h.base)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var (
		pmu      sync.Mutex
		attempts []string
		times    []time.Time
	)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pmu.Lock()
		attempts = append(attempts, r.Header.Get("Idempotency-Key"))
		times = append(times, time.Now())
		n := len(attempts)
		pmu.Unlock()
		switch n {
		case 1:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"code":"engine_unavailable","message":"the store is busy"}}`)
		case 2:
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(flaky.Close)
	third := parse(t, ok(t, java(t, flaky.URL, "publish", "--topic", orders, "--type", "order.paid", "--data", `{"order":1}`)))
	pmu.Lock()
	if len(attempts) != 3 || attempts[0] == "" || attempts[1] != attempts[0] || attempts[2] != attempts[0] {
		t.Errorf("attempts carried Idempotency-Key %q: want three attempts with one key", attempts)
	} else if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 503 with Retry-After: 1", gap)
	}
	pmu.Unlock()

	// 4. Refusals are Herald's error codes, not retried.
	for _, c := range []struct {
		name, code string
		args       []string
	}{
		{"reserved topic", "reserved_topic", []string{"publish", "--topic", "herald/stats", "--data", "1"}},
		{"invalid topic", "invalid_topic", []string{"publish", "--topic", "no spaces", "--data", "1"}},
		{"wrong key", "invalid_credentials", []string{"publish", "--publish-key", "not-the-key-0123456789", "--topic", orders, "--data", "1"}},
	} {
		r := java(t, h.base, c.args...)
		if r.code != 1 || !strings.Contains(r.stderr, c.code) {
			t.Errorf("%s: exit %d, stderr %q: want exit 1 naming %s", c.name, r.code, r.stderr, c.code)
		}
	}

	// Data that is not JSON by JSON's grammar is refused before any request.
	for _, data := range []string{"01", "1.", `"\u+041"`} {
		if r := java(t, h.base, "publish", "--topic", orders, "--data", data); r.code != 2 {
			t.Errorf("publish --data %s: exit %d, stderr %q: want 2 (bad usage)", data, r.code, r.stderr)
		}
	}

	// 5. A notification over HTTP, sent twice with one dedupe key: stored once.
	n1 := run(t, "notify", "--to", "42", "--type", "welcome", "--title", "Welcome", "--body", "Hello, 42", "--data", `{"plan":"pro"}`, "--dedupe-key", "welcome-42")
	n2 := run(t, "notify", "--to", "42", "--type", "welcome", "--title", "Welcome", "--body", "Hello, 42", "--dedupe-key", "welcome-42")
	if !strings.Contains(n1, `"duplicate":false`) || !strings.Contains(n2, `"duplicate":true`) || strings.TrimSuffix(n1, `"duplicate":false}`) != strings.TrimSuffix(n2, `"duplicate":true}`) {
		t.Errorf("notify answered %s, then %s: want the same ids, the second a duplicate", n1, n2)
	}

	// 6. Orders through the outbox: one rolled back after both its rows were
	// written, then one committed.
	rb := java(t, h.base, "order", "--user", "42", "--item", "lamp", "--amount-cents", "4500", "--fail", "payment declined")
	if rb.code != 3 || !strings.Contains(rb.stdout, `"rolled_back":true`) {
		t.Fatalf("the failing order: exit %d, stdout %q, stderr %q: want exit 3 and rolled_back", rb.code, rb.stdout, rb.stderr)
	}
	var placed struct{ Order int64 }
	line := run(t, "order", "--user", "42", "--item", "book", "--amount-cents", "1299")
	if err := json.Unmarshal([]byte(line), &placed); err != nil || placed.Order == 0 {
		t.Fatalf("order answered %q (%v)", line, err)
	}
	exited := time.Now()
	waitFor(t, 15*time.Second, "the committed order's notification on "+user, func() bool { return len(byTopic(user)) >= 2 })
	t.Logf("the order's notification reached the stream %v after the Java program exited (the relay polls MariaDB every 200ms)", time.Since(exited).Round(time.Millisecond))

	// Everything arrives (bounded), then nothing more for ten relay polls
	// (200 ms each on MariaDB): no duplicate, no rolled-back order.
	waitFor(t, 15*time.Second, "three events on "+orders, func() bool { return len(byTopic(orders)) >= 3 })
	waitFor(t, 15*time.Second, "three events on "+room, func() bool { return len(byTopic(room)) >= 3 })
	time.Sleep(2 * time.Second)

	check := func(topic string, want []string) {
		t.Helper()
		got := byTopic(topic)
		var lines []string
		for _, ev := range got {
			lines = append(lines, ev.Type+" "+ev.Data)
		}
		if len(lines) != len(want) {
			t.Errorf("%s: got %d events, want %d:\n%s", topic, len(lines), len(want), strings.Join(lines, "\n"))
			return
		}
		for i := range want {
			if !regexp.MustCompile(`^` + want[i] + `$`).MatchString(lines[i]) {
				t.Errorf("%s: event %d is %q, want %q", topic, i, lines[i], want[i])
			}
		}
	}
	check(orders, []string{
		regexp.QuoteMeta(`order.created {"order":1,"note":"caf\u00e9 \"quoted\"\nline 2"}`), // raw JSON, passed as is
		regexp.QuoteMeta("order.shipped " + text),
		regexp.QuoteMeta(`order.paid {"order":1}`),
	})
	check(room, []string{
		regexp.QuoteMeta(`state {"v":1}`), regexp.QuoteMeta(`state {"v":2}`), regexp.QuoteMeta(`state three`),
	})
	if got := byTopic(orders); len(got) == 3 && (got[0].ID == got[1].ID || got[2].ID == "") {
		t.Errorf("event ids %q, %q, %q", got[0].ID, got[1].ID, got[2].ID)
	}
	if third.Offset <= second.Offset {
		t.Errorf("the retried publish answered offset %d, after %d", third.Offset, second.Offset)
	}

	type notification struct {
		ID    string          `json:"id"`
		Type  string          `json:"type"`
		Title string          `json:"title"`
		Body  string          `json:"body"`
		Data  json.RawMessage `json:"data"`
	}
	var ns []notification
	for _, ev := range byTopic(user) {
		var n notification
		if err := json.Unmarshal([]byte(ev.Data), &n); err != nil || ev.Type != "notification" {
			t.Errorf("on %s: %s %s (%v)", user, ev.Type, ev.Data, err)
		}
		if strings.Contains(ev.Data, "lamp") {
			t.Errorf("the rolled-back order was notified: %s", ev.Data)
		}
		ns = append(ns, n)
	}
	if len(ns) != 2 {
		t.Fatalf("%d notifications on %s, want 2 (the welcome and the committed order)", len(ns), user)
	}
	if ns[0].Type != "welcome" || ns[0].Title != "Welcome" || string(ns[0].Data) != `{"plan":"pro"}` {
		t.Errorf("first notification %+v: want the welcome", ns[0])
	}
	wantData := fmt.Sprintf(`{"order":%d,"item":"book","amount_cents":1299}`, placed.Order)
	if ns[1].Type != "order.created" || ns[1].Title != fmt.Sprintf("Order %d placed", placed.Order) || ns[1].Body != "book, 12.99" || string(ns[1].Data) != wantData {
		t.Errorf("second notification %+v: want order.created for order %d with %s", ns[1], placed.Order, wantData)
	}

	// The database holds the committed order only, and the relay has
	// emptied the outbox.
	db, err := sql.Open("mysql", app.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var items string
	if err := db.QueryRowContext(ctx, "SELECT GROUP_CONCAT(item ORDER BY id) FROM orders").Scan(&items); err != nil || items != "book" {
		t.Errorf("orders holds %q (%v): want the committed order only", items, err)
	}
	var left int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM herald_outbox").Scan(&left); err != nil || left != 0 {
		t.Errorf("herald_outbox holds %d rows (%v): want 0, all relayed", left, err)
	}
}
