package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints r as a two-column table for people.
func WriteTable(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, args...)...)
	}
	row("target", "%s", r.Target)
	row("layout", "%s (%d topics)", r.Layout, r.Topics)
	row("connections", "%d (%d failed)", r.Connections, r.ConnectErrors)
	if r.Protocol != "" {
		row("protocol", "%s, %d TCP connections", r.Protocol, r.TCPConnections)
	}
	if r.ConnectError != "" {
		row("  first connect error", "%s", r.ConnectError)
	}
	row("connect", "%.2f s, %.0f/s, each p50 %s p99 %s max %s", r.ConnectSeconds, r.ConnectsPerSec,
		ms(r.ConnectLatency.P50), ms(r.ConnectLatency.P99), ms(r.ConnectLatency.Max))
	row("published", "%d in %.0f s (%.0f/s offered, %.0f/s achieved), %d failed", r.Published, r.Duration, r.Rate, r.PublishedPerSec, r.PublishErrors)
	row("publish requests", "%d, each p50 %s p99 %s max %s", r.PublishRequests, ms(r.PublishLatency.P50), ms(r.PublishLatency.P99), ms(r.PublishLatency.Max))
	if r.PublishError != "" {
		row("  first publish error", "%s", r.PublishError)
	}
	row("delivered", "%d of %d expected, %.0f/s", r.Delivered, r.Expected, r.DeliveredPerSec)
	row("lost", "%d (on %d connections)", r.Lost, r.ConnectionsWithLoss)
	row("duplicates", "%d", r.Duplicates)
	if r.Reconnects > 0 || r.Gaps > 0 {
		row("reconnects", "%d (%d gap events)", r.Reconnects, r.Gaps)
	}
	row("latency", "p50 %s  p90 %s  p99 %s  max %s", ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.Max))
	row("server RSS", "%s before, %s idle, %s after", mib(r.ServerRSS.Before), mib(r.ServerRSS.Idle), mib(r.ServerRSS.After))
	row("RSS per connection", "%.1f KiB", r.RSSPerConnection/1024)
	row("server CPU", "%.2f s publishing, %.2f µs per delivery", r.ServerCPU, r.CPUPerDelivery)
	row("bench CPU", "%.2f s publishing", r.ClientCPU)
	if d := r.Drops; d != nil {
		row("dropped while publishing", "%d streams: %d back, %d resumed", d.Streams, d.Back, d.Resumed)
		row("  back", "p50 %s p99 %s max %s after its drop; all %.2f s after the first drop",
			ms(d.Reconnect.P50), ms(d.Reconnect.P99), ms(d.Reconnect.Max), d.AllBackSeconds)
		row("  resumed", "p50 %s p99 %s max %s after its drop; all %.2f s after the first drop",
			ms(d.Resume.P50), ms(d.Resume.P99), ms(d.Resume.Max), d.AllResumedSeconds)
	}
	if s := r.Storm; s != nil {
		row("storm", "%d streams dropped, %d events missed per topic (%d deliveries)", s.Connections, s.MissedPerTopic, s.Expected)
		row("  reconnected", "%.2f s", s.ReconnectSeconds)
		state := "recovered"
		if !s.Recovered {
			state = "NOT recovered"
		}
		row("  "+state, "%.2f s, %d lost, %d duplicates", s.RecoverySeconds, s.Lost, s.Duplicates)
	}
	if c := r.Compare; c != nil {
		fmt.Fprintf(tw, "\n\tSSE\tpolling every %gs\n", c.Interval)
		cmp := func(name string, f func(Mode) string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", name, f(c.SSE), f(c.Polling)) }
		cmp("requests/s", func(m Mode) string { return fmt.Sprintf("%.0f", m.RequestsPerSec) })
		cmp("bytes/s", func(m Mode) string { return fmt.Sprintf("%.0f", m.BytesPerSec) })
		cmp("server CPU", func(m Mode) string { return fmt.Sprintf("%.2f s (%.0f%% of a core)", m.ServerCPU, 100*m.ServerCores) })
		cmp("median staleness", func(m Mode) string { return ms(m.Staleness.P50) })
		cmp("p99 staleness", func(m Mode) string { return ms(m.Staleness.P99) })
		cmp("updates seen", func(m Mode) string { return fmt.Sprintf("%d", m.Updates) })
		cmp("errors", func(m Mode) string { return fmt.Sprintf("%d", m.Errors) })
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	return tw.Flush()
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
