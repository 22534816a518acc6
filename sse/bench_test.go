package sse

import (
	"bytes"
	"io"
	"testing"
)

var benchData = []byte(`{"id":"n_8f2c","title":"New comment","body":"Alice replied to your post","url":"/posts/42#c7"}`)

func BenchmarkAppendEvent(b *testing.B) {
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchData)))
	for b.Loop() {
		buf = AppendEvent(buf[:0], "AQIDBAUGBwgJCgsMDQ4PEA", "notification", benchData)
	}
}

// benchStream returns n events as Herald sends them.
func benchStream(n int) []byte {
	var stream []byte
	for range n {
		stream = AppendID(stream, "AQIDBAUGBwgJCgsMDQ4PEA")
		stream = AppendType(stream, "notification")
		stream = AppendField(stream, "topic", "users/42")
		stream = AppendData(stream, benchData)
		stream = append(stream, '\n')
		stream = AppendComment(stream, "heartbeat")
	}
	return stream
}

func BenchmarkDecoder(b *testing.B) {
	const n = 1000
	stream := benchStream(n)
	r := bytes.NewReader(stream)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		r.Reset(stream)
		d := NewDecoder(r)
		for {
			if _, err := d.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}

// AppendEvents fed 4 KiB pieces, as an event loop's reads would bring them.
func BenchmarkAppendEvents(b *testing.B) {
	const n = 1000
	stream := benchStream(n)
	var evs []Event
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		d := NewDecoder(nil)
		for p := stream; len(p) > 0; {
			k := min(len(p), 4096)
			var err error
			if evs, err = d.AppendEvents(evs[:0], p[:k]); err != nil {
				b.Fatal(err)
			}
			p = p[k:]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}
