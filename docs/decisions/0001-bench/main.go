// Command storebench measures durable, group-committed appends on bbolt and Pebble,
// the two candidates for the local engine's log (see ../0001-local-engine-store.md).
//
// It is a separate module so that the candidate that lost does not enter Herald's
// go.mod. Each store gets the same design as engine/local: publishers send an append
// request on a channel and wait; one committer goroutine takes everything pending
// (up to -maxbatch), writes it in one transaction/batch, syncs once, answers all.
//
//	cd docs/decisions/0001-bench && go run . -dir /var/tmp -d 5s
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
)

type req struct {
	topic string
	data  []byte
	done  chan uint64
}

// store writes one batch of appends durably and returns after the sync.
type store interface {
	writeBatch(reqs []req, heads map[string]uint64) error
	close() error
}

type boltStore struct{ db *bolt.DB }

func (s *boltStore) writeBatch(reqs []req, heads map[string]uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for i := range reqs {
			b, err := tx.CreateBucketIfNotExists([]byte(reqs[i].topic))
			if err != nil {
				return err
			}
			heads[reqs[i].topic]++
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], heads[reqs[i].topic])
			if err := b.Put(k[:], reqs[i].data); err != nil {
				return err
			}
		}
		return nil
	})
}
func (s *boltStore) close() error { return s.db.Close() }

type pebbleStore struct{ db *pebble.DB }

func (s *pebbleStore) writeBatch(reqs []req, heads map[string]uint64) error {
	b := s.db.NewBatch()
	defer b.Close()
	for i := range reqs {
		heads[reqs[i].topic]++
		k := make([]byte, 0, len(reqs[i].topic)+9)
		k = append(k, reqs[i].topic...)
		k = append(k, 0)
		k = binary.BigEndian.AppendUint64(k, heads[reqs[i].topic])
		if err := b.Set(k, reqs[i].data, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}
func (s *pebbleStore) close() error { return s.db.Close() }

func run(s store, publishers int, d time.Duration, maxBatch int) (rate float64, avgBatch float64) {
	ch := make(chan req, 1024)
	var batches, appends atomic.Int64
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		heads := map[string]uint64{}
		var pend []req
		for r := range ch {
			pend = append(pend[:0], r)
		drain:
			for len(pend) < maxBatch {
				select {
				case r, ok := <-ch:
					if !ok {
						break drain
					}
					pend = append(pend, r)
				default:
					break drain
				}
			}
			if err := s.writeBatch(pend, heads); err != nil {
				log.Fatal(err)
			}
			batches.Add(1)
			for _, r := range pend {
				r.done <- 1
			}
		}
	}()
	data := make([]byte, 200)
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan uint64, 1)
			topic := fmt.Sprintf("users/%d", p)
			for time.Now().Before(stop) {
				ch <- req{topic: topic, data: data, done: done}
				<-done
				appends.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(ch)
	<-committerDone
	return float64(appends.Load()) / el.Seconds(), float64(appends.Load()) / float64(batches.Load())
}

func main() {
	dir := flag.String("dir", os.TempDir(), "parent directory for the stores")
	d := flag.Duration("d", 5*time.Second, "duration per case")
	maxBatch := flag.Int("maxbatch", 1024, "largest group commit")
	count := flag.Int("count", 3, "runs per case (alternating stores)")
	flag.Parse()
	for i := 0; i < *count; i++ {
		for _, pubs := range []int{1, 8, 64} {
			for _, name := range []string{"bbolt", "pebble"} {
				path, err := os.MkdirTemp(*dir, "storebench-"+name)
				if err != nil {
					log.Fatal(err)
				}
				var s store
				switch name {
				case "bbolt":
					db, err := bolt.Open(filepath.Join(path, "log.db"), 0o600, &bolt.Options{Timeout: time.Second})
					if err != nil {
						log.Fatal(err)
					}
					s = &boltStore{db}
				case "pebble":
					db, err := pebble.Open(path, &pebble.Options{Logger: quiet{}})
					if err != nil {
						log.Fatal(err)
					}
					s = &pebbleStore{db}
				}
				rate, avg := run(s, pubs, *d, *maxBatch)
				if err := s.close(); err != nil {
					log.Fatal(err)
				}
				os.RemoveAll(path)
				fmt.Printf("%-7s publishers=%-3d %9.0f appends/s  %5.1f appends/commit\n", name, pubs, rate, avg)
			}
		}
	}
}

type quiet struct{}

func (quiet) Infof(string, ...any)      {}
func (quiet) Errorf(f string, a ...any) { log.Printf(f, a...) }
func (quiet) Fatalf(f string, a ...any) { log.Fatalf(f, a...) }
