package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// benchBody is a single event as applications publish it.
const benchBody = `{"topic":"users/123","type":"bench","data":{"seq":5,"ts":1764330000000000000}}`

// handledBodies are the shapes the fast path must decode itself.
var handledBodies = []string{
	benchBody,
	`{"topic":"a"}`,
	`{}`,
	`{"topic":"a","data":"x"}`,
	`{"topic":"a","data":""}`,
	`{"topic":"a","data":null}`,
	`{"topic":null,"type":null,"data":null,"id":null}`,
	`{"data":{"k":[1,2]},"topic":"rooms/7","type":"state"}`,
	`{"topic":"a","data":{"k":[1, 2]}}`,
	`{"topic":"a","data":[]}`,
	`{"topic":"a","data":{}}`,
	`{"topic":"a","data":true}`,
	`{"topic":"a","data":false}`,
	`{"topic":"a","data":0}`,
	`{"topic":"a","data":-12.5e+3}`,
	`{"topic":"a","data":1E-7}`,
	`{"topic":"a","data":123456789012345678901234567890}`,
	`{"topic":"a","data":" spaced { not json } "}`,
	`{"topic":"a","data":{"s":"a  b : c","n":[ 1 , { "x" : null } ]}}`,
	`{"topic":"a","id":"order-7:paid"}`,
	`{"topic":"a","id":""}`,
	`{"topic":"a","type":"","data":"x"}`,
	`{"topic":"a","type":"é","data":"ünïcödé 😀"}`,
	`{"topic":"a","type":"x<>&","data":{"html":"<b>&amp;</b>"}}`,
	"{\"topic\":\"a\",\"data\":\"\u2028\"}",
	` {"topic":"a"} `,
	"\r\n\t{ \"topic\" : \"a\" ,\n  \"data\" : {\n    \"k\" : \"v\"\n  }\n}\n",
	`[{"topic":"a"}]`,
	`[{"topic":"b","data":{"k":[1, 2]}},{"topic":"a","data":"two"}]`,
	" [ {\"topic\":\"a\"} ,\n{\"topic\":\"b\",\"id\":\"k1\"} ] ",
	`[{},{}]`,
	// Refused later, by toEvent, not by the decoding.
	`{"topic":"a b"}`,
	`{"topic":"a","type":"herald.gap"}`,
	`{"topic":"a","type":"error"}`,
	`{"topic":"a","id":"has space"}`,
	`[{"topic":"a"},{"topic":"?"}]`,
}

// fallbackBodies are left to the strict path, valid or not.
var fallbackBodies = []string{
	``,
	` `,
	`null`,
	`"x"`,
	`1`,
	`[]`,
	`[null]`,
	`[{"topic":"a"},null]`,
	`{"topic":`,
	`{"topic":"a"`,
	`{"topic":"a",}`,
	`[{"topic":"a"},]`,
	`{"topic":"a","dat":"x"}`,
	`{"Topic":"a"}`,
	`{"TOPIC":"a"}`,
	`{"topic":"a","topic":"b"}`,
	`{"topic":"a","data":1,"data":2}`,
	`{"topic":"a","id":null,"id":"k"}`,
	`{"topic":"a"} {"topic":"b"}`,
	`{"topic":"a"}}`,
	`{"topic":"a"}]`,
	`[{"topic":"a"}]]`,
	`{"topic":"a\nb"}`,
	`{"topic":"a","type":"x\u0000"}`,
	`{"top\u0069c":"a"}`,
	`{"topic":"a","data":"\ud800"}`,
	`{"topic":"a","data":{"k":"\\ud800"}}`,
	`{"topic":"a","data":"\ud83d\ude00"}`,
	"{\"topic\":\"a\",\"data\":\"x\xff\"}",
	"{\"topic\":\"a\",\"data\":{\"\xfe\":1}}",
	"{\"topic\":\"a\tb\"}",
	"\ufeff{\"topic\":\"a\"}",
	"{\"topic\":\"a\"}\f",
	"{\"topic\":\"a\",\"data\":{\"k\":\f1}}",
	"{\"topic\":\"a\",\"data\":\u00a01}",
	`{"topic":1}`,
	`{"topic":true}`,
	`{"topic":["a"]}`,
	`{"type":{}}`,
	`{"id":5}`,
	`{"topic":"a","data":01}`,
	`{"topic":"a","data":-}`,
	`{"topic":"a","data":1.}`,
	`{"topic":"a","data":.5}`,
	`{"topic":"a","data":1e}`,
	`{"topic":"a","data":+1}`,
	`{"topic":"a","data":NaN}`,
	`{"topic":"a","data":tru}`,
	`{"topic":"a","data":nul}`,
	`{"topic":"a","data":nullx}`,
	`{"topic":"a","data":{"k"}}`,
	`{"topic":"a","data":{"k":1,}}`,
	`{"topic":"a","data":[1,]}`,
	`{"topic":"a","data":[1 2]}`,
	`{"topic":"a","data":{1:2}}`,
	`{"topic":"a","data":` + strings.Repeat("[", maxScanDepth+2) + strings.Repeat("]", maxScanDepth+2) + `}`,
}

// fuzzSeeds are realistic bodies, the bad-input rows of docs/security.md and
// the bad-input cases of the publish tests.
func fuzzSeeds(tb testing.TB) []string {
	seeds := append(append([]string{}, handledBodies...), fallbackBodies...)
	// The sizes do not matter to the decoding; small seeds fuzz faster.
	placeholders := map[string]string{
		"{xFF}":         "\xff",
		"{long-type}":   strings.Repeat("y", 129),
		"{big-data}":    `{"topic":"a","data":"` + strings.Repeat("x", 100) + `"}`,
		"{big-body}":    `{"topic":"a","data":{"k":"` + strings.Repeat("x", 100) + `"}}`,
		"{1001-events}": "[" + strings.Repeat(`{"topic":"a"},`, 10) + `{"topic":"a"}]`,
	}
	for _, row := range readBadInputTable(tb) {
		if row.method != http.MethodPost || row.body == "" {
			continue
		}
		body := row.body
		for k, v := range placeholders {
			body = strings.ReplaceAll(body, k, v)
		}
		seeds = append(seeds, body)
	}
	return append(seeds,
		`{"topic":"a","dat":"x"}`,
		`[{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"}]`,
		`{"topic":"a","type":"x\ndata: evil"}`,
		`{"topic":"a","type":"x\revil"}`,
		"{\"topic\":\"a\",\"type\":\"t\xff\"}",
		`{"topic":"a","type":"t\ud800"}`,
		"{\"topic\":\"a\xc3\"}",
		"{\"topic\":\"a\",\"data\":\"\xc0\xaf\"}",
		`{"topic":"a","data":"x\udc00y"}`,
		`{"topic":"a","data":"\ud83dx"}`,
		"{\"topic\":\"a\",\"data\":{\"k\":\"\xff\"}}",
		`{"topic":"a","data":["\udfff"]}`,
		"[{\"topic\":\"a\"},{\"topic\":\"a\",\"data\":\"\xff\"}]",
		`[{"topic":"a","type":"é","data":"\ufffd \ud83d\ude00 é"},{"topic":"a","data":{"k":"\\ud800"}},{"topic":"a","data":"\\udc00"}]`,
		`{"topic":"rooms/7","type":"state","data":{"phase":"night"}}`,
		` [{"topic":"rooms/7"}]`,
	)
}

// checkFastPath fails t if scanPublish handles body with another result than
// strictInputs, or jsonInputs answers otherwise than strictInputs, and
// reports whether scanPublish handled body.
func checkFastPath(t *testing.T, body []byte) bool {
	t.Helper()
	gotIns, gotBatch, gotErr := jsonInputs(body, 2)
	wantIns, wantBatch, wantErr := strictInputs(body, 2)
	if gotBatch != wantBatch || !reflect.DeepEqual(gotIns, wantIns) || !reflect.DeepEqual(gotErr, wantErr) {
		t.Fatalf("%q with at most 2 events:\njsonInputs   %v %s %+v\nstrictInputs %v %s %+v", body, gotBatch, showInputs(gotIns), gotErr, wantBatch, showInputs(wantIns), wantErr)
	}
	got, gotBatch, ok := scanPublish(body)
	if !ok {
		return false
	}
	want, wantBatch, err := strictInputs(body, math.MaxInt)
	if err != nil {
		t.Fatalf("fast path decoded %q, strict path refuses it: %s %s", body, err.code, err.message)
	}
	if gotBatch != wantBatch || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nfast   %v %s\nstrict %v %s", body, gotBatch, showInputs(got), wantBatch, showInputs(want))
	}
	return true
}

func showInputs(ins []eventInput) string {
	var b strings.Builder
	for _, in := range ins {
		fmt.Fprintf(&b, "{topic %q type %q data %q (nil %v) id %q hasID %v} ", in.topic, in.typ, in.data, in.data == nil, in.id, in.hasID)
	}
	return b.String()
}

// FuzzScanPublish: whatever body the fast path decodes, the strict path
// decodes the same way.
func FuzzScanPublish(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastPath(t, body)
		// The same bytes as a data value too, where the fast path does the
		// most and most mutations of a body would be refused anyway.
		checkFastPath(t, slices.Concat([]byte(`{"topic":"a","data":`), body, []byte(`}`)))
	})
}

func TestScanPublishHandlesCommonShapes(t *testing.T) {
	bodies := append([]string{}, handledBodies...)
	// What encoding/json writes, compact and indented.
	ev := map[string]any{"topic": "users/123", "type": "bench", "id": "k-1", "data": map[string]any{"seq": 5, "list": []any{1.5, "x", nil, true}}}
	for _, v := range []any{ev, []any{ev, ev}} {
		compact, _ := json.Marshal(v)
		indented, _ := json.MarshalIndent(v, "", "\t")
		bodies = append(bodies, string(compact), string(indented))
	}
	for _, body := range bodies {
		if !checkFastPath(t, []byte(body)) {
			t.Errorf("fast path left %q to the strict path", body)
		}
	}
}

func TestScanPublishLeavesTheRestToTheStrictPath(t *testing.T) {
	for _, body := range fallbackBodies {
		if checkFastPath(t, []byte(body)) {
			t.Errorf("fast path decoded %q", body)
		}
	}
}

// The fast path's events are refused as the strict path's are: a batch over
// the limit, and each event by toEvent.
func TestJSONInputsLimitsBatchesOnBothPaths(t *testing.T) {
	for _, body := range []string{`[{"topic":"a"},{"topic":"a"},{"topic":"a"}]`, `[{"topic":"a"},{"topic":"a"},{"topic":"a","type":"x\n"}]`} {
		if _, _, err := jsonInputs([]byte(body), 2); err == nil || err.code != "batch_too_large" || err.message != "3 events in one request, at most 2" {
			t.Errorf("%s: %v, want batch_too_large", body, err)
		}
	}
}

var sinkInputs []eventInput

// BenchmarkParsePublish decodes the single event of benchBody by the strict
// path and by the fast one, and parses a whole request as the server does.
func BenchmarkParsePublish(b *testing.B) {
	body := []byte(benchBody)
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ins, _, err := strictInputs(body, 1000)
			if err != nil {
				b.Fatal(err)
			}
			sinkInputs = ins
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ins, _, ok := scanPublish(body)
			if !ok {
				b.Fatal("not handled")
			}
			sinkInputs = ins
		}
	})
	b.Run("request", func(b *testing.B) {
		s := &Server{}
		s.cfg.setDefaults()
		w := newDiscardWriter()
		r, _ := http.NewRequest(http.MethodPost, "http://herald/v1/publish", nil)
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = int64(len(body))
		rd := bytes.NewReader(body)
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(body)
			r.Body = readCloser{rd}
			if _, _, err := s.parsePublish(w, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// discardWriter is a ResponseWriter that keeps nothing but its headers, for
// benchmarks.
type discardWriter struct{ h http.Header }

func newDiscardWriter() *discardWriter { return &discardWriter{h: http.Header{}} }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
