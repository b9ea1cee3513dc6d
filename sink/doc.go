// Package sink is the one contract between edges and workers: the versioned
// wire events (Click, Event), the edge's bbolt outbox, the JetStream shipper
// that empties it, the worker's consumer, and the request/reply API over
// NATS. It knows nothing of HTTP.
//
// # Durability and the loss window
//
// The Outbox has one writer goroutine that commits whatever is queued in one
// bbolt transaction (group commit), fsynced unless NoSync, as soon as the
// previous commit ends or, with Outbox.CommitInterval, at most that often.
// Two ways in:
//
//   - Outbox.Append returns only once its records are committed. The edge
//     uses it for every merchant write (conversions, refunds, S2S clicks…),
//     whose 2xx follows the commit in every capture mode, and, under the
//     default capture mode, for redirect clicks, whose 302 follows it too.
//   - Outbox.Enqueue (the edge's --capture async) copies the records into the
//     next commit and returns at once. A crash or power loss loses what was
//     enqueued since the last commit ended: at most CommitInterval (the edge
//     allows 5 ms at most) plus one commit's duration. A clean Close commits
//     everything queued first; a commit that fails is logged and counted in
//     OutboxStats.Lost.
//
// Rows leave the outbox only through Outbox.Delete, after JetStream
// acknowledged them (Shipper); deletes join the writer's group commits. A
// row whose ack or delete was lost is published again with the same
// Nats-Msg-Id, which JetStream (within its duplicate window) and the worker
// drop.
package sink
