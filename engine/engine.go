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
	"time"
)

// Position is where an event sits in its topic's log. Offsets start at 1 and grow
// by one per event within an Epoch. A new Epoch means the topic's history was lost
// (store wiped, stream deleted), so offsets of different epochs are not comparable.
// The zero Offset of an epoch means "before the first event".
type Position struct {
	Epoch  string
	Offset uint64
}

// String renders the position for logs and JSON answers.
func (p Position) String() string { return fmt.Sprintf("%s:%d", p.Epoch, p.Offset) }

// Event is one published event. Topic, Type and Data are set by the publisher;
// Pos and Time are assigned by the engine on Append.
type Event struct {
	Topic string
	Type  string
	Data  []byte
	Pos   Position
	Time  time.Time
}

// Engine is a durable, ordered log per topic with fan-out to every node.
//
// All methods are safe for concurrent use. After Close, every method returns
// ErrClosed and no subscription callback runs any more.
type Engine interface {
	// Append makes the events durable and returns their positions, in order.
	// Events of one call that share a topic get consecutive offsets in call order.
	// When it returns an error, none of the events may be reported as accepted.
	// Invalid topics (ValidateTopic) reject the whole call with ErrInvalidTopic.
	// A ctx already done appends nothing and returns ctx.Err().
	Append(ctx context.Context, events []Event) ([]Position, error)

	// Subscribe calls fn for every event appended to topic from now on, by any
	// engine instance sharing the back end (any node), in position order. fn runs
	// on the engine's goroutine and must not block. The returned cancel stops
	// delivery; after it returns fn is not called again. Delivery is best effort:
	// a subscriber that sees an offset jump fills the hole with Read.
	//
	// "From now on" means every event whose Append starts after Subscribe has
	// returned (networked engines return only once the subscription is active),
	// and every event after the Head read once Subscribe has returned: the hub
	// starts a new stream at that Head and relies on live delivery for the rest.
	// cancel is idempotent. It may wait for a running fn, so fn must not call
	// cancel or Subscribe itself.
	Subscribe(topic string, fn func(Event)) (cancel func(), err error)

	// Read returns up to limit events of topic with offsets after `after`, in order.
	// When after is older than what is retained (after.Offset < oldest retained
	// offset - 1), or from another epoch, it returns a *GapError
	// (errors.Is(err, ErrGap)) whose Resume is {current epoch, oldest retained - 1}.
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
	// CanWrite returns nil while appends are accepted, else an error matching
	// ErrUnavailable that says why, or ErrClosed.
	CanWrite() error
}

var (
	// ErrGap reports that events after a position are no longer retained.
	ErrGap = errors.New("engine: history gap")
	// ErrClosed is returned by an engine after Close.
	ErrClosed = errors.New("engine: closed")
	// ErrUnavailable wraps back-end failures: the event was not appended.
	ErrUnavailable = errors.New("engine: unavailable")
)

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
