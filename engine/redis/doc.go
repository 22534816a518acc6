// Package redis is Herald's engine on a Redis 7 primary shared by every node:
// "-engine redis://host:port/db" (or "rediss://" for TLS). Each node opens it
// with the same URL and key prefix; appends made through any node reach the
// subscribers of every node.
//
// # Design
//
// Every topic has its own log and its own epoch, under keys that share the
// topic in a hash tag, so that one topic's keys sit in one Redis Cluster
// slot (on a cluster, an Append across topics is one script call per topic,
// pipelined):
//
//	key                          type     contents                                   TTL
//	<prefix>{<topic>}:m          hash     e: epoch (13 random chars), s: head offset, meta-ttl (30 days) + 1/16, renewed by Append when due and by Head
//	                                      x, y: the stream's and the hash's expiry
//	                                      deadlines, o: first entry's time or earlier
//	<prefix>{<topic>}:l          stream   entry ID <offset>-0, fields t (unix ms),   MaxAge (or meta-ttl) + 1/16, renewed by Append when due
//	                                      y (type), d (data)
//	<prefix>{<topic>}:r:<id>     string   "<epoch> <offset>" of an Event.ID           the idempotency window (2 minutes)
//	<prefix>{<topic>}:c          channel  a binary frame per Append and topic         -
//
// Append validates the whole call in Go (topics, ID lengths), since Redis
// does not roll a script back when it fails midway, and then runs one Lua
// script (EVALSHA, EVAL on NOSCRIPT) for every event of every topic of the
// call: a call across topics is atomic. The script reads all it needs before
// it writes anything (it refuses a topic whose stream is ahead of its head,
// keys changed behind Herald's back, and then writes nothing; in a call of
// one topic the first XADD is that check). Per topic it
// takes the epoch from the meta hash, or creates it from a random epoch the
// caller passes, deleting a stream orphaned by a lost meta; gives dense
// offsets from the head s (Prev = Offset-1); checks and writes the
// idempotency keys (a retry returns the first position and appends nothing,
// within the call too); XADDs with MAXLEN ~ MaxLen; PUBLISHes one frame on
// the topic's channel; renews the TTLs when their deadlines in the meta hash
// are due, or the call made the stream (its first XADD is NOMKSTREAM); and, when the first entry's time says some may have expired,
// trims at most 100 expired entries from the front (see append.lua). Event times come from the engine's clock (an
// ARGV), so tests can drive retention by age.
//
// Read and Head are scripts too. Retention is applied logically on the
// engine's clock, so MaxLen and MaxAge are exact for readers even though
// MAXLEN ~ keeps a few extra entries: the oldest retained offset is the
// first entry at or after s-MaxLen+1 not older than MaxAge, or s+1 when
// there is none (every event expired: the head stays). A cursor of another
// epoch, or before the oldest retained event's Prev, reads a *GapError whose
// Resume is {epoch, oldest retained Prev}. Head of an unseen topic creates
// its epoch (a write on the read path, bounded by meta-ttl), so that reading
// after it later returns the first events without a gap.
//
// Fan-out uses a few Pub/Sub connections per engine (the pubsub URL option,
// 2 by default), never one per topic: a topic's channel is hashed onto one of
// them, so its frames arrive in order. Subscribe returns once Redis has
// confirmed the channel's subscription. A frame at or before what the topic
// has delivered is dropped. A connection that breaks is dialled again and
// every channel of it subscribed again; a confirmation for a channel that was
// already active calls its subscribers' lost, so the hub re-reads history
// after its cursors (events published while the connection was down are not
// replayed by Pub/Sub). The last subscriber's cancel unsubscribes the
// channel.
//
// Each Pub/Sub connection also subscribes to a service channel of its own,
// <prefix>probe:<engine id>:<n>. When it has received nothing for
// ProbeInterval (the probe URL option, 30s by default), the engine PUBLISHes
// a probe there through the command client; if nothing arrives within
// another ProbeInterval, the connection is treated as broken: closed,
// dialled again and resubscribed, with lost called as above. This finds a
// connection that is open but silent (a blackholed path, a failover), which
// the client's keep-alive PINGs may not. Closing a silent connection takes
// the client about a second, so the silence is over within about two
// intervals and a second.
//
// A backstop sweep runs every SweepInterval (the sweep URL option, 5m by
// default; it cannot be turned off): it reads the meta hash (HMGET e s) of
// every confirmed topic of the connections that are up, pipelined
// sweepBatch at a time, and calls lost for each topic whose head is past the
// last offset delivered, or of another epoch; it then takes the head as
// delivered, since the re-read covers it. Before a topic's first frame the
// comparison is with its head read right after its first subscription was
// confirmed. This finds a frame lost while the connection goes on
// receiving; a frame still on its way may cause a needless re-read.
//
// The engine is an engine.Metrics: it counts reconnects, lost topics (each
// lost call for a topic), probes sent and failed, sweeps, and topics a sweep
// found behind; the server exports them as herald_engine_<name>_total. Close lets calls in flight finish, stops the connections, and
// waits for any delivery running, so no callback runs after it returns.
//
// The engine is an engine.WriteChecker, for readiness: CanWrite reports
// ErrUnavailable while a Pub/Sub connection is down or not yet resubscribed,
// and while Redis does not answer a PING within ReadyPingTimeout; the PING's
// outcome is reused for ReadyCacheTTL.
//
// # Presence
//
// Presence (the Presence method, a presence.Provider) is shared by every
// engine on the same Redis and prefix; see presence.go for its keys. Entries
// are per stream, nodes keep a heartbeat (PresenceBeat, 3 s) in a sorted set
// in Redis's clock, a node's entries stop counting PresenceTTL (10 s) after
// its last heartbeat and are then removed by compare-and-delete, and a node
// whose heartbeat finds its member gone writes all its streams again under a
// new incarnation.
//
// # Guarantees
//
// An acknowledged Append is in Redis's memory; it is durable only as far as
// Redis is (AOF with appendfsync always, or replication). Losing a topic's
// meta hash (FLUSHDB, a restart without persistence, a DEL, meta-ttl expiry
// of an idle topic, eviction) starts a new epoch at its next Append or Head,
// and cursors of the old one read a gap. Open refuses a Redis whose
// maxmemory-policy is not noeviction (the keys carry TTLs, so even volatile-*
// policies would evict them); it only warns when CONFIG is disabled.
//
// # Not detected, not done
//
//   - A failover to a replica that lagged behind rolls s back under the same
//     epoch: offsets are then given again and readers may skip events
//     silently. Use a single primary with AOF, or WAIT after appends (not
//     implemented).
//   - On a Redis Cluster, fan-out is classic Pub/Sub, which the cluster bus
//     copies to every master; sharded Pub/Sub (SPUBLISH) is not used.
//   - Physical age trimming happens on appends (and by the stream's TTL), so
//     a Read of a topic idle for longer than MaxAge scans its expired entries
//     inside the script, up to MaxLen of them; nothing trims in the background.
package redis
