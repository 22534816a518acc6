package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Comparison sets SSE against polling for the same users and updates.
type Comparison struct {
	Interval float64 `json:"poll_interval_seconds"`
	SSE      Mode    `json:"sse"`
	Polling  Mode    `json:"polling"`
}

// Mode is what one way of delivering updates cost and how fresh it kept the
// users. Requests and bytes are those of the subscribing side: publishing is
// the same in both.
type Mode struct {
	Requests       int64       `json:"requests"`
	RequestsPerSec float64     `json:"requests_per_sec"`
	Bytes          int64       `json:"bytes"`
	BytesPerSec    float64     `json:"bytes_per_sec"`
	ServerCPU      float64     `json:"server_cpu_seconds"`
	ServerCores    float64     `json:"server_cpu_cores"` // CPU seconds per second of the phase
	Staleness      Percentiles `json:"staleness_ms"`     // update published → seen by the user
	Updates        int64       `json:"updates_seen"`
	Errors         int64       `json:"errors"`
}

// pollers are N users asking for their topic's latest state every interval,
// each over its own keep-alive connection from the fleet's source addresses.
type pollers struct {
	urls     []string // per user
	interval time.Duration
	client   *http.Client

	stale    Histogram
	requests atomic.Int64
	bytes    atomic.Int64
	updates  atomic.Int64
	errors   atomic.Int64
}

func newPollers(urls []string, interval time.Duration, sources int) *pollers {
	tr := &http.Transport{
		MaxIdleConnsPerHost: len(urls),
		MaxIdleConns:        len(urls),
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	var next atomic.Uint32
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		if sources > 0 {
			i := next.Add(1)
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+int(i)%sources))}
			network = "tcp4"
		}
		return d.DialContext(ctx, network, addr)
	}
	return &pollers{urls: urls, interval: interval, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// run polls until ctx ends. Each user starts at a random point of the
// interval, so polls are spread evenly as they would be across real users.
func (p *pollers) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, u := range p.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.user(ctx, u)
		}()
	}
	wg.Wait()
	p.client.CloseIdleConnections()
}

func (p *pollers) user(ctx context.Context, u string) {
	if !sleep(ctx, rand.N(p.interval)) {
		return
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	var last uint64
	first := true
	for {
		p.poll(ctx, u, &last, first)
		first = false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll asks once; the first answer only sets the baseline, as it may hold an
// update from before the phase.
func (p *pollers) poll(ctx context.Context, u string, last *uint64, first bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		p.errors.Add(1)
		return
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			p.errors.Add(1)
		}
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	now := time.Now()
	p.requests.Add(1)
	p.bytes.Add(int64(len(body) + headerBytes(resp)))
	if err != nil || resp.StatusCode != http.StatusOK {
		if resp.StatusCode != http.StatusNotFound { // no state yet is not an error
			p.errors.Add(1)
		}
		return
	}
	if seq, ts, ok := parsePayload(string(body)); ok && seq > *last {
		*last = seq
		if first {
			return
		}
		p.updates.Add(1)
		p.stale.Record((now.UnixNano() - ts) / 1000)
	}
}

// headerBytes estimates the size of a response's status line and headers.
func headerBytes(resp *http.Response) int {
	n := len("HTTP/1.1 200 OK\r\n\r\n")
	for k, vs := range resp.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// pollURLs returns each user's poll URL from a template holding {topic}.
func pollURLs(tmpl string, l Layout, n int, topics []string) ([]string, error) {
	if !strings.Contains(tmpl, "{topic}") {
		return nil, fmt.Errorf("poll URL template %q has no {topic}", tmpl)
	}
	urls := make([]string, n)
	for i := range urls {
		urls[i] = strings.ReplaceAll(tmpl, "{topic}", url.QueryEscape(topics[l.TopicOf(i)]))
	}
	return urls, nil
}

// comparePolling runs the polling phase: N users poll while events are
// published as in the SSE phase (sequence numbers continue), and it reads the
// server's CPU over the phase.
func comparePolling(ctx context.Context, cfg Config, pub *pump, urls []string, pr *probe) (Mode, error) {
	pl := newPollers(urls, cfg.PollInterval, max(cfg.Sources, 0))
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pl.run(pctx)
	}()
	// Let every user make a first poll before publishing, as SSE streams are
	// connected first.
	sleep(ctx, cfg.PollInterval)
	cpu0, _ := pr.read(ctx)
	req0, bytes0 := pl.requests.Load(), pl.bytes.Load()
	start := time.Now()
	pub.paced(ctx, cfg.Rate, cfg.Duration, cfg.Tick)
	// One more interval lets the last updates be seen.
	sleep(ctx, cfg.PollInterval)
	took := time.Since(start).Seconds()
	cpu1, err := pr.read(ctx)
	stop()
	<-done
	m := Mode{
		Requests:  pl.requests.Load() - req0,
		Bytes:     pl.bytes.Load() - bytes0,
		Staleness: pl.stale.Summary(),
		Updates:   pl.updates.Load(),
		Errors:    pl.errors.Load(),
	}
	m.RequestsPerSec, m.BytesPerSec = float64(m.Requests)/took, float64(m.Bytes)/took
	if err == nil && cpu1.cpu > 0 {
		m.ServerCPU = cpu1.cpu - cpu0.cpu
		m.ServerCores = m.ServerCPU / took
	}
	return m, err
}
