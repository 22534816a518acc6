package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Run measures one server as cfg says. It stops every stream, publisher and
// server it started before it returns.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(cfg.Progress, format+"\n", args...) }
	n := cfg.Connections
	res := &Result{Layout: cfg.Layout.String(), Topics: cfg.Layout.Topics(n), Connections: n,
		Rate: cfg.Rate, Duration: cfg.Duration.Seconds()}
	if note := raiseNoFile(uint64(n) + 512); note != "" {
		res.Notes = append(res.Notes, note)
		logf("warning: %s", note)
	}

	res.Protocol = map[string]string{"": "HTTP/1.1", H2C: "h2c", H2TLS: "h2 (TLS)"}[cfg.HTTP2]
	base, key, pid := strings.TrimRight(cfg.URL, "/"), cfg.Key, cfg.PID
	if base == "" && cfg.SubscribeTemplate == "" {
		args, childTLS := cfg.ServerArgs, (*tls.Config)(nil)
		if cfg.HTTP2 == H2TLS {
			dir, err := os.MkdirTemp("", "herald-bench-tls-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			certFile, keyFile, conf, err := selfSigned(dir)
			if err != nil {
				return nil, fmt.Errorf("self-signed certificate: %w", err)
			}
			args = append(slices.Clip(args), "-tls-cert", certFile, "-tls-key", keyFile)
			cfg.TLS, childTLS = conf, conf
		}
		logf("starting %s serve", cfg.Exe)
		ch, err := startChild(ctx, cfg.Exe, cfg.ExeEnv, args, childTLS)
		if err != nil {
			return nil, err
		}
		defer ch.stop()
		base, key, pid = ch.url, ch.key, ch.pid()
		logf("herald serve is up at %s (pid %d)", base, pid)
	}
	res.Target = base
	if cfg.SubscribeTemplate != "" {
		res.Target = cfg.SubscribeTemplate
	}
	topics := topicNames(cfg.Layout, n, fmt.Sprintf("bench/%08x", rand.Uint32()))
	t, err := newTarget(cfg, base, key, topics)
	if err != nil {
		return nil, err
	}
	defer t.client.CloseIdleConnections()
	pr := &probe{pid: pid, metricsURL: cfg.MetricsURL, client: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.TLS}}}
	defer pr.client.CloseIdleConnections()
	if pr.metricsURL == "" && cfg.SubscribeTemplate == "" {
		pr.metricsURL = base + "/metrics"
	}
	res.UsageSource = pr.source()
	readUsage := func(what string) usage {
		u, err := pr.read(ctx)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("server usage %s: %v", what, err))
		}
		return u
	}
	before := readUsage("before connecting")

	f, err := newFleet(fleetConfig{
		urls: t.subscribeURL, topicOf: cfg.Layout.TopicOf, n: n,
		sources: cfg.Sources, concurrency: cfg.ConnectConcurrency, header: cfg.Header,
		http2: cfg.HTTP2, perConn: cfg.StreamsPerConn, tls: cfg.TLS,
	})
	if err != nil {
		return nil, err
	}
	streamCtx, stopStreams := context.WithCancel(ctx)
	defer f.wait()
	defer stopStreams()

	// Connect.
	logf("connecting %d streams (%s, %s, %d topics)", n, res.Protocol, cfg.Layout, res.Topics)
	results := make(chan connectResult, n)
	connStart := time.Now()
	f.start(streamCtx, results)
	var connHist Histogram
	for range n {
		r := <-results
		if r.err != nil {
			res.ConnectErrors++
			if res.ConnectError == "" {
				res.ConnectError = r.err.Error()
			}
			continue
		}
		connHist.Record(r.took.Microseconds())
	}
	res.ConnectSeconds = time.Since(connStart).Seconds()
	res.TCPConnections = int64(n - res.ConnectErrors)
	if f.h2 != nil {
		res.TCPConnections = f.dials.Load()
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if res.ConnectErrors == n {
		return nil, fmt.Errorf("no stream connected: %s", res.ConnectError)
	}
	res.ConnectsPerSec = float64(n-res.ConnectErrors) / res.ConnectSeconds
	res.ConnectLatency = connHist.Summary()
	logf("connected %d in %.2fs (%d failed)", n-res.ConnectErrors, res.ConnectSeconds, res.ConnectErrors)
	if !sleep(ctx, cfg.Settle) {
		return nil, ctx.Err()
	}
	idle := readUsage("when idle")

	// Publish.
	p := newPump(t.pub, len(topics), cfg.Publishers)
	pubStart := time.Now()
	rec := newRecorder(pubStart, int((cfg.Duration+cfg.Drain)/time.Second)+2)
	f.rec.Store(rec)
	cpu0, self0 := readUsage("before publishing"), selfCPU()
	var bytes0 int64
	for _, s := range f.streams {
		bytes0 += s.bytes.Load()
	}
	f.owed = p.expected
	f.tracking.Store(true)
	logf("publishing %.0f events/s for %v", cfg.Rate, cfg.Duration)
	p.paced(ctx, cfg.Rate, cfg.Duration, cfg.Tick)
	pubTook := time.Since(pubStart)
	complete := drain(ctx, f, p, cfg.Drain)
	f.tracking.Store(false)
	res.Drops = drops(f)
	if d := res.Drops; d != nil {
		logf("%d streams dropped while publishing: %d back, all within %.2fs of the first drop; %d resumed, all within %.2fs",
			d.Streams, d.Back, d.AllBackSeconds, d.Resumed, d.AllResumedSeconds)
	}
	sseSpan := time.Since(pubStart)
	var sseBytes int64
	for _, s := range f.streams {
		sseBytes += s.bytes.Load()
	}
	sseBytes -= bytes0
	after := readUsage("after publishing")
	self1 := selfCPU()
	f.rec.Store(nil)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if !complete {
		logf("not every event arrived within %v of the last publish", cfg.Drain)
	}

	res.Published, res.PublishErrors = p.published.Load(), p.failed.Load()
	if err := p.err(); err != nil {
		res.PublishError = err.Error()
	}
	res.PublishedPerSec = float64(res.Published) / pubTook.Seconds()
	res.PublishRequests, res.PublishLatency = p.requests.Count(), p.requests.Summary()
	var lastRecv int64
	for _, s := range f.streams {
		if s.connects.Load() == 0 {
			continue
		}
		exp, got := p.expected(s.topic), s.distinct.Load()
		res.Expected += exp
		res.Delivered += got + s.dups.Load()
		res.Duplicates += s.dups.Load()
		res.Reconnects += s.connects.Load() - 1
		res.Gaps += s.gaps.Load()
		if got < exp {
			res.Lost += exp - got
			res.ConnectionsWithLoss++
		}
		lastRecv = max(lastRecv, s.lastRecvNS.Load())
	}
	if span := time.Duration(lastRecv - pubStart.UnixNano()); res.Delivered > 0 && span > 0 {
		res.DeliveredPerSec = float64(res.Delivered) / span.Seconds()
	}
	res.Latency = rec.all.Summary()
	res.Timeline = rec.timeline()
	res.Histogram = rec.all.Buckets()
	res.ServerRSS = RSS{Before: before.rss, Idle: idle.rss, After: after.rss}
	if up := n - res.ConnectErrors; up > 0 && idle.rss > 0 && before.rss > 0 {
		res.RSSPerConnection = float64(idle.rss-before.rss) / float64(up)
	}
	if after.cpu > 0 {
		res.ServerCPU = after.cpu - cpu0.cpu
		if res.Delivered > 0 {
			res.CPUPerDelivery = res.ServerCPU * 1e6 / float64(res.Delivered)
		}
	}
	res.ClientCPU = self1 - self0
	logf("delivered %d of %d (%d lost, %d duplicates)", res.Delivered, res.Expected, res.Lost, res.Duplicates)

	if cfg.Storm {
		res.Storm = storm(ctx, f, p, cfg, logf)
	}
	if cfg.Compare == "polling" {
		sse := Mode{Staleness: res.Latency, ServerCPU: res.ServerCPU, ServerCores: res.ServerCPU / sseSpan.Seconds(),
			Bytes: sseBytes, Updates: res.Delivered - res.Duplicates, Requests: res.Reconnects}
		sse.RequestsPerSec, sse.BytesPerSec = float64(sse.Requests)/sseSpan.Seconds(), float64(sse.Bytes)/sseSpan.Seconds()
		stopStreams()
		f.wait()
		urls, err := pollURLs(cfg.PollTemplate, cfg.Layout, n, topics)
		if err != nil {
			return nil, err
		}
		logf("polling: %d users every %v while publishing %.0f events/s for %v", n, cfg.PollInterval, cfg.Rate, cfg.Duration)
		poll, err := comparePolling(ctx, cfg, p, urls, pr)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("server usage while polling: %v", err))
		}
		res.Compare = &Comparison{Interval: cfg.PollInterval.Seconds(), SSE: sse, Polling: poll}
	}
	return res, nil
}

// drain waits until every connected stream has every accepted event of its
// topic, or until limit passes without any new delivery. It reports whether
// all arrived.
func drain(ctx context.Context, f *fleet, p *pump, limit time.Duration) bool {
	var want int64
	for _, s := range f.streams {
		if s.connects.Load() > 0 {
			want += p.expected(s.topic)
		}
	}
	var prev int64 = -1
	lastProgress := time.Now()
	for {
		var got int64
		for _, s := range f.streams {
			if s.connects.Load() > 0 {
				got += min(s.distinct.Load(), p.expected(s.topic))
			}
		}
		if got >= want {
			return true
		}
		if got != prev {
			prev, lastProgress = got, time.Now()
		} else if time.Since(lastProgress) > limit {
			return false
		}
		if !sleep(ctx, 10*time.Millisecond) {
			return false
		}
	}
}

// drops reports the streams that dropped while the fleet tracked drops, or
// nil when none did.
func drops(f *fleet) *DropResult {
	var r DropResult
	var reconnect, resume Histogram
	var first, lastBack, lastResumed int64
	for _, s := range f.streams {
		drop := s.dropNS.Load()
		if drop == 0 {
			continue
		}
		r.Streams++
		if first == 0 || drop < first {
			first = drop
		}
		if back := s.backNS.Load(); back != 0 {
			r.Back++
			reconnect.Record((back - drop) / 1000)
			lastBack = max(lastBack, back)
		}
		if done := s.resumedNS.Load(); done != 0 {
			r.Resumed++
			resume.Record((done - drop) / 1000)
			lastResumed = max(lastResumed, done)
		}
	}
	if r.Streams == 0 {
		return nil
	}
	r.Reconnect, r.Resume = reconnect.Summary(), resume.Summary()
	if lastBack > 0 {
		r.AllBackSeconds = float64(lastBack-first) / 1e9
	}
	if lastResumed > 0 {
		r.AllResumedSeconds = float64(lastResumed-first) / 1e9
	}
	return &r
}

// sleep waits d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// target is where streams and publishes go.
type target struct {
	subscribeURL func(topic int) string
	pub          publisher
	client       *http.Client // the publishers'; its idle connections are closed at the end
}

func newTarget(cfg Config, base, key string, topics []string) (*target, error) {
	client := newPublishClient(cfg.Publishers, cfg.TLS)
	if cfg.SubscribeTemplate != "" {
		tmpl := cfg.SubscribeTemplate
		if !strings.Contains(tmpl, "{topic}") {
			return nil, fmt.Errorf("subscribe template %q has no {topic}", tmpl)
		}
		return &target{
			subscribeURL: func(t int) string { return strings.ReplaceAll(tmpl, "{topic}", url.QueryEscape(topics[t])) },
			pub:          &templatePublisher{client: client, tmpl: *cfg.Publish, topics: topics, pad: cfg.Pad},
			client:       client,
		}, nil
	}
	t := &target{client: client, subscribeURL: func(t int) string { return base + "/v1/events?topic=" + url.QueryEscape(topics[t]) }}
	if cfg.Publish != nil {
		t.pub = &templatePublisher{client: client, tmpl: *cfg.Publish, topics: topics, pad: cfg.Pad}
	} else {
		t.pub = &heraldPublisher{client: client, url: base + "/v1/publish", key: key, topics: topics, pad: cfg.Pad, batch: cfg.Batch}
	}
	return t, nil
}
