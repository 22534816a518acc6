// Package client is Herald's Go client.
//
// A Stream subscribes: it reads Server-Sent Events and reconnects with the
// last event ID, so it resumes with no loss when the server closes the
// stream, fails or restarts.
//
// A Publisher publishes: it retries what may succeed later (network errors,
// 408, 429 and 5xx, after the server's Retry-After) with the same idempotency
// key, so an event whose answer was lost is stored once.
package client

import (
	"net/http"
	"time"

	"github.com/herald-hub/herald/sse"
)

// Event is one event received from the stream.
type Event = sse.Event

// ConnectedType is the type of the event that opens every Herald stream. It
// carries the starting cursor, which the Stream keeps as its LastEventID; it
// is not delivered on Events.
const ConnectedType = "herald.connected"

// Config configures a Stream. Only URL is required.
type Config struct {
	// URL is the full events URL, e.g.
	// http://127.0.0.1:8080/v1/events?topic=a&topic=b.
	URL string
	// LastEventID is the resume point for the first connection.
	LastEventID string
	// Header is sent with every request, e.g. Authorization.
	Header http.Header
	// HTTPClient defaults to a client without an overall Timeout, since
	// streams are long.
	HTTPClient *http.Client
	// MinBackoff and MaxBackoff bound the exponential backoff, with full
	// jitter, between failed attempts; defaults 100ms and 30s. A server's
	// retry: field replaces MinBackoff as the base delay, never below it.
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout, when set, drops and reconnects a stream on which nothing,
	// not even a heartbeat comment, arrived for that long: a half-open TCP
	// connection would otherwise wait forever. Herald sends heartbeats every
	// 15s by default.
	IdleTimeout time.Duration
	// OnState, when set, is called from the Stream's goroutine on every
	// change of state, with the cause for Disconnected and Stopped. It must
	// not block.
	OnState func(State, error)
}

// State is the state of a Stream's connection.
type State int

const (
	Connecting   State = iota // a request is being made
	Connected                 // the server answered with an event stream
	Disconnected              // the connection ended or failed; the Stream will reconnect
	Stopped                   // the Stream stopped for good
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

const (
	defaultMinBackoff = 100 * time.Millisecond
	defaultMaxBackoff = 30 * time.Second
)

func (c *Config) setDefaults() {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = defaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = defaultMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
}
