// Package kafka is Herald's engine on a Kafka cluster shared by every node:
// "-engine kafka://host:port[,host:port...]?topic=herald&partitions=32".
// Each node opens it with the same URL and its own data dir; appends made
// through any node reach the subscribers of every node.
//
// # Design
//
// Every Herald topic lives in one Kafka topic (the topic URL option,
// "herald" by default) of P partitions, P fixed for the topic's life. A
// Herald topic always goes to partition FNV-1a-32(topic) % P, set on each
// record with kgo.ManualPartitioner: the mapping never depends on a client
// library's default partitioner, and every node computes the same one. Open
// creates the Kafka topic when it is missing (with the partitions and
// replication URL options) and refuses one whose partition count differs
// from the URL's. Recommended topic settings, which Open does not set:
// cleanup.policy=delete, retention.ms at least MaxAge plus the time a new
// node may take to start, min.insync.replicas=2 with a replication factor
// of 3, unclean.leader.election.enable=false.
//
// A record is one event: key = the Herald topic, value = the data, headers
// herald-type, herald-time (the engine's clock, unix nanos) and herald-id
// (the idempotency key, when set). The producer is idempotent with
// acks=all (kgo's defaults, set explicitly) and a linger of 1 ms (the linger
// option; kgo's default of 10 ms would be publish latency). Herald offsets
// are Kafka offsets plus one, so they are sparse per topic: a partition's
// offsets are shared by every topic mapped to it (engine contract v2).
//
// Every node reads every partition with a client of its own
// (ConsumePartitions, no consumer group), from where its replica stopped,
// into a local replica: a Pebble store in <data dir>/kafka/<topic>, in a
// layout close to the local engine's (per-topic meta with head, trimmed and
// a count; the log keyed by topic and offset; idempotency keys with an
// expiry index; and per partition the next offset to apply; see
// replica.go). One apply loop writes each fetch in one batch without fsync
// (Kafka is the durable copy: a replica that loses its last writes in a
// crash fetches them again, since its partition offsets are in the same
// batches), then delivers the events to the node's subscribers with Prev =
// the topic's previous head in the replica, which is exact because the
// replica sees every record of the partition in order. Commit and delivery
// share one critical section, so a Subscribe sees every event committed
// after it registered and none before.
//
// Head and Read are served from the replica after a read barrier: a
// ListOffsets (latest) of the Kafka topic, shared by every caller waiting
// when it is sent (one request in flight at a time), then a wait until the
// replica has applied the topic's partition up to that end offset. That
// gives read-your-writes on one node and freshness across nodes. Append
// produces, then waits until its records are applied on this node, and
// answers from the replica.
//
// Retention is the replica's, on the engine's clock: MaxLen per topic on
// every append, MaxAge by a sweep (every minute) that scans the meta of
// every topic retained. The gap rules are the local engine's: a cursor
// before the Prev of the oldest retained event, or of another epoch, reads
// a *GapError resuming at that Prev. Kafka's own retention only bounds what
// a new node can bootstrap.
//
// The epoch is the Kafka topic's ID (16 bytes, hex) and P, one epoch for
// every Herald topic: it changes when the topic is deleted and created
// again, or repartitioned. Open wipes a replica of another epoch and reads
// the new topic from its start; a running engine that sees its topic
// deleted or recreated fails every partition (CanWrite, appends and reads
// return ErrUnavailable) until it is restarted.
//
// # Gaps from Kafka's side
//
// The reader never moves by itself: ConsumeResetOffset(NoResetOffset()), so
// an OffsetOutOfRange is returned to the engine rather than silently reset
// to a log boundary. Each partition has a floor, the Herald offset up to
// which records may be missing from the replica: the log start when the
// replica was created, or when it found records it had not applied deleted
// (at Open, or while running after an OffsetOutOfRange below the log
// start). A topic whose head is below its partition's floor is read as
// head = trimmed = floor, so cursors before the floor read a gap and the
// topic's next event has Prev = floor; subscribers of the partition's topics
// get lost, to re-read. A topic never seen by a node that started from a
// log start L thus has head L, not 0: events of it may have been deleted.
// An OffsetOutOfRange past the log end (truncation), or kgo's ErrDataLoss,
// fails the partition.
//
// # Idempotency
//
// Event.ID is checked by the apply loop, not before producing: a record
// whose ID was applied to the same topic within IdempotencyWindow is
// skipped (stored nowhere, delivered to no one), on every node alike,
// because the decision depends only on the log: the times compared are the
// records' herald-time headers, and a key counts only while it is within the
// window of the latest record time of its partition, so physical expiry
// (the sweep) never changes a decision. The Append that produced a skipped
// record answers with the first record's position, read from the replica
// once its own record is applied. A repeat thus costs a Kafka record, and
// concurrent repeats from several nodes are resolved by their order in the
// partition.
//
// # Guarantees
//
//   - An acknowledged Append is in Kafka with acks=all, and applied to this
//     node's replica. It is durable as far as the topic's replication is.
//   - Offsets of a topic increase in the order of its partition; events of
//     one Append and topic are produced in call order to one partition,
//     usually in one produce batch (the client may cut batches at its size
//     limit or when a linger ends). A call across
//     topics is not atomic (Kafka transactions could make it so): a topic
//     whose records failed is named in an *AppendError. A topic's records
//     split across two produce batches could be appended in part when the
//     second fails: the Append reports the topic failed though its first
//     records were appended.
//   - Delivery cannot be lost while the reader runs: every node reads every
//     record. Subscribers get lost only when records were deleted before
//     this node applied them.
//
// # Readiness and metrics
//
// The engine is an engine.WriteChecker: CanWrite reports ErrUnavailable
// until the replica has applied every partition up to the end offsets found
// at Open (a bootstrapping node reads the whole retained log first), and
// once a partition failed. Lag tells how many records the replica is behind
// the high watermarks last fetched. Metrics counts records applied,
// duplicates skipped, foreign records (not written by Herald: skipped), read
// barriers, produce and fetch errors, partition resets (records deleted
// before they were applied) and lost topics.
//
// # Costs
//
//   - Every node receives and stores every event of the Kafka topic: a
//     replica is the whole retained history (bounded by MaxLen per topic and
//     MaxAge), and a new node reads the whole retained Kafka log before it
//     is ready.
//   - A Read or Head costs a ListOffsets round trip (shared by concurrent
//     callers) and waits for the reader to catch up; an Append costs a
//     produce and the reader's fetch of the same record.
//   - The age sweep reads the meta of every topic retained, where the local
//     engine keeps a time index.
//
// # Not detected, not done
//
//   - Truncation after an unclean leader election (or a failover to a lagging
//     replica) reuses offsets in the same epoch when the log grows back past
//     what the replica applied before the reader notices: readers may skip or
//     read replaced events. Keep unclean.leader.election.enable=false. kfake
//     does not model log divergence, so this is not tested.
//   - The epoch is checked at Open, every 5 seconds (one Metadata request)
//     and after errors; an Append whose record gets an offset the replica
//     already applied fails its partition. Between a topic's recreation and
//     its detection, reads are served from the old replica.
//   - Presence is not shared through Kafka: the engine is not a
//     presence.Provider, so each node keeps presence in memory
//     (presence.Memory), unless herald serve's -presence-url shares it
//     through a Redis or a NATS.
//   - TLS and SASL are not in the URL; Options.ClientOpts carries them for a
//     program that opens the engine itself.
package kafka
