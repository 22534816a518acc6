package inbox_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/herald-hub/herald/inbox"
	"github.com/herald-hub/herald/inbox/inboxtest"
	"github.com/herald-hub/herald/internal/testenv"
)

func TestSQLite(t *testing.T) {
	inboxtest.Run(t, func(t *testing.T) inbox.Store {
		s, err := inbox.Open(context.Background(), "", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// need returns the variable's value, or fails under CI=true and skips
// otherwise.
func need(t testing.TB, env string) string {
	t.Helper()
	return testenv.Get(t, env, "the inbox tests on that database", "the value in .ci/run")
}

func random(t testing.TB) string {
	var b [5]byte
	rand.Read(b[:])
	return "herald_test_" + hex.EncodeToString(b[:])
}

// TestPostgres runs the suite in a schema of its own per test, dropped after.
func TestPostgres(t *testing.T) {
	base := need(t, "HERALD_TEST_POSTGRES_URL")
	inboxtest.Run(t, func(t *testing.T) inbox.Store { return openPostgres(t, base) })
}

// openPostgres opens a store in a new schema of base's database, dropped
// when the test ends.
func openPostgres(t testing.TB, base string) *inbox.SQL {
	t.Helper()
	s, err := inbox.Open(context.Background(), pgSchema(t, base), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pgSchema makes a schema in base's database, dropped when the test ends,
// and returns base's URL on it.
func pgSchema(t testing.TB, base string) string {
	t.Helper()
	schema := random(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, _ := sql.Open("pgx", base)
		defer a.Close()
		a.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestMySQL runs the suite in a database of its own per test, dropped after.
// HERALD_TEST_MYSQL_DSN is in the driver's form, user@tcp(host:port)/db.
func TestMySQL(t *testing.T) {
	dsn := need(t, "HERALD_TEST_MYSQL_DSN")
	inboxtest.Run(t, func(t *testing.T) inbox.Store {
		return openMySQL(t, dsn)
	})
}

func openMySQL(t *testing.T, dsn string) *inbox.SQL {
	t.Helper()
	s, err := inbox.Open(context.Background(), mysqlDB(t, dsn), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mysqlDB makes a database on dsn's server, dropped when the test ends, and
// returns its mysql:// URL.
func mysqlDB(t testing.TB, dsn string) string {
	t.Helper()
	db := random(t)
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, _ := sql.Open("mysql", dsn)
		defer a.Close()
		a.Exec("DROP DATABASE " + db)
	})
	return mysqlURL(t, dsn, db)
}

// mysqlURL is the mysql:// form of the driver's dsn, on database db.
func mysqlURL(t testing.TB, dsn, db string) string {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql", Host: c.Addr, Path: "/" + db}
	if c.Passwd != "" {
		u.User = url.UserPassword(c.User, c.Passwd)
	} else {
		u.User = url.User(c.User)
	}
	return u.String()
}

// Opening again applies no migration twice and keeps what was stored.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := inbox.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Send(context.Background(), inbox.Send{To: []string{"u"}, Type: "x"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = inbox.Open(context.Background(), "sqlite:"+filepath.Join(dir, "inbox.db"), "")
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer s.Close()
	if p, err := s.List(context.Background(), "u", inbox.Query{Limit: 5}); err != nil || len(p.Items) != 1 {
		t.Fatalf("after reopening: %+v %v", p, err)
	}
}
