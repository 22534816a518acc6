package inbox_test

import (
	"context"
	"fmt"
	"os"
	"testing"

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
