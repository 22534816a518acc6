package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/herald-hub/herald/inbox"
)

// app is an application's database with Herald's outbox in it.
type app struct {
	url    string // what Herald is given
	db     *sql.DB
	dollar bool
}

func (a app) insert(t *testing.T, tx *sql.Tx, user, title string) {
	t.Helper()
	q := `INSERT INTO herald_outbox (to_user, type, title, body, data) VALUES (?, ?, ?, ?, ?)`
	if a.dollar {
		q = `INSERT INTO herald_outbox (to_user, type, title, body, data) VALUES ($1, $2, $3, $4, $5)`
	}
	if _, err := tx.Exec(q, user, "order.shipped", title, "body", `{"n":1}`); err != nil {
		t.Fatal(err)
	}
}

// commit inserts rows (user, title pairs) in one transaction and commits.
func (a app) commit(t *testing.T, pairs ...string) {
	t.Helper()
	tx, err := a.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		a.insert(t, tx, pairs[i], pairs[i+1])
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// apps runs f on PostgreSQL and on MariaDB.
func apps(t *testing.T, f func(t *testing.T, open func(t *testing.T) app)) {
	t.Run("postgres", func(t *testing.T) {
		base := need(t, "HERALD_TEST_POSTGRES_URL")
		f(t, func(t *testing.T) app {
			u := pgSchema(t, base)
			db, err := sql.Open("pgx", u)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return app{url: u, db: db, dollar: true}
		})
	})
	t.Run("mariadb", func(t *testing.T) {
		dsn := need(t, "HERALD_TEST_MYSQL_DSN")
		f(t, func(t *testing.T) app {
			u := mysqlDB(t, dsn)
			c, _ := mysql.ParseDSN(dsn)
			c.DBName = u[strings.LastIndex(u, "/")+1:]
			db, err := sql.Open("mysql", c.FormatDSN())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return app{url: u, db: db}
		})
	})
}

func relay(t *testing.T, a app, st inbox.Store, o inbox.RelayOptions) *inbox.Relay {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := inbox.OpenRelay(context.Background(), a.url, st, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func sqliteStore(t *testing.T) inbox.Store {
	s, err := inbox.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// titles lists user's notification titles, oldest first.
func titles(t *testing.T, st inbox.Store, user string) []string {
	t.Helper()
	p, err := st.List(context.Background(), user, inbox.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(p.Items))
	for i, n := range p.Items {
		out[len(out)-1-i] = n.Title
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func outboxLeft(t *testing.T, a app) int {
	var n int
	if err := a.db.QueryRow(`SELECT COUNT(*) FROM herald_outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Committed rows become notifications once each, in order; a rolled-back
// row never does.
func TestOutboxRelaysWhatCommits(t *testing.T) {
	apps(t, func(t *testing.T, open func(t *testing.T) app) {
		a, st := open(t), sqliteStore(t)
		var woken atomic.Int32
		relay(t, a, st, inbox.RelayOptions{Wake: func() { woken.Add(1) }})
		a.commit(t, "42", "first", "43", "other", "42", "second")
		tx, err := a.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		a.insert(t, tx, "42", "rolled back")
		tx.Rollback()
		a.commit(t, "42", "third")
		waitFor(t, 10*time.Second, "three notifications of 42", func() bool { return len(titles(t, st, "42")) == 3 })
		time.Sleep(300 * time.Millisecond) // room for a wrong fourth
		if got := strings.Join(titles(t, st, "42"), ","); got != "first,second,third" {
			t.Fatalf("42 got %s", got)
		}
		if got := titles(t, st, "43"); len(got) != 1 {
			t.Fatalf("43 got %v", got)
		}
		if n := outboxLeft(t, a); n != 0 {
			t.Fatalf("%d rows left in the outbox", n)
		}
		if woken.Load() == 0 {
			t.Fatal("the pusher was never woken")
		}
		p, _ := st.List(context.Background(), "42", inbox.Query{Limit: 1})
		if string(p.Items[0].Data) != `{"n":1}` || p.Items[0].Body != "body" || p.Items[0].Type != "order.shipped" {
			t.Fatalf("relayed %+v", p.Items[0])
		}
	})
}

// A relay that dies after the rows reached the inbox and before they were
// deleted relays them again after its restart: their notifications are
// found, not made twice.
func TestOutboxCrashMidRelay(t *testing.T) {
	apps(t, func(t *testing.T, open func(t *testing.T) app) {
		a, st := open(t), sqliteStore(t)
		crashed := make(chan struct{})
		var once sync.Once
		r := relay(t, a, st, inbox.WithAfterSend(inbox.RelayOptions{}, func() error {
			err := errors.New("crash")
			once.Do(func() { close(crashed) })
			return err // every round dies there until the restart
		}))
		a.commit(t, "7", "a", "7", "b")
		<-crashed
		r.Close()
		if n := outboxLeft(t, a); n != 2 {
			t.Fatalf("%d rows left after the crash, want 2", n)
		}
		relay(t, a, st, inbox.RelayOptions{})
		waitFor(t, 10*time.Second, "the outbox empty", func() bool { return outboxLeft(t, a) == 0 })
		if got := strings.Join(titles(t, st, "7"), ","); got != "a,b" {
			t.Fatalf("after the restart 7 has %s", got)
		}
	})
}

// Two relays on one outbox send each row once, and each user's rows in order.
func TestOutboxTwoRelays(t *testing.T) {
	apps(t, func(t *testing.T, open func(t *testing.T) app) {
		a, st := open(t), sqliteStore(t)
		relay(t, a, st, inbox.RelayOptions{Batch: 7, Poll: 20 * time.Millisecond})
		relay(t, a, st, inbox.RelayOptions{Batch: 7, Poll: 20 * time.Millisecond})
		const users, each = 10, 30
		var wg sync.WaitGroup
		for w := range 3 { // each writer owns some users, so their rows are in order
			wg.Go(func() {
				for i := range each {
					for u := w; u < users; u += 3 {
						a.commit(t, fmt.Sprint(u), fmt.Sprintf("%04d", i))
					}
				}
			})
		}
		wg.Wait()
		waitFor(t, 30*time.Second, "the outbox empty", func() bool { return outboxLeft(t, a) == 0 })
		total := 0
		for u := range users {
			got := titles(t, st, fmt.Sprint(u))
			total += len(got)
			for i := 1; i < len(got); i++ {
				if got[i] <= got[i-1] {
					t.Fatalf("user %d: %s after %s", u, got[i], got[i-1])
				}
			}
		}
		if total != users*each {
			t.Fatalf("%d notifications for %d rows", total, users*each)
		}
	})
}

// On PostgreSQL a commit wakes the relay through LISTEN/NOTIFY, long before
// its poll.
func TestOutboxListenNotify(t *testing.T) {
	base := need(t, "HERALD_TEST_POSTGRES_URL")
	u := pgSchema(t, base)
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, st := app{url: u, db: db, dollar: true}, sqliteStore(t)
	relay(t, a, st, inbox.RelayOptions{Poll: time.Minute})
	time.Sleep(200 * time.Millisecond) // the first poll is over
	for i := range 5 {
		start := time.Now()
		a.commit(t, "l", fmt.Sprint(i))
		waitFor(t, 5*time.Second, "the notification", func() bool { return len(titles(t, st, "l")) == i+1 })
		t.Logf("commit to inbox: %v", time.Since(start).Round(time.Millisecond))
	}
}

// A row no notification can be made of is dropped, and does not hold its
// user's later rows back.
func TestOutboxDropsBadRows(t *testing.T) {
	apps(t, func(t *testing.T, open func(t *testing.T) app) {
		a, st := open(t), sqliteStore(t)
		relay(t, a, st, inbox.RelayOptions{Poll: 20 * time.Millisecond})
		a.commit(t, "a b", "bad user", "ok", "first")
		tx, _ := a.db.Begin()
		q := `INSERT INTO herald_outbox (to_user, type) VALUES ('ok', '')`
		if _, err := tx.Exec(q); err != nil {
			t.Fatal(err)
		}
		tx.Commit()
		// Data that is not JSON, where the column takes any text: dropped,
		// not stored where it would break the user's list.
		if _, err := a.db.Exec(`INSERT INTO herald_outbox (to_user, type, title, data) VALUES ('ok', 't', 'not json', '01')`); err != nil {
			t.Logf("this database refuses data that is not JSON itself: %v", err)
		}
		a.commit(t, "ok", "last")
		waitFor(t, 10*time.Second, "the outbox empty", func() bool { return outboxLeft(t, a) == 0 })
		if got := strings.Join(titles(t, st, "ok"), ","); got != "first,last" {
			t.Fatalf("ok got %s", got)
		}
		if got := titles(t, st, "a b"); len(got) != 0 {
			t.Fatalf("a bad user got %v", got)
		}
	})
}
