package bench

import (
	"encoding/json"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, pad := range []int{0, 10} {
		b := appendPayload(nil, 42, 1700000000123456789, pad)
		if !json.Valid(b) {
			t.Fatalf("payload %s is not JSON", b)
		}
		seq, ts, ok := parsePayload(string(b))
		if !ok || seq != 42 || ts != 1700000000123456789 {
			t.Errorf("parse(%s) = %d, %d, %v", b, seq, ts, ok)
		}
	}
}

// Hubs that wrap the payload, as an object or as a JSON string, still yield
// seq and ts.
func TestPayloadInEnvelope(t *testing.T) {
	inner := string(appendPayload(nil, 7, 99, 0))
	quoted, _ := json.Marshal(inner)
	for _, data := range []string{
		`{"channel":"a","data":` + inner + `}`,
		`{"channel":"a","data":` + string(quoted) + `}`,
	} {
		if seq, ts, ok := parsePayload(data); !ok || seq != 7 || ts != 99 {
			t.Errorf("parse(%s) = %d, %d, %v", data, seq, ts, ok)
		}
	}
	for _, data := range []string{"", "hello", `{"seq":0,"ts":1}`, `{"ts":1}`, `{"seq":1}`} {
		if _, _, ok := parsePayload(data); ok {
			t.Errorf("parse(%q) succeeded", data)
		}
	}
}

func TestLayouts(t *testing.T) {
	for _, c := range []struct {
		in     string
		topics int
		of9    int
	}{{"shared", 1, 0}, {"per-user", 10, 9}, {"rooms:3", 4, 3}, {"rooms:1", 10, 9}} {
		l, err := ParseLayout(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if l.String() != c.in || l.Topics(10) != c.topics || l.TopicOf(9) != c.of9 {
			t.Errorf("%s: topics %d, topic of 9 = %d", c.in, l.Topics(10), l.TopicOf(9))
		}
		if names := topicNames(l, 10, "p"); len(names) != c.topics {
			t.Errorf("%s: %d names", c.in, len(names))
		}
	}
	for _, bad := range []string{"", "rooms", "rooms:0", "rooms:x", "everyone"} {
		if _, err := ParseLayout(bad); err == nil {
			t.Errorf("ParseLayout(%q) succeeded", bad)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	line := "1234 (herald serve) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0"
	cpu, err := parseStatCPU(line)
	if err != nil || cpu != 3 {
		t.Errorf("parseStatCPU = %v, %v; want 3s (300 ticks)", cpu, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}
