package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/client"
	"github.com/herald-hub/herald/inbox"
)

// From the application's transaction to the user's stream: a row committed
// into herald_outbox reaches users/{id} as a notification, and the inbox.
func TestProcessOutboxToStream(t *testing.T) {
	base := os.Getenv("HERALD_TEST_POSTGRES_URL")
	if base == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("HERALD_TEST_POSTGRES_URL is not set, and CI=true")
		}
		t.Skip("set HERALD_TEST_POSTGRES_URL to run the outbox process test")
	}
	var b [5]byte
	rand.Read(b[:])
	schema := "herald_test_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	defer db.Exec("DROP SCHEMA " + schema + " CASCADE")
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()

	const secret = "outbox-process-test-secret-32-bytes-long"
	p := startProcess(t, t.TempDir(), "-jwt-secret", secret, "-outbox-dsn", u.String())
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: "42", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	s := client.Dial(context.Background(), client.Config{URL: p.url("/v1/events?topic=users/42"), Header: http.Header{"Authorization": {"Bearer " + tok}}})
	defer s.Close()
	waitFor(t, func() bool { return s.LastEventID() != "" })

	app, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	tx, err := app.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO herald_outbox (to_user, type, title, body, data) VALUES ('42', 'order.shipped', 'Shipped', 'On its way', '{"order":7}')`); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	ev := receive(t, s, 1)[0]
	var n inbox.JSON
	if err := json.Unmarshal([]byte(ev.Data), &n); err != nil || ev.Type != "notification" || n.Title != "Shipped" || string(n.Data) != `{"order":7}` {
		t.Fatalf("got %s %s (%v)", ev.Type, ev.Data, err)
	}
	t.Logf("commit to stream: %v", time.Since(committed).Round(time.Millisecond))
}
