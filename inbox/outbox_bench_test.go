package inbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/engine/memory"
	"github.com/herald-hub/herald/inbox"
)

// BenchmarkOutbox measures the relay on PostgreSQL: rows per second moved
// into the inbox from a full outbox (relay), and commit-to-stream latency of
// single-row transactions through the relay, the inbox, the pusher and a
// (memory) engine's fan-out (latency).
func BenchmarkOutbox(b *testing.B) {
	base := os.Getenv("HERALD_TEST_POSTGRES_URL")
	if base == "" {
		b.Skip("set HERALD_TEST_POSTGRES_URL")
	}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	b.Run("relay", func(b *testing.B) {
		u := pgSchema(b, base)
		db, err := sql.Open("pgx", u)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		st := openPostgres(b, base)
		defer st.Close()
		r, err := inbox.OpenRelay(ctx, u, st, inbox.RelayOptions{Logger: quiet, Poll: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		r.Close() // the table exists; the rows go in first
		if _, err := db.Exec(`INSERT INTO herald_outbox (to_user, type, title) SELECT 'u' || (i % 100), 'x', 't' FROM generate_series(1, $1) i`, b.N); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		r, err = inbox.OpenRelay(ctx, u, st, inbox.RelayOptions{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		for r.Relayed() < uint64(b.N) {
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("latency", func(b *testing.B) {
		u := pgSchema(b, base)
		db, err := sql.Open("pgx", u)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		st := openPostgres(b, base)
		defer st.Close()
		e := memory.New(memory.Options{})
		defer e.Close()
		p := inbox.NewPusher(st, e, time.Second, quiet)
		defer p.Close()
		r, err := inbox.OpenRelay(ctx, u, st, inbox.RelayOptions{Logger: quiet, Wake: p.Wake})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		var mu sync.Mutex
		arrived := map[int]time.Time{}
		got := make(chan struct{}, 1)
		cancel, err := e.Subscribe("users/lat", func(ev engine.Event) {
			var n inbox.JSON
			json.Unmarshal(ev.Data, &n)
			i, _ := strconv.Atoi(n.Title)
			mu.Lock()
			arrived[i] = time.Now()
			mu.Unlock()
			select {
			case got <- struct{}{}:
			default:
			}
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cancel()
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if _, err := db.Exec(`INSERT INTO herald_outbox (to_user, type, title) VALUES ('lat', 'x', $1)`, fmt.Sprint(i)); err != nil {
				b.Fatal(err)
			}
			for {
				mu.Lock()
				at, ok := arrived[i]
				mu.Unlock()
				if ok {
					lat = append(lat, at.Sub(start))
					break
				}
				select {
				case <-got:
				case <-time.After(5 * time.Second):
					b.Fatalf("row %d not on the stream after 5s", i)
				}
			}
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
}
