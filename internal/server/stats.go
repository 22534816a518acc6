package server

import (
	"context"
	"encoding/json"
	"math"
	"sync"
	"time"

	"github.com/herald-hub/herald/engine"
)

// Admin statistics over Herald itself: every Config.AdminStats each node
// appends one event of type stats to herald/stats, through the engine like
// any publish, so that a stream on herald/stats (the admin page) sees every
// node of a cluster. Nobody else may publish there (reserved_topic), and
// reading it needs a publish key or a grant that names herald/.

// StatsTopic is the topic of the admin statistics.
const StatsTopic = "herald/stats"

// statsTopTopics is the most topics listed in top_topics.
const statsTopTopics = 10

// statsEvent is the data of one stats event.
type statsEvent struct {
	Node       string `json:"node"`
	At         string `json:"at"`
	IntervalMS int64  `json:"interval_ms"`
	UptimeS    int64  `json:"uptime_s"`
	Streams    int64  `json:"streams"`
	Topics     int    `json:"topics"`

	PublishesTotal  uint64 `json:"publishes_total"`
	EventsTotal     uint64 `json:"events_total"`
	DeliveriesTotal uint64 `json:"deliveries_total"`
	DropsTotal      uint64 `json:"drops_total"`
	GapsTotal       uint64 `json:"gaps_total"`

	Rates     statsRates        `json:"rates"`
	TopTopics []statsTopicCount `json:"top_topics"`
}

// statsRates are per second over the last interval.
type statsRates struct {
	Publishes  float64 `json:"publishes"`
	Events     float64 `json:"events"`
	Deliveries float64 `json:"deliveries"`
	Drops      float64 `json:"drops"`
}

type statsTopicCount struct {
	Topic   string `json:"topic"`
	Streams int    `json:"streams"`
}

// statsTotals are the counters a rate is computed from.
type statsTotals struct {
	at                                   time.Time
	publishes, events, deliveries, drops uint64
}

// statsReporter appends the node's statistics every interval until stop.
type statsReporter struct {
	s        *Server
	interval time.Duration
	start    time.Time
	ctx      context.Context // ends at close, with an append under way
	stop     context.CancelFunc
	done     sync.WaitGroup
}

func newStatsReporter(s *Server, interval time.Duration) *statsReporter {
	r := &statsReporter{s: s, interval: interval, start: s.cfg.now()}
	r.ctx, r.stop = context.WithCancel(context.Background())
	r.done.Go(r.run)
	return r
}

func (r *statsReporter) run() {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	prev := r.totals()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			cur := r.totals()
			r.append(r.event(prev, cur))
			prev = cur
		}
	}
}

func (r *statsReporter) close() {
	r.stop()
	r.done.Wait()
}

// totals reads the counters: what /metrics shows as
// herald_published_events_total plus herald_inbox_pushed_total (events),
// herald_delivered_events_total (deliveries) and herald_dropped_slow_total
// (drops).
func (r *statsReporter) totals() statsTotals {
	s := r.s
	st := s.hub.Stats()
	t := statsTotals{at: s.cfg.now(), publishes: s.publishes.Load(), events: s.events.Load(), deliveries: st.Delivered, drops: st.DroppedSlow}
	if s.pusher != nil {
		t.events += s.pusher.Pushed()
	}
	return t
}

func (r *statsReporter) event(prev, cur statsTotals) statsEvent {
	s := r.s
	st := s.hub.Stats()
	topics, top := s.hub.Topics(statsTopTopics)
	ev := statsEvent{
		Node:            s.statsNode(),
		At:              cur.at.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		IntervalMS:      r.interval.Milliseconds(),
		UptimeS:         int64(cur.at.Sub(r.start).Seconds()),
		Streams:         st.Connections,
		Topics:          topics,
		PublishesTotal:  cur.publishes,
		EventsTotal:     cur.events,
		DeliveriesTotal: cur.deliveries,
		DropsTotal:      cur.drops,
		GapsTotal:       st.Gaps,
		TopTopics:       make([]statsTopicCount, len(top)),
	}
	if secs := cur.at.Sub(prev.at).Seconds(); secs > 0 {
		rate := func(a, b uint64) float64 { return math.Round(float64(b-a)/secs*1000) / 1000 }
		ev.Rates = statsRates{
			Publishes:  rate(prev.publishes, cur.publishes),
			Events:     rate(prev.events, cur.events),
			Deliveries: rate(prev.deliveries, cur.deliveries),
			Drops:      rate(prev.drops, cur.drops),
		}
	}
	for i, t := range top {
		ev.TopTopics[i] = statsTopicCount{Topic: t.Topic, Streams: t.Streams}
	}
	return ev
}

// append publishes ev. A failure (the engine down, a full disk) is counted
// and logged once in a while; the next interval tries again.
func (r *statsReporter) append(ev statsEvent) {
	s := r.s
	data, _ := json.Marshal(ev)
	ctx, cancel := context.WithTimeout(r.ctx, max(r.interval, 5*time.Second))
	defer cancel()
	if _, err := s.eng.Append(ctx, []engine.Event{{Topic: StatsTopic, Type: "stats", Data: data}}); err != nil {
		if r.ctx.Err() != nil {
			return // closing
		}
		s.metrics.statsDropped.Inc()
		if held, ok := s.warnings.Allow("admin stats"); ok {
			s.log.Warn("admin statistics not published to "+StatsTopic, "err", err, "repeats_held", held)
		}
	}
}

// statsNode names this node in its statistics.
func (s *Server) statsNode() string {
	if s.cfg.NodeID != "" {
		return s.cfg.NodeID
	}
	return "local"
}
