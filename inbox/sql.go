package inbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SQL is the Store on a SQL database.
type SQL struct {
	db  *sql.DB
	d   dialect
	now func() time.Time
}

var _ Store = (*SQL)(nil)

// Open opens the store of dsn (see parseDSN; "" is SQLite in dataDir) and
// applies the migrations it lacks.
func Open(ctx context.Context, dsn, dataDir string) (*SQL, error) {
	d, src, err := parseDSN(dsn, dataDir)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(d.driver, src)
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	if d.name == "sqlite" {
		// One writer at a time is SQLite's rule; one connection keeps the
		// writes queued in Go rather than retried on SQLITE_BUSY.
		db.SetMaxOpenConns(1)
	} else {
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(16)
		db.SetConnMaxIdleTime(5 * time.Minute)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, d.name, err)
	}
	if err := d.migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("inbox: %s: %w", d.name, err)
	}
	return &SQL{db: db, d: d, now: time.Now}, nil
}

// Dialect names the database: sqlite, mysql or postgres.
func (s *SQL) Dialect() string { return s.d.name }

// Close implements Store.
func (s *SQL) Close() error { return s.db.Close() }

func (s *SQL) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, s.d.name, err)
}

// Check validates a Send against the limits.
func Check(sd Send) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if len(sd.To) == 0 {
		return bad("no recipient")
	}
	if len(sd.To) > MaxRecipients {
		return bad("%d recipients, at most %d", len(sd.To), MaxRecipients)
	}
	seen := make(map[string]bool, len(sd.To))
	for _, u := range sd.To {
		if u == "" || len(u) > MaxUserLen || !utf8.ValidString(u) {
			return bad("recipient %q: want 1 to %d bytes of UTF-8", u, MaxUserLen)
		}
		if seen[u] {
			return bad("recipient %q twice", u)
		}
		seen[u] = true
	}
	for _, f := range []struct {
		name, v string
		max     int
		needed  bool
	}{{"type", sd.Type, MaxTypeLen, true}, {"title", sd.Title, MaxTitleLen, false}, {"body", sd.Body, MaxBodyLen, false}, {"dedupe_key", sd.DedupeKey, MaxDedupeLen, false}} {
		if f.needed && f.v == "" {
			return bad("%s is required", f.name)
		}
		if len(f.v) > f.max {
			return bad("%s of %d bytes, at most %d", f.name, len(f.v), f.max)
		}
		if !utf8.ValidString(f.v) {
			return bad("%s is not UTF-8", f.name)
		}
	}
	if len(sd.Data) > MaxDataLen {
		return bad("data of %d bytes, at most %d", len(sd.Data), MaxDataLen)
	}
	if len(sd.Data) > 0 && !json.Valid(sd.Data) {
		return bad("data is not valid JSON")
	}
	return nil
}

const columns = `id, user_id, type, title, body, data, created_at, read_at, pushed`

type scanner interface{ Scan(...any) error }

func scan(r scanner) (Notification, error) {
	var n Notification
	var data sql.NullString
	var created int64
	var read sql.NullInt64
	var pushed int64
	if err := r.Scan(&n.ID, &n.User, &n.Type, &n.Title, &n.Body, &data, &created, &read, &pushed); err != nil {
		return n, err
	}
	if data.Valid {
		n.Data = []byte(data.String)
	}
	n.Created = time.UnixMilli(created)
	if read.Valid {
		n.Read = time.UnixMilli(read.Int64)
	}
	n.Pushed = pushed != 0
	return n, nil
}

// Send implements Store: one transaction for the notifications and the
// dedupe key, so a retry finds either all or none.
func (s *SQL) Send(ctx context.Context, sd Send) ([]Notification, bool, error) {
	rs, err := s.SendAll(ctx, []Send{sd})
	if err != nil {
		return nil, false, err
	}
	return rs[0].Notifications, rs[0].Duplicate, nil
}

// SendAll implements Store: every Send in one transaction.
func (s *SQL) SendAll(ctx context.Context, sds []Send) ([]Sent, error) {
	for _, sd := range sds {
		if err := Check(sd); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		rs, err := s.sendAll(ctx, sds)
		if err == nil {
			return rs, nil
		}
		if attempt == 3 || ctx.Err() != nil || !slices.ContainsFunc(sds, func(sd Send) bool { return sd.DedupeKey != "" }) {
			return nil, s.failed(ctx, err)
		}
		// A concurrent Send with the same key won the race (a duplicate
		// key): the next attempt finds its notifications.
	}
}

func (s *SQL) sendAll(ctx context.Context, sds []Send) ([]Sent, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rs := make([]Sent, len(sds))
	unread := map[string]int64{}
	for i, sd := range sds {
		if rs[i], err = s.sendTx(ctx, tx, sd); err != nil {
			return nil, err
		}
		if !rs[i].Duplicate {
			for _, u := range sd.To {
				unread[u]++
			}
		}
	}
	// Counts in user order, as Trim takes them: no deadlock between the two.
	for _, u := range slices.Sorted(maps.Keys(unread)) {
		if err := s.addUnread(ctx, tx, u, unread[u]); err != nil {
			return nil, err
		}
	}
	return rs, tx.Commit()
}

// sendTx stores sd in tx.
func (s *SQL) sendTx(ctx context.Context, tx *sql.Tx, sd Send) (Sent, error) {
	if sd.DedupeKey != "" {
		var ids string
		err := tx.QueryRowContext(ctx, s.d.q(`SELECT ids FROM herald_sends WHERE dedupe_key = ?`), sd.DedupeKey).Scan(&ids)
		switch {
		case err == nil:
			ns, err := s.byIDs(ctx, tx, ids)
			return Sent{ns, true}, err
		case !errors.Is(err, sql.ErrNoRows):
			return Sent{}, err
		}
	}
	now := s.now().UnixMilli()
	var data any
	if sd.Data != nil {
		data = string(sd.Data)
	}
	ns := make([]Notification, len(sd.To))
	ids := make([]string, len(sd.To))
	insert := s.d.q(`INSERT INTO herald_notifications (user_id, type, title, body, data, created_at, pushed) VALUES (?, ?, ?, ?, ?, ?, 0)`)
	for i, u := range sd.To {
		var id int64
		var err error
		if s.d.returning {
			err = tx.QueryRowContext(ctx, insert+" RETURNING id", u, sd.Type, sd.Title, sd.Body, data, now).Scan(&id)
		} else {
			var res sql.Result
			if res, err = tx.ExecContext(ctx, insert, u, sd.Type, sd.Title, sd.Body, data, now); err == nil {
				id, err = res.LastInsertId()
			}
		}
		if err != nil {
			return Sent{}, err
		}
		ns[i] = Notification{ID: id, User: u, Type: sd.Type, Title: sd.Title, Body: sd.Body, Data: sd.Data, Created: time.UnixMilli(now)}
		ids[i] = strconv.FormatInt(id, 10)
	}
	if sd.DedupeKey != "" {
		if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO herald_sends (dedupe_key, ids, created_at) VALUES (?, ?, ?)`), sd.DedupeKey, strings.Join(ids, ","), now); err != nil {
			return Sent{}, err
		}
	}
	return Sent{ns, false}, nil
}

// byIDs reads notifications by a comma-separated list of ids, in its order.
func (s *SQL) byIDs(ctx context.Context, tx *sql.Tx, list string) ([]Notification, error) {
	parts := strings.Split(list, ",")
	args := make([]any, len(parts))
	for i, p := range parts {
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("herald_sends holds %q", list)
		}
		args[i] = id
	}
	rows, err := tx.QueryContext(ctx, s.d.q(`SELECT `+columns+` FROM herald_notifications WHERE id IN (`+placeholders(len(args))+`)`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byID := map[int64]Notification{}
	for rows.Next() {
		n, err := scan(rows)
		if err != nil {
			return nil, err
		}
		byID[n.ID] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Notification, 0, len(args))
	for _, a := range args { // deleted since: left out
		if n, ok := byID[a.(int64)]; ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// addUnread adds delta to user's unread count, in tx.
func (s *SQL) addUnread(ctx context.Context, tx *sql.Tx, user string, delta int64) error {
	_, err := tx.ExecContext(ctx, s.d.q(s.d.addUnread), user, delta)
	return err
}

// inTx runs f in a transaction, committed when f returns nil.
func (s *SQL) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.failed(ctx, err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return s.failed(ctx, err)
	}
	if err := tx.Commit(); err != nil {
		return s.failed(ctx, err)
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// List implements Store.
func (s *SQL) List(ctx context.Context, user string, q Query) (Page, error) {
	if q.Limit < 1 {
		return Page{}, fmt.Errorf("%w: limit %d, want at least 1", ErrInvalid, q.Limit)
	}
	where := `user_id = ?`
	args := []any{user}
	if q.Unread {
		where += ` AND read_at IS NULL`
	}
	if q.Before > 0 {
		where += ` AND id < ?`
		args = append(args, q.Before)
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT `+columns+` FROM herald_notifications WHERE `+where+` ORDER BY id DESC LIMIT ?`), append(args, q.Limit+1)...)
	if err != nil {
		return Page{}, s.failed(ctx, err)
	}
	defer rows.Close()
	var p Page
	for rows.Next() {
		n, err := scan(rows)
		if err != nil {
			return Page{}, s.failed(ctx, err)
		}
		p.Items = append(p.Items, n)
	}
	if err := rows.Err(); err != nil {
		return Page{}, s.failed(ctx, err)
	}
	if len(p.Items) > q.Limit {
		p.Items, p.More = p.Items[:q.Limit], true
	}
	err = s.db.QueryRowContext(ctx, s.d.q(`SELECT n FROM herald_unread WHERE user_id = ?`), user).Scan(&p.Unread)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Page{}, s.failed(ctx, err)
	}
	p.Unread = max(p.Unread, 0)
	return p, nil
}

// MarkRead implements Store.
func (s *SQL) MarkRead(ctx context.Context, user string, id int64) (bool, error) {
	var marked int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`UPDATE herald_notifications SET read_at = ? WHERE user_id = ? AND id = ? AND read_at IS NULL`), s.now().UnixMilli(), user, id)
		if err != nil {
			return err
		}
		if marked, _ = res.RowsAffected(); marked > 0 {
			return s.addUnread(ctx, tx, user, -marked)
		}
		return nil
	})
	if err != nil || marked > 0 {
		return marked > 0, err
	}
	return s.exists(ctx, user, id)
}

func (s *SQL) exists(ctx context.Context, user string, id int64) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, s.d.q(`SELECT 1 FROM herald_notifications WHERE user_id = ? AND id = ?`), user, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, s.failed(ctx, err)
	}
	return true, nil
}

// MarkAllRead implements Store.
func (s *SQL) MarkAllRead(ctx context.Context, user string) (int64, error) {
	var marked int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`UPDATE herald_notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL`), s.now().UnixMilli(), user)
		if err != nil {
			return err
		}
		if marked, _ = res.RowsAffected(); marked > 0 {
			return s.addUnread(ctx, tx, user, -marked)
		}
		return nil
	})
	return marked, err
}

// Delete implements Store.
func (s *SQL) Delete(ctx context.Context, user string, id int64) (bool, error) {
	var deleted bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM herald_notifications WHERE user_id = ? AND id = ? AND read_at IS NULL`), user, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			deleted = true
			return s.addUnread(ctx, tx, user, -1)
		}
		res, err = tx.ExecContext(ctx, s.d.q(`DELETE FROM herald_notifications WHERE user_id = ? AND id = ?`), user, id)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		deleted = n > 0
		return nil
	})
	return deleted, err
}

// Unpushed implements Store.
func (s *SQL) Unpushed(ctx context.Context, limit int) ([]Notification, error) {
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT `+columns+` FROM herald_notifications WHERE pushed = 0 ORDER BY id LIMIT ?`), limit)
	if err != nil {
		return nil, s.failed(ctx, err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		n, err := scan(rows)
		if err != nil {
			return nil, s.failed(ctx, err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.failed(ctx, err)
	}
	return out, nil
}

// MarkPushed implements Store.
func (s *SQL) MarkPushed(ctx context.Context, ids []int64) error {
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		if _, err := s.db.ExecContext(ctx, s.d.q(`UPDATE herald_notifications SET pushed = 1 WHERE id IN (`+placeholders(n)+`)`), args...); err != nil {
			return s.failed(ctx, err)
		}
		ids = ids[n:]
	}
	return nil
}

// dedupeWindow is how long a Send's dedupe key is remembered.
const dedupeWindow = 24 * time.Hour

// Trim implements Store: each transaction deletes at most batch rows, so
// no lock is held long, and takes their unread ones off the counts.
func (s *SQL) Trim(ctx context.Context, maxAge time.Duration, maxPerUser, batch int) (int64, error) {
	if batch < 1 {
		batch = 1000
	}
	var total int64
	now := s.now()
	if maxAge > 0 {
		n, err := s.trimAll(ctx, `created_at < ?`, batch, now.Add(-maxAge).UnixMilli())
		if total += n; err != nil {
			return total, err
		}
	}
	if maxPerUser > 0 {
		users, err := s.usersOver(ctx, maxPerUser)
		if err != nil {
			return total, err
		}
		for _, u := range users {
			var cut int64
			err := s.db.QueryRowContext(ctx, s.d.q(`SELECT id FROM herald_notifications WHERE user_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?`), u, maxPerUser).Scan(&cut)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return total, s.failed(ctx, err)
			}
			n, err := s.trimAll(ctx, `user_id = ? AND id <= ?`, batch, u, cut)
			if total += n; err != nil {
				return total, err
			}
		}
	}
	// Dedupe keys past their window; they are not notifications, so not counted.
	q := `DELETE FROM herald_sends WHERE dedupe_key IN (SELECT dedupe_key FROM herald_sends WHERE created_at < ? LIMIT ?)`
	if s.d.name == "mysql" {
		q = `DELETE FROM herald_sends WHERE created_at < ? LIMIT ?`
	}
	for {
		res, err := s.db.ExecContext(ctx, s.d.q(q), now.Add(-dedupeWindow).UnixMilli(), batch)
		if err != nil {
			return total, s.failed(ctx, err)
		}
		if n, _ := res.RowsAffected(); n < int64(batch) {
			return total, nil
		}
	}
}

// trimAll deletes the notifications matching where, batch at a time, until
// none is left; it returns how many it deleted.
func (s *SQL) trimAll(ctx context.Context, where string, batch int, args ...any) (int64, error) {
	var total int64
	for {
		var n int
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, s.d.q(`SELECT id, user_id, read_at FROM herald_notifications WHERE `+where+` ORDER BY id LIMIT ?`+s.d.forUpdate), append(args, batch)...)
			if err != nil {
				return err
			}
			var ids []any
			unread := map[string]int64{}
			for rows.Next() {
				var id int64
				var u string
				var read sql.NullInt64
				if err := rows.Scan(&id, &u, &read); err != nil {
					rows.Close()
					return err
				}
				ids = append(ids, id)
				if !read.Valid {
					unread[u]++
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil || len(ids) == 0 {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.d.q(`DELETE FROM herald_notifications WHERE id IN (`+placeholders(len(ids))+`)`), ids...); err != nil {
				return err
			}
			for _, u := range slices.Sorted(maps.Keys(unread)) { // the order Send takes them in
				if err := s.addUnread(ctx, tx, u, -unread[u]); err != nil {
					return err
				}
			}
			n = len(ids)
			return nil
		})
		total += int64(n)
		if err != nil || n < batch {
			return total, err
		}
	}
}

func (s *SQL) usersOver(ctx context.Context, max int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.d.q(`SELECT user_id FROM herald_notifications GROUP BY user_id HAVING COUNT(*) > ?`), max)
	if err != nil {
		return nil, s.failed(ctx, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, s.failed(ctx, err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
