// Package sse is Herald's Server-Sent Events wire format: append-style
// encoders for the server and a decoder that follows the WHATWG HTML "event
// stream interpretation" exactly, for the Go client, the bench and the tests.
// The decoder reads from an io.Reader (Next), or is given the bytes by a
// caller that reads the stream itself (AppendEvents).
//
// Besides the standard fields (event, data, id, retry) Herald writes one
// extension field, "topic". Browsers ignore unknown fields, so streams stay
// valid SSE; the Decoder reports it in Event.Topic.
package sse
