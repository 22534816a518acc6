package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/herald-hub/herald/inbox"
)

// BenchmarkSend stores one notification per Send, from 1 and 8 goroutines,
// on SQLite, and on PostgreSQL and MariaDB when their variables are set.
func BenchmarkSend(b *testing.B) {
	stores := map[string]func(b *testing.B) inbox.Store{
		"sqlite": func(b *testing.B) inbox.Store {
			s, err := inbox.Open(context.Background(), "", b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	if u := os.Getenv("HERALD_TEST_POSTGRES_URL"); u != "" {
		stores["postgres"] = func(b *testing.B) inbox.Store { return openPostgres(b, u) }
	}
	for _, name := range []string{"sqlite", "postgres"} {
		open, ok := stores[name]
		if !ok {
			continue
		}
		for _, par := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/senders=%d", name, par), func(b *testing.B) {
				s := open(b)
				defer s.Close()
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						i++
						if _, _, err := s.Send(context.Background(), inbox.Send{To: []string{fmt.Sprint(i % 1000)}, Type: "bench", Title: "t", Body: "b"}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkList pages the newest 50 unread of one user's 100,000
// notifications (among 100,000 of other users), reporting p50 and p99.
func BenchmarkList(b *testing.B) {
	ctx := context.Background()
	type target struct {
		name, driver, src, fill string
	}
	var targets []target
	dir := b.TempDir()
	targets = append(targets, target{"sqlite", "sqlite", "sqlite:" + dir + "/inbox.db", `
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO herald_notifications (user_id, type, title, body, created_at, pushed)
SELECT CASE WHEN i % 2 = 0 THEN 'u' ELSE 'other' || (i % 1000) END, 'x', 't', 'b', i, 1 FROM n`})
	if u := os.Getenv("HERALD_TEST_POSTGRES_URL"); u != "" {
		src := pgSchema(b, u)
		targets = append(targets, target{"postgres", "pgx", src, `
INSERT INTO herald_notifications (user_id, type, title, body, created_at, pushed)
SELECT CASE WHEN i % 2 = 0 THEN 'u' ELSE 'other' || (i % 1000) END, 'x', 't', 'b', i, 1 FROM generate_series(1, 200000) i`})
	}
	for _, tg := range targets {
		b.Run(tg.name+"/100k", func(b *testing.B) {
			s, err := inbox.Open(ctx, tg.src, "")
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			raw := tg.src
			if tg.driver == "sqlite" {
				raw = "file:" + dir + "/inbox.db?_pragma=busy_timeout(10000)"
			}
			db, err := sql.Open(tg.driver, raw)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var have int
			db.QueryRow(`SELECT COUNT(*) FROM herald_notifications`).Scan(&have)
			if have == 0 {
				for _, q := range []string{tg.fill, `INSERT INTO herald_unread (user_id, n) SELECT user_id, COUNT(*) FROM herald_notifications WHERE read_at IS NULL GROUP BY user_id`} {
					if _, err := db.Exec(q); err != nil {
						b.Fatal(err)
					}
				}
				db.Exec(`ANALYZE`)
			}
			b.ResetTimer()
			lat := make([]time.Duration, 0, b.N)
			for range b.N {
				start := time.Now()
				p, err := s.List(ctx, "u", inbox.Query{Limit: 50, Unread: true})
				if err != nil || len(p.Items) != 50 || p.Unread != 100_000 {
					b.Fatalf("List: %d items, unread %d, %v", len(p.Items), p.Unread, err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
