package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
)

type metrics struct {
	published     prometheus.Counter
	publishErrors prometheus.Counter
	appendLatency prometheus.Histogram
	// rejected counts every request answered with an error, by code: a
	// token_expired spike or a flood of forbidden_topic shows here.
	rejected *prometheus.CounterVec
	// limited counts each limit tripping, by limit.
	limited *prometheus.CounterVec
	// presenceDropped counts presence changes not published.
	presenceDropped prometheus.Counter
	// inboxChangesDropped counts inbox changes (read, deleted) not pushed.
	inboxChangesDropped prometheus.Counter
	// statsDropped counts admin statistics not appended to herald/stats.
	statsDropped prometheus.Counter
}

// newMetrics registers Herald's metrics on reg. Hub counters are read at scrape
// time, so the delivery path only bumps atomics.
// nodeID, when set, is exported as herald_node_info{node="<id>"} 1.
func newMetrics(reg *prometheus.Registry, h *hub.Hub, tokens *auth.Verifier, nodeID string) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_published_events_total", Help: "Events accepted by publish (durably appended).",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_publish_errors_total", Help: "Publish requests refused because the engine could not append.",
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_append_duration_seconds",
			Help:    "Time for the engine to durably append one publish request.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_rejected_requests_total", Help: "Requests answered with an error, by error code.",
		}, []string{"code"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_limit_exceeded_total", Help: "Requests refused because a configured limit was reached, by limit.",
		}, []string{"limit"}),
		inboxChangesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_inbox_changes_dropped_total", Help: "Inbox changes (notification.read, notification.deleted) not pushed to the user's topic because the engine refused the append.",
		}),
		statsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_admin_stats_dropped_total", Help: "Admin statistics not appended to herald/stats because the engine refused the append.",
		}),
		presenceDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_presence_changes_dropped_total", Help: "Presence changes not published to presence/{topic}: the queue was full or the engine refused the append.",
		}),
	}
	for _, l := range limitNames {
		m.limited.WithLabelValues(l) // every limit shows from the start, at 0
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	reg.MustRegister(
		m.published, m.publishErrors, m.appendLatency, m.rejected, m.limited, m.presenceDropped, m.inboxChangesDropped, m.statsDropped,
		gauge("herald_connections", "Open SSE streams.", func() float64 { return float64(h.Stats().Connections) }),
		gauge("herald_subscriptions", "Open (stream, topic) subscriptions.", func() float64 { return float64(h.Stats().Subscriptions) }),
		counter("herald_delivered_events_total", "Events written to streams, live and replayed.", func() float64 { return float64(h.Stats().Delivered) }),
		counter("herald_replayed_events_total", "Events written to streams from history.", func() float64 { return float64(h.Stats().Replayed) }),
		counter("herald_dropped_slow_total", "Streams cut off because their queue overflowed.", func() float64 { return float64(h.Stats().DroppedSlow) }),
		counter("herald_holes_total", "Live events that came past a stream's cursor, each followed by a read of what was missed from history.", func() float64 { return float64(h.Stats().Holes) }),
		counter("herald_lost_rereads_total", "History re-reads of a stream's topic after the engine signalled it may have lost fan-out.", func() float64 { return float64(h.Stats().Rereads) }),
		counter("herald_recovered_events_total", "Events written to streams from history after a hole or a lost signal: what fan-out missed.", func() float64 { return float64(h.Stats().Recovered) }),
		counter("herald_gaps_total", "herald.gap events sent: history could not cover a cursor.", func() float64 { return float64(h.Stats().Gaps) }),
		counter("herald_engine_contract_violations_total", "Breaches of the engine contract seen by the hub (history short of a live event, an epoch going back, a callback after cancel); each is logged as an error.", func() float64 { return float64(h.Stats().ContractViolations) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if em, ok := h.Engine().(engine.Metrics); ok {
		for i, c := range em.Metrics() {
			reg.MustRegister(counter("herald_engine_"+c.Name+"_total", c.Help, func() float64 {
				if cs := em.Metrics(); i < len(cs) {
					return float64(cs[i].Value)
				}
				return 0
			}))
		}
	}
	if nodeID != "" {
		info := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_node_info", Help: "Always 1; its node label is this node's id (-node-id).",
			ConstLabels: prometheus.Labels{"node": nodeID},
		})
		info.Set(1)
		reg.MustRegister(info)
	}
	if _, ok := tokens.JWKSStatus(); ok {
		jwks := func() auth.JWKSStatus { st, _ := tokens.JWKSStatus(); return st }
		reg.MustRegister(
			gauge("herald_jwks_keys", "Usable keys in the JWKS last fetched.", func() float64 { return float64(jwks().Keys) }),
			gauge("herald_jwks_last_success_timestamp_seconds", "When the JWKS was last fetched successfully (0: never).", func() float64 {
				if t := jwks().LastSuccess; !t.IsZero() {
					return float64(t.UnixNano()) / 1e9
				}
				return 0
			}),
			counter("herald_jwks_refresh_failures_total", "JWKS fetches that failed (the previous keys stay in use).", func() float64 { return float64(jwks().Failures) }),
		)
	}
	return m
}
