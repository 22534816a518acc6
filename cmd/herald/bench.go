package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/herald-hub/herald/internal/bench"
)

const benchUsage = `Usage: herald bench [flags]

Opens many SSE streams to a Herald (or any SSE server), publishes numbered,
timestamped events at a rate and reports connect time, deliveries per second,
latency, loss, duplicates and the server's memory and CPU. Without -url it
starts its own herald serve on a free loopback port. See docs/bench.md.

Exit status: 0 after a run; 1 when the run fails; 2 on a bad command line.

Flags:
`

// benchCmd runs `herald bench`.
func benchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herald bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var (
		cfg       bench.Config
		layout    = fs.String("layout", "shared", "topic layout: shared (one topic), per-user (one each) or rooms:K (K streams per topic)")
		asJSON    = fs.Bool("json", false, "print the result as JSON")
		svg       = fs.String("svg", "", "write a latency chart (SVG) to this file")
		headers   multiFlag
		pubHeader multiFlag
	)
	fs.StringVar(&cfg.URL, "url", "", "base URL of a running Herald; empty starts a herald serve child")
	fs.StringVar(&cfg.Key, "key", getenv("HERALD_PUBLISH_KEY"), "publish key for -url (default $HERALD_PUBLISH_KEY)")
	fs.IntVar(&cfg.PID, "pid", 0, "server pid, to read RSS and CPU from /proc (else from /metrics)")
	fs.IntVar(&cfg.Connections, "connections", 1000, "SSE streams to open")
	fs.Float64Var(&cfg.Rate, "rate", 10, "events published per second, over all topics")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to publish")
	fs.IntVar(&cfg.Pad, "payload", 0, "extra payload bytes per event")
	fs.IntVar(&cfg.Sources, "sources", 250, "loopback source addresses 127.0.0.1..127.0.0.N to spread streams over (0: let the kernel pick)")
	fs.IntVar(&cfg.ConnectConcurrency, "connect-concurrency", 256, "connection attempts in flight")
	fs.IntVar(&cfg.Publishers, "publishers", 4, "publishing HTTP connections")
	fs.DurationVar(&cfg.Tick, "tick", 10*time.Millisecond, "publishing comes due in ticks this far apart: rate×tick events at once (1ms spreads single-event publishes the way independent publishers do)")
	fs.IntVar(&cfg.Batch, "batch", 1000, "events per publish request at most (1: one event per request, as most applications publish)")
	fs.DurationVar(&cfg.Settle, "settle", time.Second, "pause after connecting before the idle RSS reading")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "after publishing, wait this long without progress for late events")
	fs.BoolVar(&cfg.Storm, "storm", false, "reconnect storm: drop every stream at once, publish while down, reconnect all with their last id")
	fs.IntVar(&cfg.StormMissed, "storm-missed", 100, "events per topic published while the storm's streams are down")
	fs.StringVar(&cfg.Compare, "compare", "", "polling: then have the same users poll -poll-url-template while the same events are published, and compare")
	fs.StringVar(&cfg.PollTemplate, "poll-url-template", "", "URL answering a topic's latest event, {topic} replaced (for -compare polling)")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", 500*time.Millisecond, "poll interval of -compare polling")
	fs.StringVar(&cfg.SubscribeTemplate, "subscribe-url-template", "", "stream URL of any SSE server, {topic} replaced (needs -publish-template)")
	fs.Var(&headers, "header", "`header` sent with every stream request, Name: value (repeatable)")
	publishTmpl := fs.String("publish-template", "", "publish to another hub: 'METHOD URL' with {topic} {data} (body: -publish-body, headers: -publish-header)")
	publishBody := fs.String("publish-body", "", "body template of -publish-template: {topic} {data} {topic_json} {data_json}")
	fs.Var(&pubHeader, "publish-header", "`header` of -publish-template, Name: value, {topic} {data} allowed (repeatable)")
	cpuProfile := fs.String("cpuprofile", "", "write the bench's own CPU profile (the load generator, not the server) to this file")
	fs.StringVar(&cfg.HTTP2, "http2", "", "open the streams over HTTP/2, many per connection: h2c (cleartext, http:// URL) or tls (https:// URL; a self-started server gets a throwaway certificate)")
	fs.IntVar(&cfg.StreamsPerConn, "streams-per-conn", 100, "HTTP/2 streams per connection (-http2)")
	insecure := fs.Bool("insecure", false, "do not verify the server's TLS certificate (https:// URLs)")
	caFile := fs.String("ca-file", "", "PEM CA certificates to verify the server's TLS certificate with (https:// URLs)")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "Prometheus endpoint for the server's RSS and CPU when -pid is not given")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald bench: unexpected arguments %q\n", fs.Args())
		return exitBadConfig
	}
	l, err := bench.ParseLayout(*layout)
	if err != nil {
		fmt.Fprintln(stderr, "herald bench:", err)
		return exitBadConfig
	}
	cfg.Layout = l
	if cfg.Sources == 0 {
		cfg.Sources = -1 // the kernel picks the source address
	}
	if len(headers) > 0 {
		cfg.Header = http.Header{}
		for _, h := range headers {
			if err := bench.ParseHeader(cfg.Header, h); err != nil {
				fmt.Fprintln(stderr, "herald bench:", err)
				return exitBadConfig
			}
		}
	}
	if *publishTmpl != "" {
		method, u, ok := strings.Cut(strings.TrimSpace(*publishTmpl), " ")
		if !ok {
			method, u = "POST", method
		}
		cfg.Publish = &bench.HTTPTemplate{Method: method, URL: strings.TrimSpace(u), Body: *publishBody, Header: http.Header{}}
		for _, h := range pubHeader {
			if err := bench.ParseHeader(cfg.Publish.Header, h); err != nil {
				fmt.Fprintln(stderr, "herald bench:", err)
				return exitBadConfig
			}
		}
	}
	if cfg.URL == "" && cfg.SubscribeTemplate == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "herald bench: cannot find the herald executable to start:", err)
			return exitFailure
		}
		cfg.Exe = exe
		cfg.ExeEnv = benchChildEnv
	}
	if cfg.TLS, err = bench.TLSConfig(*insecure, *caFile); err != nil {
		fmt.Fprintln(stderr, "herald bench:", err)
		return exitBadConfig
	}
	if err := checkBench(cfg); err != nil {
		fmt.Fprintln(stderr, "herald bench:", err)
		return exitBadConfig
	}
	cfg.Progress = stderr
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "herald bench:", err)
			return exitFailure
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "herald bench:", err)
			return exitFailure
		}
		defer pprof.StopCPUProfile()
	}

	res, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "herald bench:", err)
		return exitFailure
	}
	if *svg != "" {
		if err := writeSVG(*svg, res); err != nil {
			fmt.Fprintln(stderr, "herald bench:", err)
			return exitFailure
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return exitFailure
		}
	} else if err := bench.WriteTable(stdout, res); err != nil {
		return exitFailure
	}
	return exitOK
}

// checkBench refuses what bench.Run would refuse, and zero counts and
// durations (which it would silently replace by defaults), before anything
// starts: a bad command line exits 2 like every other bad configuration.
func checkBench(cfg bench.Config) error {
	for name, n := range map[string]int{"connections": cfg.Connections, "connect-concurrency": cfg.ConnectConcurrency,
		"publishers": cfg.Publishers, "batch": cfg.Batch, "storm-missed": cfg.StormMissed, "streams-per-conn": cfg.StreamsPerConn} {
		if n < 1 {
			return fmt.Errorf("-%s %d: want at least 1", name, n)
		}
	}
	for name, d := range map[string]time.Duration{"duration": cfg.Duration, "drain": cfg.Drain, "poll-interval": cfg.PollInterval, "tick": cfg.Tick} {
		if d <= 0 {
			return fmt.Errorf("-%s %v: want a positive duration", name, d)
		}
	}
	switch {
	case cfg.Rate < 0:
		return fmt.Errorf("-rate %v: want 0 or more", cfg.Rate)
	case cfg.Pad < 0:
		return fmt.Errorf("-payload %d: want 0 or more", cfg.Pad)
	case cfg.Sources != -1 && (cfg.Sources < 1 || cfg.Sources > 254):
		return fmt.Errorf("-sources %d: want 0 (the kernel picks) or 1..254", cfg.Sources)
	case cfg.SubscribeTemplate != "" && cfg.Publish == nil:
		return errors.New("-subscribe-url-template needs -publish-template")
	case cfg.Compare != "" && cfg.Compare != "polling":
		return fmt.Errorf("-compare %q: only polling is supported", cfg.Compare)
	case cfg.HTTP2 != "" && cfg.HTTP2 != bench.H2C && cfg.HTTP2 != bench.H2TLS:
		return fmt.Errorf("-http2 %q: want h2c or tls", cfg.HTTP2)
	case cfg.HTTP2 == bench.H2TLS && cfg.URL != "" && !strings.HasPrefix(cfg.URL, "https://"):
		return fmt.Errorf("-http2 tls needs an https:// -url, not %q", cfg.URL)
	case cfg.HTTP2 == bench.H2C && strings.HasPrefix(cfg.URL, "https://"):
		return errors.New("-http2 h2c is cleartext: use -http2 tls for an https:// -url")
	case cfg.Compare == "polling" && cfg.PollTemplate == "":
		return errors.New("-compare polling needs -poll-url-template")
	}
	return nil
}

// benchChildEnv is added to the environment of the herald serve the bench
// starts; tests set it so the test binary serves as herald.
var benchChildEnv []string

func writeSVG(path string, res *bench.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := bench.WriteSVG(f, res); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
