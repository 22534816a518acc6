package server

import (
	"bufio"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-hub/herald/auth"
)

// badInputRow is one row of the bad-input table of docs/security.md.
type badInputRow struct {
	num, method, target, body string
	header                    [][2]string
	status                    int
	code                      string // error code, or herald.gap for a 200 stream
}

// readBadInputTable parses the table under "## Bad input" in docs/security.md.
func readBadInputTable(t testing.TB) []badInputRow {
	t.Helper()
	raw, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Bad input\n")
	if !ok {
		t.Fatal("docs/security.md has no ## Bad input section")
	}
	unquote := func(s string) string { return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "`"), "`") }
	var rows []badInputRow
	for line := range strings.SplitSeq(section, "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "|"), "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if _, err := strconv.Atoi(cells[0]); err != nil {
			continue // the header row
		}
		if len(cells) != 5 {
			t.Fatalf("row %q: %d cells, want 5", line, len(cells))
		}
		r := badInputRow{num: cells[0], body: unquote(cells[3])}
		r.method, r.target, _ = strings.Cut(unquote(cells[1]), " ")
		for h := range strings.SplitSeq(cells[2], "<br>") {
			if h = unquote(h); h != "" {
				k, v, _ := strings.Cut(h, ":")
				r.header = append(r.header, [2]string{k, strings.TrimSpace(v)})
			}
		}
		st, code, _ := strings.Cut(unquote(cells[4]), " ")
		if r.status, err = strconv.Atoi(st); err != nil {
			t.Fatalf("row %s: answer %q", r.num, cells[4])
		}
		r.code = code
		rows = append(rows, r)
	}
	return rows
}

func TestBadInputTableOfSecurityDoc(t *testing.T) {
	rows := readBadInputTable(t)
	if len(rows) < 60 {
		t.Fatalf("only %d rows parsed from docs/security.md", len(rows))
	}
	pub1, priv1 := edKey(t)
	pub2, _ := edKey(t)
	jw := jwksServer(t, map[string]ed25519.PublicKey{"k1": pub1, "k2": pub2})
	n := newTestNode(t, nodeOptions{server: Config{
		Tokens:             verifier(t, auth.Options{JWKSURL: jw.URL, Audience: "herald", JWKSMinRefresh: time.Hour}),
		AnonymousSubscribe: []auth.Pattern{auth.MustParsePattern("public/**")},
		CORSOrigins:        []string{"https://app.example"},
	}})

	grants := &auth.Grants{Subscribe: []string{"rooms/*"}, Publish: []string{"rooms/{sub}"}}
	tok := func(mod func(*auth.Claims)) string {
		return token(t, "alice", grants, func(c *auth.Claims) {
			c.Audience = jwt.ClaimStrings{"herald"}
			if mod != nil {
				mod(c)
			}
		})
	}
	sign := func(m jwt.SigningMethod, key any, kid string) string {
		tk := jwt.NewWithClaims(m, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", Audience: jwt.ClaimStrings{"herald"}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		}})
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	alice := tok(nil)
	hour := time.Hour
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }
	var topics65 []string
	for i := range 65 {
		topics65 = append(topics65, fmt.Sprintf("topic=t%d", i))
	}
	events := make([]string, 1001)
	for i := range events {
		events[i] = `{"topic":"a"}`
	}
	placeholders := map[string]string{
		"{key}":              testKey,
		"{alice}":            alice,
		"{expired}":          tok(func(c *auth.Claims) { c.ExpiresAt = at(-hour) }),
		"{not-yet-valid}":    tok(func(c *auth.Claims) { c.NotBefore = at(hour) }),
		"{issued-in-future}": tok(func(c *auth.Claims) { c.IssuedAt = at(hour) }),
		"{no-exp}":           tok(func(c *auth.Claims) { c.ExpiresAt = nil }),
		"{no-sub}":           tok(func(c *auth.Claims) { c.Subject = "" }),
		"{bad-pattern}":      tok(func(c *auth.Claims) { c.Herald = &auth.Grants{Subscribe: []string{"a/**/b"}} }),
		"{wrong-audience}":   tok(func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"other"} }),
		"{wrong-signature}":  sign(jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123"), ""),
		"{alg-none}":         sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ""),
		"{hs512}":            sign(jwt.SigningMethodHS512, testSecret, ""),
		"{unknown-kid}":      sign(jwt.SigningMethodEdDSA, priv1, "k9"),
		"{wrong-kid}":        sign(jwt.SigningMethodEdDSA, priv1, "k2"),
		"{truncated}":        alice[:len(alice)/2],
		"{oversized-token}":  strings.Repeat("a", 9<<10),
		"{long-topic}":       strings.Repeat("t", 257),
		"{65-topics}":        strings.Join(topics65, "&"),
		"{oversized-cursor}": strings.Repeat("A", 9<<10),
		"{long-type}":        strings.Repeat("y", 129),
		"{big-data}":         `{"topic":"a","data":"` + strings.Repeat("x", 65537) + `"}`,
		"{big-body}":         `{"topic":"a","data":"` + strings.Repeat("x", 2<<20) + `"}`,
		"{1001-events}":      "[" + strings.Join(events, ",") + "]",
		"{xFF}":              "\xff",
	}
	expand := func(s string) string {
		for k, v := range placeholders {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}
	for _, row := range rows {
		t.Run("row "+row.num, func(t *testing.T) {
			var body io.Reader
			if row.body != "" {
				body = strings.NewReader(expand(row.body))
			}
			req, err := http.NewRequest(row.method, n.srv.URL+expand(row.target), body)
			if err != nil {
				t.Fatal(err)
			}
			if row.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for _, h := range row.header {
				req.Header.Set(h[0], expand(h[1]))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != row.status {
				raw, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				t.Fatalf("%s %.80s: %d %s, want %d %s", row.method, row.target, resp.StatusCode, raw, row.status, row.code)
			}
			if row.status == http.StatusOK {
				// A stream: the answer must come as an event, never silence.
				br := bufio.NewReader(resp.Body)
				deadline := time.AfterFunc(5*time.Second, func() { resp.Body.Close() })
				defer deadline.Stop()
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("stream ended without event: %s: %v", row.code, err)
					}
					if strings.TrimSpace(line) == "event: "+row.code {
						return
					}
				}
			}
			var e errorBody
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error.Code != row.code || e.Error.Message == "" {
				t.Fatalf("body %+v (%v), want code %s and a message", e, err, row.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	// None of the refused publishes reached the log.
	for _, topic := range []string{"a", "rooms/alice", "rooms/bob", "users/bob"} {
		if head := headOffset(t, n, topic); head != 0 {
			t.Errorf("refused publishes appended %d events to %s", head, topic)
		}
	}
}
