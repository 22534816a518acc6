// Package engine defines what Herald needs from a back end: a durable, ordered log
// per topic, fan-out of appended events to every node, and history reads for replay.
//
// Every engine (local, redis, nats, kafka) implements Engine and passes the shared
// conformance suite in engine/enginetest.
package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Position is where an event sits in its topic's log. Offsets are at least 1 and
// strictly increase per topic within an Epoch, not necessarily by one: an engine
// whose log is shared by many topics (a Kafka partition, a JetStream stream)
// leaves holes in each. Event.Prev says where the previous event of the topic is,
// so a reader can tell a hole in the offsets from a lost event. A new Epoch means
// the topic's history was lost (store wiped, stream deleted), so offsets of
// different epochs are not comparable. The zero Offset of an epoch means "before
// the first event". A cursor at offset X has every event of the topic with an
// offset up to X.
type Position struct {
	Epoch  string
	Offset uint64
}

// String renders the position for logs and JSON answers.
func (p Position) String() string { return fmt.Sprintf("%s:%d", p.Epoch, p.Offset) }

// Event is one published event. Topic, Type, Data and ID are set by the
// publisher; Pos, Prev and Time are assigned by the engine on Append.
type Event struct {
	Topic string
	Type  string
	Data  []byte
	// ID is the publisher's idempotency key, empty for none: an Append of an
	// event whose ID was appended to the same topic within the engine's
	// idempotency window appends nothing and returns the first position.
	ID string
	// Pos is where the engine put the event.
	Pos Position
	// Prev is the offset of the previous event of the topic in Pos.Epoch, 0
	// when there was none: no event of the topic has an offset in
	// (Prev, Pos.Offset). Dense engines set Pos.Offset-1.
	Prev uint64
	Time time.Time
}

// Engine is a durable, ordered log per topic with fan-out to every node.
//
// All methods are safe for concurrent use. After Close, every method returns
// ErrClosed and no subscription callback runs any more.
type Engine interface {
	// Append makes the events durable and returns their positions, in order.
	// Events of one call that share a topic get increasing offsets in call
	// order, with nothing of that topic in between. It is atomic per topic:
	// the events of one topic are all appended or none is. A call across
	// topics may fail for some topics only: it then returns the positions of
	// the events appended (the zero Position for the others) and an
	// *AppendError naming the topics that failed. Any other error means
	// nothing was appended. Invalid topics (ValidateTopic) reject the whole
	// call with ErrInvalidTopic. A ctx already done appends nothing and
	// returns ctx.Err().
	Append(ctx context.Context, events []Event) ([]Position, error)

	// Subscribe calls fn for every event appended to topic from now on, by any
	// engine instance sharing the back end (any node), in position order. fn runs
	// on the engine's goroutine and must not block. The returned cancel stops
	// delivery; after it returns neither fn nor lost is called again.
	//
	// Delivery is best effort. A subscriber that receives an event whose Prev
	// is past what it has fills the hole with Read. An event lost with no later
	// one to reveal it (the last event of a quiet topic) cannot be seen that
	// way: an engine that may lose fan-out (a reconnect, a slow consumer, a
	// leader change) calls lost when it may have, and the subscriber re-reads
	// history after what it has. lost runs like fn and must not block; it may
	// be nil. An engine that cannot lose fan-out never calls it.
	//
	// "From now on" means every event whose Append starts after Subscribe has
	// returned (networked engines return only once the subscription is active),
	// and every event after the Head read once Subscribe has returned: the hub
	// starts a new stream at that Head and relies on live delivery for the rest.
	// cancel is idempotent. It may wait for a running fn, so fn must not call
	// cancel or Subscribe itself.
	Subscribe(topic string, fn func(Event), lost func()) (cancel func(), err error)

	// Read returns up to limit events of topic with offsets after `after`, in order.
	// When it cannot vouch that every such event is retained (after is older
	// than the oldest retained event's Prev, or from another epoch), it returns
	// a *GapError (errors.Is(err, ErrGap)) whose Resume is {current epoch, the
	// oldest retained event's Prev}.
	//
	// The zero Position{} reads from the oldest retained event and never reports
	// a gap; a Position with an empty Epoch and a non-zero Offset is from another
	// epoch. A cursor at or beyond the head reads nothing, without error. limit
	// must be positive; a short result does not mean the end, an empty one does.
	Read(ctx context.Context, topic string, after Position, limit int) ([]Event, error)

	// Head is the position of the topic's last event (Offset 0 when it has none):
	// the starting cursor of a new stream. Reading after the Head of an empty
	// topic later returns its first events without a gap.
	Head(ctx context.Context, topic string) (Position, error)

	// Close releases the engine. Pending appends finish first.
	Close() error
}

// WriteChecker is implemented by an engine that knows, without appending,
// when it refuses appends (a full disk, a store opened read-only), so that
// readiness can turn a load balancer's publishes away before they fail.
type WriteChecker interface {
	// CanWrite returns nil while appends are accepted and delivered, else an
	// error matching ErrUnavailable that says why (ErrReadOnly when the
	// store refuses appends), or ErrClosed.
	CanWrite() error
}

// Metrics is implemented by an engine that counts events of its own
// (reconnects, lost calls, ...) for monitoring. The server exports each
// counter as herald_engine_<Name>_total.
type Metrics interface {
	// Metrics returns the engine's counters, always the same names in the
	// same order; each Value only grows. It must be cheap and safe to call
	// concurrently, also after Close.
	Metrics() []Counter
}

// Counter is one counter of an engine's Metrics.
type Counter struct {
	Name  string // lowercase words joined by underscores, e.g. "reconnects"
	Help  string // one sentence for the metric's HELP
	Value uint64
}

var (
	// ErrGap reports that events after a position are no longer retained.
	ErrGap = errors.New("engine: history gap")
	// ErrClosed is returned by an engine after Close.
	ErrClosed = errors.New("engine: closed")
	// ErrUnavailable wraps back-end failures: the event was not appended.
	ErrUnavailable = errors.New("engine: unavailable")
	// ErrReadOnly is the ErrUnavailable of a store that answers reads but
	// refuses appends until it recovers by itself (a full disk, a
	// read-only file system).
	ErrReadOnly = fmt.Errorf("%w: read-only", ErrUnavailable)
)

// AppendError reports an Append across topics that failed for some of them:
// the events of Topics were not appended; the others were.
type AppendError struct {
	Topics map[string]error
}

func (e *AppendError) Error() string {
	topics := slices.Sorted(maps.Keys(e.Topics))
	if len(topics) == 0 {
		return "engine: append failed for no topic"
	}
	first := topics[0]
	if len(topics) == 1 {
		return fmt.Sprintf("engine: append to %q failed: %v", first, e.Topics[first])
	}
	return fmt.Sprintf("engine: append failed for %d topics, first %q: %v", len(topics), first, e.Topics[first])
}

// Unwrap lets errors.Is see the topics' errors (ErrUnavailable, ...).
func (e *AppendError) Unwrap() []error {
	errs := make([]error, 0, len(e.Topics))
	for _, err := range e.Topics {
		errs = append(errs, err)
	}
	return errs
}

// GapError is returned by Read when the requested position is no longer covered
// by history. Resume is the position to read after to get the oldest event still
// retained (so nothing that exists is withheld after the gap is announced).
type GapError struct {
	Topic  string
	Resume Position
}

func (e *GapError) Error() string {
	return fmt.Sprintf("engine: history gap on %q, retained history resumes after %s", e.Topic, e.Resume)
}

// Is makes errors.Is(err, ErrGap) true for a *GapError.
func (e *GapError) Is(target error) bool { return target == ErrGap }
