package redis

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-hub/herald/internal/redistest"
)

// commandCalls is how many times Redis ran cmd (inside scripts too) since
// its statistics were last reset.
func commandCalls(t *testing.T, e *Engine, cmd string) int {
	t.Helper()
	s, err := do(t, e, "INFO", "commandstats").ToString()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(v[:strings.IndexByte(v, ',')])
			return n
		}
	}
	return 0
}

// openPrivate opens the engine on a redis-server of the test's own, whose
// statistics no other test moves, with opt changed by set.
func openPrivate(t *testing.T, set func(*Options)) (*Engine, Options) {
	t.Helper()
	opt := testOptions(t, redistest.Start(t).URL())
	set(&opt)
	return mustOpen(t, opt), opt
}

// pttl is how long key has to live.
func pttl(t *testing.T, e *Engine, key string) time.Duration {
	t.Helper()
	ms, err := do(t, e, "PTTL", key).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

// After every append a topic's keys live at least their TTL (MaxAge for the
// stream, MetaTTL for the meta hash), though an append renews them only once
// a sixteenth of the TTL has passed since they were last set.
func TestKeysOutliveTheirTTLAfterEveryAppend(t *testing.T) {
	e, opt := openPrivate(t, func(o *Options) {
		o.MaxAge, o.MetaTTL = 16*time.Second, 32*time.Second // renewed after 1 s
	})
	appendOK(t, e, ev("u", "", "0")) // the topic exists; count from here
	do(t, e, "CONFIG", "RESETSTAT")
	start := time.Now()
	const appends = 40
	for i := range appends {
		before := time.Now()
		appendOK(t, e, ev("u", "", strconv.Itoa(i+1)))
		since := time.Since(before)
		if got := pttl(t, e, e.key("u")+"l"); got < opt.MaxAge-since-50*time.Millisecond {
			t.Fatalf("append %d: the stream expires in %v, want at least %v", i, got, opt.MaxAge)
		}
		if got := pttl(t, e, e.key("u")+"m"); got < opt.MetaTTL-since-50*time.Millisecond {
			t.Fatalf("append %d: the meta hash expires in %v, want at least %v", i, got, opt.MetaTTL)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Renewed at most once per second that passed, two keys each time.
	elapsed := time.Since(start)
	if n, most := commandCalls(t, e, "pexpire"), 2*(int(elapsed/time.Second)+1); n > most {
		t.Fatalf("%d PEXPIRE over %d appends in %v, want at most %d", n, appends, elapsed.Round(time.Millisecond), most)
	}
}

// The age trim reads the stream only once its first entry may have expired,
// not at every append; a topic written before the trim kept that time (no o
// field in its meta hash) is read once, then not again.
func TestAgeTrimReadsTheStreamOnlyWhenItsFirstEntryMayHaveExpired(t *testing.T) {
	e, _ := openPrivate(t, func(o *Options) { o.MaxAge = time.Hour })
	appendOK(t, e, ev("a", "", "0"))
	do(t, e, "HDEL", e.key("a")+"m", "o", "x", "y") // as the script before these fields left it
	do(t, e, "CONFIG", "RESETSTAT")
	for i := range 20 {
		appendOK(t, e, ev("a", "", strconv.Itoa(i+1)))
	}
	if n := commandCalls(t, e, "xrange"); n != 1 {
		t.Fatalf("%d XRANGE over 20 appends, want 1 (the first, which had no o)", n)
	}
	if n := commandCalls(t, e, "pexpire"); n != 2 {
		t.Fatalf("%d PEXPIRE over 20 appends, want 2 (the first, which had no deadlines)", n)
	}
}

// A stream that expired while its topic's meta hash lived, and that an
// append then makes again, gets its TTL, even when an append of retries
// alone (nothing added) came between.
func TestAStreamMadeAgainGetsItsTTL(t *testing.T) {
	e, _ := openPrivate(t, func(o *Options) { o.MaxAge, o.IdempotencyWindow = 1600*time.Millisecond, 10*time.Second })
	appendOK(t, e, ev("u", "k1", "1"))
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := do(t, e, "EXISTS", e.key("u")+"l").AsInt64(); n == 1; n, _ = do(t, e, "EXISTS", e.key("u")+"l").AsInt64() {
		if time.Now().After(deadline) {
			t.Fatal("the stream did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
	appendOK(t, e, ev("u", "k1", "1")) // a retry: nothing added
	appendOK(t, e, ev("u", "", "2"))
	if d := pttl(t, e, e.key("u")+"l"); d <= 0 {
		t.Fatalf("the stream made again expires in %v, want its TTL", d)
	}
}

// A longer retention applies to a topic's next append, not once the keys'
// old TTLs would have been renewed.
func TestALongerRetentionAppliesAtTheNextAppend(t *testing.T) {
	e, opt := openPrivate(t, func(o *Options) { o.MaxAge, o.MetaTTL = 1600*time.Millisecond, 64*time.Second })
	appendOK(t, e, ev("u", "", "1"))
	e.Close()
	opt.MaxAge = -1 // no age limit: the stream lives as long as the meta hash
	e = mustOpen(t, opt)
	appendOK(t, e, ev("u", "", "2"))
	if d := pttl(t, e, e.key("u")+"l"); d < opt.MetaTTL-time.Second {
		t.Fatalf("the stream expires in %v, want at least %v", d, opt.MetaTTL)
	}
}

// Head renews the meta hash's TTL but never shortens it below what an
// append set, which the next append counts on.
func TestHeadNeverShortensTheMetaTTL(t *testing.T) {
	e, opt := openPrivate(t, func(o *Options) { o.MaxAge, o.MetaTTL = 16*time.Second, 16*time.Second })
	appendOK(t, e, ev("u", "", "1"))
	if _, err := e.Head(ctx(t), "u"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	before := time.Now()
	appendOK(t, e, ev("u", "", "2"))
	since := time.Since(before)
	if d := pttl(t, e, e.key("u")+"m"); d < opt.MetaTTL-since-50*time.Millisecond {
		t.Fatalf("the meta hash expires in %v after an append, want at least %v", d, opt.MetaTTL)
	}
}

// A stream deleted behind Herald's back and made again by the next append
// gets its TTL at once, though its deadline in the meta hash is not due.
func TestAStreamDeletedAndMadeAgainGetsItsTTL(t *testing.T) {
	e, _ := openPrivate(t, func(o *Options) { o.MaxAge = time.Hour })
	appendOK(t, e, ev("u", "", "1"))
	do(t, e, "DEL", e.key("u")+"l")
	appendOK(t, e, ev("u", "", "2"))
	if d := pttl(t, e, e.key("u")+"l"); d <= 0 {
		t.Fatalf("the stream made again expires in %v, want its TTL", d)
	}
}
