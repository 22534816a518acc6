package server

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestPublishRefusesBadInputWithJSONErrors(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{MaxEventSize: 1024, MaxBodySize: 4096, MaxBatch: 3}})
	cases := []struct {
		name, contentType, body, key string
		status                       int
		code                         string
	}{
		{"no key", "application/json", `{"topic":"a","data":"x"}`, "", 401, "missing_credentials"},
		{"wrong key", "application/json", `{"topic":"a","data":"x"}`, "nope", 401, "invalid_credentials"},
		{"bad json", "application/json", `{"topic":`, testKey, 400, "bad_json"},
		{"unknown field", "application/json", `{"topic":"a","dat":"x"}`, testKey, 400, "bad_json"},
		{"trailing data", "application/json", `{"topic":"a"} {"topic":"b"}`, testKey, 400, "bad_json"},
		{"empty topic", "application/json", `{"topic":"","data":"x"}`, testKey, 400, "invalid_topic"},
		{"topic with space", "application/json", `{"topic":"a b","data":"x"}`, testKey, 400, "invalid_topic"},
		{"topic with newline", "application/json", `{"topic":"a\nb","data":"x"}`, testKey, 400, "invalid_topic"},
		{"topic too long", "application/json", `{"topic":"` + strings.Repeat("t", 257) + `"}`, testKey, 400, "invalid_topic"},
		{"type with LF", "application/json", `{"topic":"a","type":"x\ndata: evil"}`, testKey, 400, "invalid_type"},
		{"type with CR", "application/json", `{"topic":"a","type":"x\revil"}`, testKey, 400, "invalid_type"},
		{"type with NUL", "application/json", `{"topic":"a","type":"x\u0000"}`, testKey, 400, "invalid_type"},
		{"reserved type", "application/json", `{"topic":"a","type":"herald.gap"}`, testKey, 400, "invalid_type"},
		{"form type with LF", "application/x-www-form-urlencoded", "topic=a&type=x%0Aevil&data=1", testKey, 400, "invalid_type"},
		{"event too large", "application/json", `{"topic":"a","data":"` + strings.Repeat("x", 1025) + `"}`, testKey, 413, "event_too_large"},
		{"body too large", "application/json", `{"topic":"a","data":"` + strings.Repeat("x", 5000) + `"}`, testKey, 413, "body_too_large"},
		{"batch too large", "application/json", `[{"topic":"a"},{"topic":"a"},{"topic":"a"},{"topic":"a"}]`, testKey, 413, "batch_too_large"},
		{"empty batch", "application/json", `[]`, testKey, 400, "empty_batch"},
		{"bad event in batch", "application/json", `[{"topic":"a"},{"topic":"?"}]`, testKey, 400, "invalid_topic"},
		{"unsupported media type", "application/xml", `<x/>`, testKey, 415, "unsupported_media_type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, raw := n.post(c.contentType, []byte(c.body), c.key)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, raw)
			}
			var e errorBody
			if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code != c.code || e.Error.Message == "" {
				t.Fatalf("body %s: want code %q and a message (%v)", raw, c.code, err)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	// None of them reached the log.
	if head := headOffset(t, n, "a"); head != 0 {
		t.Fatalf("refused publishes appended %d events", head)
	}
}

func headOffset(t *testing.T, n *testNode, topic string) uint64 {
	t.Helper()
	p, err := n.eng.Head(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return p.Offset
}

// Newlines in data become separate data: lines; they can never start a new
// field or a new event.
func TestNewlinesInDataCannotInjectIntoTheStream(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	s := n.dial("", "a")
	waitConnected(t, n, 1)
	hostile := []string{
		"x\n\nevent: evil\ndata: injected",
		"x\r\n\r\nid: 999\r\n\r\n",
		"x\rretry: 1\r\rdata: y",
		"\n\n",
	}
	for _, h := range hostile {
		n.publish("a", "note", h)
	}
	for _, h := range hostile {
		ev := next(t, s, 5*time.Second)
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(h)
		if ev.Type != "note" || ev.Data != want || ev.Topic != "a" {
			t.Fatalf("event %+v, want type note with data %q", ev, want)
		}
	}
	expectQuiet(t, s, 100*time.Millisecond)
}

func TestPublishFormsAndBatches(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	s := n.dial("", "a", "b")
	waitConnected(t, n, 1)

	resp, raw := n.post("application/x-www-form-urlencoded", []byte("topic=a&type=t&data=hello+form"), testKey)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("form: %d %s", resp.StatusCode, raw)
	}
	resp, raw = n.post("application/json", []byte(`[{"topic":"b","data":{"k":[1, 2]}},{"topic":"a","data":"two"}]`), testKey)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch: %d %s", resp.StatusCode, raw)
	}
	var results []publishResult
	if err := json.Unmarshal(raw, &results); err != nil || len(results) != 2 || results[0].Topic != "b" || results[1].Offset != 2 {
		t.Fatalf("batch answer %s (%v)", raw, err)
	}
	want := []string{"a hello form", `b {"k":[1,2]}`, "a two"}
	for _, w := range want {
		ev := next(t, s, 5*time.Second)
		if got := ev.Topic + " " + ev.Data; got != w {
			t.Fatalf("got %q, want %q", got, w)
		}
	}
}

func TestStreamRefusesBadRequests(t *testing.T) {
	n := newTestNode(t, nodeOptions{server: Config{MaxTopics: 2}})
	for _, c := range []struct {
		query string
		code  string
	}{
		{"", "invalid_topic"},
		{"topic=a%20b", "invalid_topic"},
		{"topic=a&topic=b&topic=c", "too_many_topics"},
	} {
		resp, err := http.Get(n.srv.URL + "/v1/events?" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		var e errorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Error.Code != c.code {
			t.Errorf("?%s: %d %q, want 400 %q", c.query, resp.StatusCode, e.Error.Code, c.code)
		}
	}
}

// curl -d sends JSON labelled as a form: it is read as JSON.
func TestJSONLabelledAsFormIsReadAsJSON(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	resp, raw := n.post("application/x-www-form-urlencoded", []byte(`{"topic":"rooms/7","type":"state","data":{"phase":"night"}}`), testKey)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	resp, raw = n.post("application/x-www-form-urlencoded", []byte(` [{"topic":"rooms/7"}]`), testKey)
	if resp.StatusCode != http.StatusOK || raw[0] != '[' {
		t.Fatalf("batch: %d %s", resp.StatusCode, raw)
	}
}

// Types EventSource gives a meaning of its own (error, open) and Herald's
// reserved herald. prefix are refused on every publish path; message and
// other spellings are ordinary types.
func TestPublishRefusesReservedTypesOnEveryPath(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	for _, typ := range []string{"error", "open", "herald.gap", "herald.anything"} {
		q, _ := json.Marshal(typ)
		for path, c := range map[string]struct{ contentType, body string }{
			"json":  {"application/json", `{"topic":"a","type":` + string(q) + `,"data":"x"}`},
			"batch": {"application/json", `[{"topic":"a","data":"x"},{"topic":"a","type":` + string(q) + `}]`},
			"form":  {"application/x-www-form-urlencoded", "topic=a&data=x&type=" + url.QueryEscape(typ)},
		} {
			resp, raw := n.post(c.contentType, []byte(c.body), testKey)
			var e errorBody
			_ = json.Unmarshal(raw, &e)
			if resp.StatusCode != http.StatusBadRequest || e.Error.Code != "invalid_type" || !strings.Contains(e.Error.Message, typ) && !strings.Contains(e.Error.Message, "herald.") {
				t.Errorf("%s type %q: %d %s, want 400 invalid_type naming it", path, typ, resp.StatusCode, raw)
			}
		}
	}
	if head := headOffset(t, n, "a"); head != 0 {
		t.Fatalf("refused publishes appended %d events", head)
	}
	for _, typ := range []string{"message", "Error", "OPEN", "opened", "errors", "herald"} {
		n.publish("a", typ, "x")
	}
}

// encoding/json turns invalid UTF-8 and lone surrogate escapes into U+FFFD
// without a word; Herald refuses them instead, like the form path does.
func TestPublishRefusesTextThatIsNotUnicode(t *testing.T) {
	n := newTestNode(t, nodeOptions{})
	for _, c := range []struct {
		name, contentType, body, code string
	}{
		{"type bytes", "application/json", "{\"topic\":\"a\",\"type\":\"t\xff\"}", "invalid_type"},
		{"type surrogate", "application/json", `{"topic":"a","type":"t\ud800"}`, "invalid_type"},
		{"topic bytes", "application/json", "{\"topic\":\"a\xc3\"}", "invalid_topic"},
		{"data string bytes", "application/json", "{\"topic\":\"a\",\"data\":\"x\xff\"}", "invalid_data"},
		{"data string overlong", "application/json", "{\"topic\":\"a\",\"data\":\"\xc0\xaf\"}", "invalid_data"},
		{"data string lone low surrogate", "application/json", `{"topic":"a","data":"x\udc00y"}`, "invalid_data"},
		{"data string high surrogate then text", "application/json", `{"topic":"a","data":"\ud83dx"}`, "invalid_data"},
		{"data object bytes", "application/json", "{\"topic\":\"a\",\"data\":{\"k\":\"\xff\"}}", "invalid_data"},
		{"data object key bytes", "application/json", "{\"topic\":\"a\",\"data\":{\"\xfe\":1}}", "invalid_data"},
		{"data object surrogate", "application/json", `{"topic":"a","data":["\udfff"]}`, "invalid_data"},
		{"batch data bytes", "application/json", "[{\"topic\":\"a\"},{\"topic\":\"a\",\"data\":\"\xff\"}]", "invalid_data"},
		{"labelled as a form", "application/x-www-form-urlencoded", "{\"topic\":\"a\",\"data\":\"\xff\"}", "invalid_data"},
		{"form type", "application/x-www-form-urlencoded", "topic=a&type=%FF", "invalid_type"},
		{"form data", "application/x-www-form-urlencoded", "topic=a&data=%FF", "invalid_data"},
	} {
		resp, raw := n.post(c.contentType, []byte(c.body), testKey)
		var e errorBody
		_ = json.Unmarshal(raw, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Error.Code != c.code {
			t.Errorf("%s: %d %s, want 400 %s", c.name, resp.StatusCode, raw, c.code)
		}
	}
	if head := headOffset(t, n, "a"); head != 0 {
		t.Fatalf("refused publishes appended %d events", head)
	}

	// Real text passes untouched: a U+FFFD sent on purpose, an escaped
	// surrogate pair, an escaped backslash before a u.
	s := n.dial("", "a")
	waitConnected(t, n, 1)
	resp, raw := n.post("application/json", []byte(`[{"topic":"a","type":"é","data":"\ufffd \ud83d\ude00 é"},{"topic":"a","data":{"k":"\\ud800"}},{"topic":"a","data":"\\udc00"}]`), testKey)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid text: %d %s", resp.StatusCode, raw)
	}
	for _, want := range [][2]string{{"é", "\ufffd 😀 é"}, {"message", `{"k":"\\ud800"}`}, {"message", `\udc00`}} {
		ev := next(t, s, 5*time.Second)
		if ev.Type != want[0] || ev.Data != want[1] {
			t.Fatalf("got type %q data %q, want %q", ev.Type, ev.Data, want)
		}
	}
}

// readBody reads what io.ReadAll reads, whatever length the request states.
func TestReadBodyReadsTheWholeBody(t *testing.T) {
	body := strings.Repeat("0123456789", 100)
	for _, size := range []int64{-1, 0, 1, 999, 1000, 1001, 5000, 10000} {
		for _, r := range map[string]io.Reader{
			"whole":    strings.NewReader(body),
			"one byte": iotest.OneByteReader(strings.NewReader(body)),
			"data+EOF": iotest.DataErrReader(strings.NewReader(body)),
		} {
			got, err := readBody(r, size, 5000)
			if err != nil || string(got) != body {
				t.Fatalf("stated %d: %d bytes, %v", size, len(got), err)
			}
		}
	}
	// A stated length past what is allocated up front is read whole too.
	big := strings.Repeat("x", 3*readBodyUpFront+7)
	for _, size := range []int64{int64(len(big)), int64(len(big)) - 1000, int64(len(big)) + 1000} {
		got, err := readBody(strings.NewReader(big), size, 1<<20)
		if err != nil || string(got) != big {
			t.Fatalf("stated %d of %d: %d bytes, %v", size, len(big), len(got), err)
		}
		if c := cap(got); c > 2*len(big) {
			t.Fatalf("stated %d of %d: a buffer of %d bytes", size, len(big), c)
		}
	}
	if _, err := readBody(iotest.TimeoutReader(strings.NewReader(body)), 1000, 5000); err != iotest.ErrTimeout {
		t.Fatalf("error %v, want the reader's", err)
	}
	// Over the limit, whatever the stated length: MaxBytesReader's error.
	for _, size := range []int64{-1, 100, 1000} {
		rec := httptest.NewRecorder()
		_, err := readBody(http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(body)), 100), size, 100)
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			t.Fatalf("stated %d: error %v, want *http.MaxBytesError", size, err)
		}
	}
}

func TestMediaTypeIsParseMediaType(t *testing.T) {
	for _, ct := range []string{"", "application/json", "application/x-www-form-urlencoded", "text/plain", "Application/JSON", "application/json; charset=utf-8", " application/json", "application/json;", "application/json; charset", "text/plain;x=1", "application/xml", "garbage"} {
		want, _, _ := mime.ParseMediaType(ct)
		if got := mediaType(ct); got != want {
			t.Errorf("%q: %q, want %q", ct, got, want)
		}
	}
}
