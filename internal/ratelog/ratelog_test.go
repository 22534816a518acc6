package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func newTest(interval time.Duration) (*slog.Logger, *bytes.Buffer, *time.Time) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), interval)
	now := time.Unix(1000, 0)
	h.lim.now = func() time.Time { return now }
	return slog.New(h), &buf, &now
}

func TestARepeatingErrorPassesOncePerIntervalWithTheCountHeldBack(t *testing.T) {
	log, buf, now := newTest(5 * time.Second)
	for range 3000 {
		log.Error("commit failed", "err", "no space left on device")
	}
	if n := strings.Count(buf.String(), "commit failed"); n != 1 {
		t.Fatalf("%d lines for 3000 repeats within the interval, want 1:\n%s", n, buf)
	}
	*now = now.Add(5 * time.Second)
	log.Error("commit failed", "err", "no space left on device")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "suppressed=2999") {
		t.Fatalf("after the interval, want a second line counting 2999 held back:\n%s", buf)
	}
}

func TestDistinctMessagesAndLowLevelsAreNotLimited(t *testing.T) {
	log, buf, _ := newTest(time.Minute)
	child := log.With("engine", "local")
	log.Warn("a")
	child.Warn("b")
	child.Warn("a") // same message through a derived logger: shares the limit
	for range 10 {
		log.Info("stream opened")
		log.Debug("detail")
	}
	out := buf.String()
	if strings.Count(out, "msg=a") != 1 || strings.Count(out, "msg=b") != 1 {
		t.Fatalf("want one a and one b:\n%s", out)
	}
	if strings.Count(out, "stream opened") != 10 || strings.Count(out, "detail") != 10 {
		t.Fatalf("info and debug must pass untouched:\n%s", out)
	}
}

func TestMemoryOfMessagesIsBounded(t *testing.T) {
	log, _, _ := newTest(time.Minute)
	for i := range 3 * maxKeys {
		log.Error(strings.Repeat("x", i%50) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	h := log.Handler().(*Handler)
	if n := len(h.lim.seen); n > maxKeys {
		t.Fatalf("%d messages remembered, want at most %d", n, maxKeys)
	}
}
