// Command 0017-bench measures the throughput of the Redis engine's append
// script (one EVALSHA per call) through go-redis v9 and rueidis, alternating:
// 16 concurrent callers, single events and batches of 10, over 1000 topics.
// A separate module, so that the client not chosen stays out of Herald's go.mod.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

var prefix = fmt.Sprintf("hbench%d:", time.Now().UnixNano())

func args(w, batch int, i int64) ([]string, []string) {
	topic := fmt.Sprintf("t%d", (int64(w)*7919+i)%1000)
	base := prefix + "{" + topic + "}:"
	keys := []string{base + "m", base + "l"}
	argv := []string{strconv.FormatInt(time.Now().UnixMilli(), 10), "1000", "0", "3600000", "120000", "benchepoch1", "1", base + "c", strconv.Itoa(batch)}
	for j := 0; j < batch; j++ {
		argv = append(argv, "", "test", `{"n":12345,"msg":"hello world"}`)
	}
	return keys, argv
}

func run(name string, d time.Duration, callers, batch int, call func(ctx context.Context, keys, argv []string) error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	stop := time.Now().Add(d)
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); time.Now().Before(stop); i++ {
				k, a := args(w, batch, i)
				if err := call(ctx, k, a); err != nil {
					panic(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	calls := float64(n.Load()) / d.Seconds()
	fmt.Printf("%-8s batch=%-2d callers=%d  %8.0f calls/s  %8.0f events/s\n", name, batch, callers, calls, calls*float64(batch))
}

func main() {
	dur := flag.Duration("d", 5*time.Second, "duration per run")
	rounds := flag.Int("rounds", 3, "alternating rounds")
	addr := flag.String("addr", "127.0.0.1:6379", "Redis address (keys under a fresh hbench<nanos>: prefix, deleted at the end)")
	script := flag.String("script", "../../../engine/redis/append.lua", "the engine's append script")
	flag.Parse()
	b, err := os.ReadFile(*script)
	if err != nil {
		panic(err)
	}
	src := string(b)
	gr := goredis.NewClient(&goredis.Options{Addr: *addr, PoolSize: 32})
	gscript := goredis.NewScript(src)
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{*addr}, DisableCache: true})
	if err != nil {
		panic(err)
	}
	rscript := rueidis.NewLuaScript(src)
	gcall := func(ctx context.Context, k, a []string) error {
		iargs := make([]any, len(a))
		for i := range a {
			iargs[i] = a[i]
		}
		return gscript.Run(ctx, gr, k, iargs...).Err()
	}
	rcall := func(ctx context.Context, k, a []string) error {
		return rscript.Exec(ctx, rc, k, a).Error()
	}
	for r := 0; r < *rounds; r++ {
		for _, batch := range []int{1, 10} {
			run("go-redis", *dur, 16, batch, gcall)
			run("rueidis", *dur, 16, batch, rcall)
		}
	}
	// Clean up.
	ctx := context.Background()
	iter := gr.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		gr.Del(ctx, iter.Val())
	}
	rc.Close()
	gr.Close()
}
