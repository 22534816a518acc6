// Package sse is Herald's Server-Sent Events wire format: append-style
// encoders for the server and a decoder that follows the WHATWG HTML "event
// stream interpretation" exactly, for the Go client and the tests.
//
// Besides the standard fields (event, data, id, retry) Herald writes one
// extension field, "topic". Browsers ignore unknown fields, so streams stay
// valid SSE; the Decoder reports it in Event.Topic.
package sse
