// Package bench is the load tool behind `herald bench`: it opens many SSE
// streams from many loopback source addresses, publishes numbered and
// timestamped events at a set rate, and reports connect time, delivery rate,
// publish-to-receive latency, loss and duplicates per stream, a reconnect
// storm's recovery, and the server's memory and CPU. It speaks plain SSE, so
// it measures other hubs too (see Config.SubscribeTemplate).
package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Config describes one run. Zero values take the defaults in brackets.
type Config struct {
	// URL is the base URL of a running Herald, e.g. http://127.0.0.1:8080.
	// When empty, Run starts Exe serve on a free loopback port and stops it
	// at the end.
	URL string
	// Key is the publish key for URL.
	Key string
	// PID is the server's process id, to read its memory and CPU from
	// /proc; without it they come from URL/metrics.
	PID int
	// Exe is the herald executable to start when URL is empty; ExeEnv is
	// added to its environment and ServerArgs to `serve`'s flags.
	Exe        string
	ExeEnv     []string
	ServerArgs []string

	Connections int           // streams [100]
	Layout      Layout        // topic per stream [shared]
	Rate        float64       // events published per second over all topics
	Duration    time.Duration // publishing time [10s]
	Tick        time.Duration // events come due in ticks this far apart [10ms]
	Pad         int           // extra bytes in each event's payload

	Sources            int           // loopback source addresses 127.0.0.1.. [250]; -1: the kernel picks
	ConnectConcurrency int           // connection attempts in flight [256]
	Publishers         int           // publishing connections [4]
	Batch              int           // events per publish request at most [1000]; a template publishes one
	Settle             time.Duration // pause after connecting before the idle RSS reading [1s]
	Drain              time.Duration // wait for late events after publishing, at most [10s]

	// Storm drops every stream at once after the publishing phase, publishes
	// StormMissed events per topic [100] while they are down, and reconnects
	// them all with their last event id.
	Storm       bool
	StormMissed int
	StormLimit  time.Duration // how long recovery may take before it is reported incomplete [60s]

	// Compare, when "polling", follows the SSE run with the same N users
	// polling PollTemplate ({topic} replaced) every PollInterval [500ms]
	// while the same events are published, and compares the two.
	Compare      string
	PollTemplate string
	PollInterval time.Duration

	// SubscribeTemplate, when set, is the stream URL of any SSE server, with
	// {topic} replaced by the topic (query-escaped); Publish then says how to
	// publish to it. Both default to Herald's API at URL.
	SubscribeTemplate string
	Publish           *HTTPTemplate
	// MetricsURL is read for the server's RSS and CPU when PID is 0
	// [URL/metrics for Herald].
	MetricsURL string
	// Header is sent with every stream request (e.g. Authorization).
	Header http.Header

	// HTTP2, when H2C or H2TLS, opens the streams over HTTP/2 as a browser
	// does: StreamsPerConn [100] streams share each connection, so N streams
	// use ceil(N/StreamsPerConn) connections. H2C is cleartext HTTP/2 to an
	// http:// URL; H2TLS is h2 by ALPN to an https:// URL, and a server the
	// bench starts itself then serves a throwaway self-signed certificate.
	// Publishes stay HTTP/1.1 in every mode.
	HTTP2          string
	StreamsPerConn int
	// TLS is the client configuration for https:// URLs: streams, publishes
	// and metrics. Nil verifies against the system roots.
	TLS *tls.Config

	// Progress receives one line per phase; nil discards them.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if c.Connections <= 0 {
		c.Connections = 100
	}
	if c.Layout.Kind == "" {
		c.Layout = Layout{Kind: "shared"}
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = 10 * time.Millisecond
	}
	if c.Sources == 0 {
		c.Sources = 250
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 256
	}
	if c.Publishers <= 0 {
		c.Publishers = 4
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Settle == 0 {
		c.Settle = time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	if c.StormMissed <= 0 {
		c.StormMissed = 100
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 500 * time.Millisecond
	}
	if c.StormLimit <= 0 {
		c.StormLimit = 60 * time.Second
	}
	if c.StreamsPerConn <= 0 {
		c.StreamsPerConn = 100
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

func (c *Config) validate() error {
	if c.Rate < 0 {
		return errors.New("rate must not be negative")
	}
	if c.URL == "" && c.Exe == "" && c.SubscribeTemplate == "" {
		return errNoServer
	}
	if c.SubscribeTemplate != "" && c.Publish == nil {
		return errors.New("a subscribe template needs a publish template")
	}
	switch c.Compare {
	case "":
	case "polling":
		if c.PollTemplate == "" {
			return errors.New("--compare polling needs a poll URL template ({topic} replaced) that answers a topic's latest event: " +
				"Herald has no such GET endpoint, so point it at the application endpoint your users would poll")
		}
	default:
		return fmt.Errorf("compare %q: only polling is supported", c.Compare)
	}
	switch c.HTTP2 {
	case "", H2C, H2TLS:
	default:
		return fmt.Errorf("http2 %q: want h2c or tls", c.HTTP2)
	}
	if c.Sources < -1 || c.Sources > 254 {
		return fmt.Errorf("sources must be 1..254 or -1, not %d", c.Sources)
	}
	return nil
}

// Result is what a run measured. Latencies are in milliseconds, memory in
// bytes, CPU in seconds unless the name says otherwise.
type Result struct {
	Target      string  `json:"target"`
	Layout      string  `json:"layout"`
	Topics      int     `json:"topics"`
	Connections int     `json:"connections"`
	Rate        float64 `json:"rate"`
	Duration    float64 `json:"duration_seconds"`

	// Protocol is the streams': HTTP/1.1, h2c or h2 (TLS). TCPConnections
	// carried them: one each over HTTP/1.1; over HTTP/2 the ones dialled,
	// reconnections included.
	Protocol       string `json:"protocol"`
	TCPConnections int64  `json:"tcp_connections"`

	ConnectErrors  int         `json:"connect_errors"`
	ConnectError   string      `json:"connect_error,omitempty"`
	ConnectSeconds float64     `json:"connect_seconds"`
	ConnectsPerSec float64     `json:"connects_per_sec"`
	ConnectLatency Percentiles `json:"connect_latency_ms"`

	Published       int64       `json:"published"`
	PublishErrors   int64       `json:"publish_errors"`
	PublishError    string      `json:"publish_error,omitempty"`
	PublishedPerSec float64     `json:"published_per_sec"`
	PublishRequests uint64      `json:"publish_requests"`
	PublishLatency  Percentiles `json:"publish_request_ms"` // round trip of one publish request`

	Expected            int64       `json:"expected"`
	Delivered           int64       `json:"delivered"`
	DeliveredPerSec     float64     `json:"delivered_per_sec"`
	Lost                int64       `json:"lost"`
	Duplicates          int64       `json:"duplicates"`
	ConnectionsWithLoss int         `json:"connections_with_loss"`
	Reconnects          int64       `json:"reconnects"`
	Gaps                int64       `json:"gaps"`
	Latency             Percentiles `json:"latency_ms"`

	ServerRSS        RSS     `json:"server_rss_bytes"`
	RSSPerConnection float64 `json:"rss_per_connection_bytes"`
	ServerCPU        float64 `json:"server_cpu_seconds"`
	CPUPerDelivery   float64 `json:"server_cpu_us_per_delivery"`
	ClientCPU        float64 `json:"client_cpu_seconds"`
	UsageSource      string  `json:"usage_source,omitempty"`

	Drops   *DropResult  `json:"drops,omitempty"`
	Storm   *StormResult `json:"storm,omitempty"`
	Compare *Comparison  `json:"compare,omitempty"`

	Timeline  []Second `json:"timeline,omitempty"`
	Histogram []Bucket `json:"-"`
	Notes     []string `json:"notes,omitempty"`
}

// RSS is the server's resident memory before connecting, once every stream
// is connected and idle, and at the end of the publishing phase.
type RSS struct {
	Before int64 `json:"before"`
	Idle   int64 `json:"idle"`
	After  int64 `json:"after"`
}

// DropResult is how the streams whose connection ended while publishing
// (and draining) came back: a node that died or restarted, a proxy that cut
// them. Only each stream's first drop counts. A stream is back once it has
// response headers again, and resumed once it has every event its topic had
// accepted when it was back. Times are from the drop.
type DropResult struct {
	Streams           int         `json:"streams"`
	Back              int         `json:"back"`
	Resumed           int         `json:"resumed"`
	Reconnect         Percentiles `json:"reconnect_ms"`        // drop → headers again, per stream
	Resume            Percentiles `json:"resume_ms"`           // drop → resumed, per stream
	AllBackSeconds    float64     `json:"all_back_seconds"`    // first drop → the last one back
	AllResumedSeconds float64     `json:"all_resumed_seconds"` // first drop → the last one resumed
}

// StormResult is a reconnect storm's outcome.
type StormResult struct {
	Connections      int     `json:"connections"`
	MissedPerTopic   int     `json:"missed_per_topic"`
	Published        int64   `json:"published"`
	Expected         int64   `json:"expected"`
	ReconnectSeconds float64 `json:"reconnect_seconds"` // until every stream was connected again
	RecoverySeconds  float64 `json:"recovery_seconds"`  // until every stream had every missed event
	Recovered        bool    `json:"recovered"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
}
