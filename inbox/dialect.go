package inbox

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// dialect is what differs between the SQL databases.
type dialect struct {
	name   string // sqlite, mysql, postgres
	driver string // database/sql driver name
	// dollar: placeholders are $1, $2 (PostgreSQL) rather than ?.
	dollar bool
	// returning: INSERT ... RETURNING id works (SQLite, PostgreSQL);
	// otherwise LastInsertId.
	returning bool
	// lock and unlock serialize migrations between nodes starting at once.
	lock, unlock string
	// addUnread adds its second argument to the first's unread count.
	addUnread string
	// forUpdate ends a SELECT that locks its rows ("" where the write
	// transaction locks everything already: SQLite).
	forUpdate string
}

const upsertUnread = `INSERT INTO herald_unread (user_id, n) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET n = herald_unread.n + excluded.n`

var (
	sqliteDialect = dialect{
		name: "sqlite", driver: "sqlite", returning: true,
		addUnread: upsertUnread,
	}
	mysqlDialect = dialect{
		name: "mysql", driver: "mysql",
		lock:      `SELECT GET_LOCK('herald_inbox_migrate', 60)`,
		unlock:    `SELECT RELEASE_LOCK('herald_inbox_migrate')`,
		addUnread: `INSERT INTO herald_unread (user_id, n) VALUES (?, ?) ON DUPLICATE KEY UPDATE n = n + VALUES(n)`,
		forUpdate: ` FOR UPDATE`,
	}
	postgresDialect = dialect{
		name: "postgres", driver: "pgx", dollar: true, returning: true,
		lock:      `SELECT pg_advisory_lock(7244812)`,
		unlock:    `SELECT pg_advisory_unlock(7244812)`,
		addUnread: upsertUnread,
		forUpdate: ` FOR UPDATE`,
	}
)

// q rewrites ? placeholders for the dialect.
func (d dialect) q(query string) string {
	if !d.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// parseDSN turns a DSN into a dialect and what its driver opens:
//
//	""                               SQLite at inbox.db in dataDir
//	sqlite:PATH or a file path       SQLite at PATH
//	mysql://user:pass@host:3306/db   MySQL or MariaDB
//	postgres://user@host:5432/db     PostgreSQL (also postgresql://)
func parseDSN(dsn, dataDir string) (d dialect, source string, err error) {
	switch {
	case dsn == "":
		return sqliteDialect, sqliteSource(filepath.Join(dataDir, "inbox.db")), nil
	case strings.HasPrefix(dsn, "sqlite:"):
		p := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		if p == "" {
			return d, "", fmt.Errorf("inbox DSN %q: no file", dsn)
		}
		return sqliteDialect, sqliteSource(p), nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgresDialect, dsn, nil
	case strings.HasPrefix(dsn, "mysql://"):
		src, err := mysqlSource(dsn)
		return mysqlDialect, src, err
	case !strings.Contains(dsn, "://"):
		return sqliteDialect, sqliteSource(dsn), nil
	}
	return d, "", fmt.Errorf("inbox DSN %q: want mysql://, postgres:// or a SQLite file", redact(dsn))
}

// sqliteSource opens path in WAL mode, waiting for locks rather than failing.
func sqliteSource(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
}

// mysqlSource turns mysql://user:pass@host:port/db?params into the driver's
// DSN, with the parameters Herald needs.
func mysqlSource(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("inbox DSN: %w", err)
	}
	c := mysql.NewConfig()
	c.Net = "tcp"
	c.Addr = u.Host
	if u.Port() == "" {
		c.Addr = u.Host + ":3306"
	}
	c.User = u.User.Username()
	c.Passwd, _ = u.User.Password()
	c.DBName = strings.TrimPrefix(u.Path, "/")
	if c.DBName == "" {
		return "", fmt.Errorf("inbox DSN %q: no database", redact(dsn))
	}
	c.ParseTime = true // the outbox's created_at
	c.Params = map[string]string{"charset": "utf8mb4"}
	for k, v := range u.Query() {
		c.Params[k] = v[0]
	}
	return c.FormatDSN(), nil
}

// redact hides a DSN's password.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

//go:embed migrations
var migrationFiles embed.FS

// migrations lists the dialect's migrations, in order: migrations/<dialect>/NNN_name.sql.
func (d dialect) migrations() ([]string, error) {
	dir := "migrations/" + d.name
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		b, err := migrationFiles.ReadFile(dir + "/" + n)
		if err != nil {
			return nil, err
		}
		out[i] = string(b)
	}
	return out, nil
}

// migrate applies the migrations the database lacks, under the dialect's
// lock, recording each in herald_inbox_schema. A migration's statements are
// separated by lines ending in ";".
func (d dialect) migrate(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx) // the lock is per connection
	if err != nil {
		return err
	}
	defer conn.Close()
	if d.lock != "" {
		if _, err := conn.ExecContext(ctx, d.lock); err != nil {
			return fmt.Errorf("lock for migrations: %w", err)
		}
		defer conn.ExecContext(context.Background(), d.unlock)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS herald_inbox_schema (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var have sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT MAX(version) FROM herald_inbox_schema`).Scan(&have); err != nil {
		return err
	}
	all, err := d.migrations()
	if err != nil {
		return err
	}
	for v := int(have.Int64) + 1; v <= len(all); v++ {
		for _, stmt := range statements(all[v-1]) {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		if _, err := conn.ExecContext(ctx, d.q(`INSERT INTO herald_inbox_schema (version) VALUES (?)`), v); err != nil {
			return err
		}
	}
	return nil
}

// statements splits a migration into statements at lines ending in ";",
// leaving out comment lines.
func statements(src string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line + "\n")
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
