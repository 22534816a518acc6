package bench

import (
	"context"
	"time"
)

// storm drops every stream at once, publishes cfg.StormMissed events per
// topic while they are down, then lets them all reconnect at the same moment
// with their last event id, and measures how long until every stream is back
// and has every event it missed.
func storm(ctx context.Context, f *fleet, p *pump, cfg Config, logf func(string, ...any)) *StormResult {
	var live []*stream
	var dups0, exp0 int64
	for _, s := range f.streams {
		if s.up.Load() {
			live = append(live, s)
			dups0 += s.dups.Load()
		}
	}
	r := &StormResult{Connections: len(live), MissedPerTopic: cfg.StormMissed}
	logf("storm: dropping %d streams", len(live))
	f.holdReconnects()
	f.dropAll()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if f.upCount() == 0 || !sleep(ctx, 5*time.Millisecond) {
			break
		}
	}
	for _, s := range live {
		exp0 += p.expected(s.topic)
	}
	published0 := p.published.Load()
	p.each(ctx, cfg.StormMissed)
	r.Published = p.published.Load() - published0
	var want int64
	for _, s := range live {
		want += p.expected(s.topic)
	}
	r.Expected = want - exp0
	logf("storm: published %d events while down; reconnecting all", r.Published)

	start := time.Now()
	f.releaseReconnects()
	reconnected := false
	for time.Since(start) < cfg.StormLimit {
		up := 0
		var got int64
		for _, s := range live {
			if s.up.Load() {
				up++
			}
			got += min(s.distinct.Load(), p.expected(s.topic))
		}
		if !reconnected && up == len(live) {
			reconnected = true
			r.ReconnectSeconds = time.Since(start).Seconds()
		}
		if got >= want {
			r.Recovered = true
			break
		}
		if !sleep(ctx, 5*time.Millisecond) {
			break
		}
	}
	r.RecoverySeconds = time.Since(start).Seconds()
	if !reconnected {
		r.ReconnectSeconds = r.RecoverySeconds
	}
	for _, s := range live {
		if got, exp := s.distinct.Load(), p.expected(s.topic); got < exp {
			r.Lost += exp - got
		}
		r.Duplicates += s.dups.Load()
	}
	r.Duplicates -= dups0
	logf("storm: recovered=%v in %.2fs, %d lost, %d duplicates", r.Recovered, r.RecoverySeconds, r.Lost, r.Duplicates)
	return r
}
