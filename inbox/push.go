package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herald-hub/herald/engine"
)

// EventType is the type of the stream event that carries a notification.
const EventType = "notification"

// Topic is the stream topic of user's notifications.
func Topic(user string) string { return "users/" + user }

// IdempotencyKey is the event ID a notification is appended with: a
// notification pushed again (after a crash between the append and its
// mark) is appended once within the engine's idempotency window.
func IdempotencyKey(id int64) string { return "notification:" + strconv.FormatInt(id, 10) }

// JSON is a notification as the API and the stream show it.
type JSON struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Title   string          `json:"title"`
	Body    string          `json:"body"`
	Data    json.RawMessage `json:"data,omitempty"`
	Created time.Time       `json:"created_at"`
	Read    *time.Time      `json:"read_at"`
}

// JSON returns n as the API shows it. Data that is not JSON (Send refuses
// it; a row written by hand or by an older version may hold it) is left out,
// so that one such row cannot break the list or the push it is in.
func (n Notification) JSON() JSON {
	j := JSON{ID: strconv.FormatInt(n.ID, 10), Type: n.Type, Title: n.Title, Body: n.Body, Data: n.Data, Created: n.Created.UTC()}
	if len(j.Data) > 0 && !json.Valid(j.Data) {
		j.Data = nil
	}
	if !n.Read.IsZero() {
		r := n.Read.UTC()
		j.Read = &r
	}
	return j
}

// Pusher appends stored notifications to their users' topics, oldest first,
// until each is pushed: a notification accepted while the engine is down
// reaches the stream once the engine is back.
type Pusher struct {
	store Store
	eng   engine.Engine
	log   *slog.Logger
	poll  time.Duration

	wake chan struct{}
	stop context.CancelFunc
	done chan struct{}

	pushed, failures atomic.Uint64
}

// pushBatch is the most notifications of one Append.
const pushBatch = 500

// NewPusher starts pushing the store's unpushed notifications to eng: at
// once, on Wake, and every poll (for what another node stored, or what
// failed). Close stops it.
func NewPusher(store Store, eng engine.Engine, poll time.Duration, log *slog.Logger) *Pusher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pusher{store: store, eng: eng, log: log, poll: poll, wake: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go p.run(ctx)
	return p
}

// Wake asks for a push round now; it never blocks.
func (p *Pusher) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close stops the pusher; what is left is pushed by the next start.
func (p *Pusher) Close() {
	p.stop()
	<-p.done
}

// Pushed counts notifications appended; Failures rounds that failed.
func (p *Pusher) Pushed() uint64   { return p.pushed.Load() }
func (p *Pusher) Failures() uint64 { return p.failures.Load() }

func (p *Pusher) run(ctx context.Context) {
	defer close(p.done)
	poll(ctx, p.wake, p.poll, 100*time.Millisecond, 5*time.Second, p.round, func(err error, in time.Duration) {
		p.failures.Add(1)
		p.log.Warn("inbox: pushing notifications failed; retrying", "in", in, "err", err)
	})
}

// round pushes until nothing is left, or a step fails.
func (p *Pusher) round(ctx context.Context) error {
	for {
		ns, err := p.store.Unpushed(ctx, pushBatch)
		if err != nil || len(ns) == 0 {
			return err
		}
		events := make([]engine.Event, 0, len(ns))
		var done, bad []int64
		for _, n := range ns {
			topic := Topic(n.User)
			if engine.ValidateTopic(topic) != nil { // refused at Send; stored by an older version or by hand
				p.log.Error("inbox: a notification's user makes no valid topic; it is kept but never pushed", "id", n.ID, "user", n.User)
				bad = append(bad, n.ID)
				continue
			}
			data, err := json.Marshal(n.JSON())
			if err != nil { // JSON() leaves out what would not marshal; kept as a guard
				p.log.Error("inbox: a notification could not be encoded; it is kept but never pushed", "id", n.ID, "err", err)
				bad = append(bad, n.ID)
				continue
			}
			events = append(events, engine.Event{Topic: topic, Type: EventType, Data: data, ID: IdempotencyKey(n.ID)})
			done = append(done, n.ID)
		}
		if len(bad) > 0 {
			if err := p.store.MarkPushed(ctx, bad); err != nil {
				return err
			}
		}
		if len(events) == 0 {
			continue
		}
		pos, err := p.eng.Append(ctx, events)
		var partial *engine.AppendError
		if errors.As(err, &partial) && len(pos) == len(events) {
			var some []int64
			for i, ps := range pos {
				if ps != (engine.Position{}) {
					some = append(some, done[i])
				}
			}
			if merr := p.store.MarkPushed(ctx, some); merr != nil {
				return merr
			}
			p.pushed.Add(uint64(len(some)))
			return err
		}
		if err != nil {
			return err
		}
		if err := p.store.MarkPushed(ctx, done); err != nil {
			return err
		}
		p.pushed.Add(uint64(len(done)))
		if len(ns) < pushBatch {
			return nil
		}
	}
}
