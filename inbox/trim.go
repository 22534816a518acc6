package inbox

import (
	"context"
	"log/slog"
	"time"
)

// Retention is how long notifications are kept, and how many per user.
type Retention struct {
	MaxAge     time.Duration // 0: no age limit
	MaxPerUser int           // 0: no count limit
	Every      time.Duration // how often to trim [10m]
	Batch      int           // rows per statement [1000]
}

// Trimmer applies a Retention in the background until Close.
type Trimmer struct {
	stop context.CancelFunc
	done chan struct{}
}

// StartTrimmer trims store now and then every r.Every.
func StartTrimmer(store Store, r Retention, log *slog.Logger) *Trimmer {
	if r.Every <= 0 {
		r.Every = 10 * time.Minute
	}
	if r.Batch <= 0 {
		r.Batch = 1000
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Trimmer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(r.Every)
		defer tick.Stop()
		for {
			n, err := store.Trim(ctx, r.MaxAge, r.MaxPerUser, r.Batch)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Warn("inbox: trimming failed", "deleted", n, "err", err)
			case n > 0:
				log.Info("inbox: trimmed notifications past retention", "deleted", n)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return t
}

// Close stops trimming, waiting for a round in progress.
func (t *Trimmer) Close() {
	t.stop()
	<-t.done
}
