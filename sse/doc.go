// Package sse is Herald's Server-Sent Events wire format: append-style
// encoders for the server and a decoder that follows the WHATWG HTML "event
// stream interpretation" exactly, for the Go client, the bench and the tests.
// The decoder reads from an io.Reader (Next), or is given the bytes by a
// caller that reads the stream itself (AppendEvents).
//
// Besides the standard fields (event, data, id, retry) Herald writes one
// extension field, "topic". Browsers ignore unknown fields, so streams stay
// valid SSE; the Decoder reports it in Event.Topic.
//
// Herald opens every stream with an event of type "herald.connected" whose id
// is the starting cursor and whose data is "{}", rather than an id-only block:
// some client libraries (event-source-polyfill, the eventsource npm package)
// store an id only when an event is dispatched, and fetch-event-source hands
// every block to onmessage, so its data must parse as JSON. Handlers of unnamed
// messages never see a named event.
package sse
