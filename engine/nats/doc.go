// Package nats is Herald's engine on NATS JetStream (server 2.9 or later),
// shared by every node: "-engine nats://host:4222?stream=HERALD" (options in
// register.go). Each node opens it with the same URL and stream; appends made
// through any node reach the subscribers of every node.
//
// # Design
//
// One stream holds every topic, one subject per topic:
//
//	stream     <stream> (HERALD by default): file storage, limits retention, discard old,
//	           MaxMsgsPerSubject = MaxLen, no server MaxAge, AllowDirect,
//	           Duplicates = the idempotency window,
//	           RePublish herald.<stream>.t.> -> herald.<stream>.live.>
//	subject    herald.<stream>.t.<topic with '.' replaced by '%'>
//	live       herald.<stream>.live.<same token>   (core NATS, republished by the server)
//	message    headers Herald-Type (Herald-Type-B64, base64, for a type a header value
//	           cannot carry as it is), Herald-Prev (the previous sequence of the subject,
//	           0 for none), Herald-Time (unix ns on the engine's clock),
//	           Nats-Msg-Id "<token> <hash of Event.ID>" when the event has an ID;
//	           the body is the data
//
// Topics never contain '%' (engine.ValidateTopic), and none of their
// characters is special in a subject token (no space, '*', '>'; '.' is
// mapped), so each topic is exactly one token and the mapping reverses.
//
// The Offset of an event is its stream sequence; offsets of one topic
// increase with holes, where other topics' messages sit. Prev is exact: each
// message is published with Nats-Expected-Last-Subject-Sequence equal to its
// Herald-Prev, so the server stores it only if Prev is the subject's last
// sequence. A conflict (error 10071) reports the actual last sequence in
// its description, and the engine retries with it at once, backing off a
// random while after the second conflict. The last sequence of each topic is
// cached from acknowledgements and heads (a stale cache only costs a retry).
// Appends to one topic are serialized per node (a striped lock), so a node has
// one in flight per topic and its own appends never conflict; the topics of
// one call are published in parallel. The epoch is a hash of the stream's
// name and creation time: a stream deleted and created again (by the engine,
// when a publish or a get finds no stream, or by someone else, found when a
// compare-and-set reports a last sequence lower than the cached one, after a
// reconnect and by the periodic check) is a new epoch, and cursors of the old
// one read a gap.
//
// Read uses direct gets (the stream's AllowDirect): next_by_subj from the
// cursor finds the first message after it, and when its Herald-Prev is past
// the cursor (or the cursor is of another epoch) Read returns a *GapError
// whose Resume is that Prev. The next few events are direct gets too; a
// longer page is read through one ephemeral pull consumer (memory storage,
// AckNone, filtered on the subject, from the next sequence, one no-wait
// fetch), deleted afterwards and by the server's inactive threshold (30 s)
// if the delete is lost. Head is a direct get last_by_subj.
//
// Retention by count is the server's MaxMsgsPerSubject, which never removes a
// subject's last message. Retention by age is Herald's, on the engine's
// clock: Read hides messages whose Herald-Time is older than MaxAge (a cursor
// before them reads a gap; when every message after a cursor is hidden, the
// gap resumes at the head), and the sweeper purges them per subject with a
// filtered purge below a sequence, keeping each subject's last message so
// that Head and the Prev chain stay. It walks the stream from where it last
// stopped up to the first message that has not expired, reading headers only
// through an ephemeral consumer, a thousand messages a fetch. The server's MaxAge
// is not used: it would empty a subject, whose next message would then have
// Prev 0, and an old cursor would read no gap.
//
// Fan-out uses the stream's RePublish and one connection per engine: a
// subscribed topic is one core subscription to its live subject, delivering
// into one channel shared by every subscription, drained by one dispatcher
// goroutine (no goroutine per subscription). Subscribe returns once a flush
// confirmed the subscription and the topic's head was read; events at or
// before that head, or at or before what was delivered, are dropped. A
// message whose Prev was not delivered yet is held for up to 100 ms (messages
// published through different connections can be republished out of order)
// and then delivered with its hole, which the hub fills from Prev.
//
// Loss is signalled to the subscribers (lost) on:
//   - a reconnect (every topic; the stream is checked first, as a server
//     restarted with an empty store means a new epoch); the client pings
//     the server every 10 s and gives a connection up after two pings
//     unanswered, so a silent connection (a blackholed path) is dialled
//     again within about 30 s;
//   - a slow consumer (the shared channel was full and the client dropped
//     messages of that subscription);
//   - a stream leader election ($JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED),
//     since only the leader republishes;
//   - the periodic sweep (?sweep=, 30 s): it reads the head of every
//     subscribed topic (a direct get each) and tells the topics whose head
//     is still past what was delivered after a grace of 300 ms (events on
//     their way), then takes the head as delivered. This finds the lost
//     last event of a quiet topic;
//   - the same check of a topic once, 2 s after its first Subscribe: in a
//     NATS cluster, interest in the live subject reaches the other servers
//     after the flush that confirmed it on this one.
//
// The engine is an engine.Metrics (disconnects, reconnects, lost topics,
// holes, slow consumers, leader changes, sweeps, topics a sweep found
// behind, compare-and-set conflicts, epoch changes, age-purged topics) and
// an engine.WriteChecker (CanWrite is ErrUnavailable while the connection is
// not up). Close lets calls in flight finish, stops the dispatcher and the
// sweeper, and closes the connection; no callback runs after it returns.
//
// # Presence
//
// Presence (the Presence method, a presence.Provider) is shared by every
// engine on the same server and stream, in a key-value bucket
// <stream>_presence; see presence.go for its keys. Entries are per stream,
// written by compare-and-set; nodes keep a heartbeat (3 s) whose stored time
// is compared in the server's clock, a node's entries stop counting 10 s
// after its last heartbeat and are dropped by the next write to their key,
// and a node that finds its heartbeat gone or late, or the bucket gone,
// writes all its streams again.
//
// # Guarantees
//
// An acknowledged Append is stored by the stream's leader (and a quorum of
// its replicas when Replicas > 1). nats-server 2.9 syncs its file store to
// disk every 60 s by default: a machine crash can lose the last minute of an
// R1 stream. Use replicas=3, or a server configured to sync always, where that
// matters. An event with an ID appended again within the idempotency window
// returns the first position (the server checks Nats-Msg-Id before the
// expected sequence); IDs are per topic.
//
// # Not detected, not done
//
//   - The events of one topic in one call are published one by one: another
//     node's event of that topic can land between them, and a failure midway
//     leaves the first ones appended (reported as that topic's failure).
//     Atomic batches need a server of 2.12 or later.
//   - A publish that times out may have been stored: an event with an ID is
//     published again (up to twice), which returns its position if it was;
//     without an ID, the caller's retry appends it again.
//   - A stream purged by hand (not deleted) resets the subjects' chains under
//     the same epoch; the supported way to start over is to delete the stream.
//   - A stream deleted and created again by someone else is noticed by the
//     next compare-and-set on a topic, the next reconnect or the periodic
//     check; reads in between carry the old epoch.
//   - The sweep costs a direct get per subscribed topic, one after the
//     other, on one goroutine.
//   - The last cancel of a topic unsubscribes at once; churn is not absorbed
//     by a delay.
//   - The age sweep reads the headers of every expired message once, and
//     every node runs it; after a restart it walks the kept last messages
//     again. Until it has run, Read skips expired messages one direct get
//     each. On 2.9 there is no batch direct get and no per-message TTL.
//   - One topic's append rate is bounded by the round trip to the leader (a
//     compare-and-set in flight per topic and node).
package nats
