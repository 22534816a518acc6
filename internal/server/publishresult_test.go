package server

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
)

// checkResultAnswer fails t unless writeResult answers r exactly as writeJSON
// does, and reports whether appendResult wrote it itself.
func checkResultAnswer(t *testing.T, r publishResult) bool {
	t.Helper()
	var want bytes.Buffer
	if err := json.NewEncoder(&want).Encode(r); err != nil {
		t.Fatal(err)
	}
	got, ok := appendResult([]byte("prefix"), r)
	if ok && string(got) != "prefix"+want.String() {
		t.Fatalf("%+v:\nappendResult %q\nencoding/json     %q", r, got[len("prefix"):], want.String())
	}
	if !ok && string(got) != "prefix" {
		t.Fatalf("%+v: appendResult refused it but appended %q", r, got)
	}
	fast, slow := httptest.NewRecorder(), httptest.NewRecorder()
	writeResult(fast, r)
	writeJSON(slow, http.StatusOK, r)
	if fast.Code != slow.Code || !reflect.DeepEqual(fast.Header(), slow.Header()) || fast.Body.String() != slow.Body.String() {
		t.Fatalf("%+v:\nwriteResult %d %v %q\nwriteJSON   %d %v %q", r, fast.Code, fast.Header(), fast.Body, slow.Code, slow.Header(), slow.Body)
	}
	return ok
}

// FuzzAppendResult: the single-event answer is what encoding/json writes.
func FuzzAppendResult(f *testing.F) {
	f.Add("AQAB3q2-7wEFAA", "users/123", uint64(5))
	f.Add("", "", uint64(0))
	f.Add("x", "a", uint64(math.MaxUint64))
	f.Add(`<a href="x">&amp;</a>`, "tab\there", uint64(1))
	f.Add("\u2028\u2029\x7f\x00\\", "\xff\xfe é", uint64(10))
	f.Fuzz(func(t *testing.T, id, topic string, offset uint64) {
		checkResultAnswer(t, publishResult{ID: id, Topic: topic, Offset: offset})
	})
}

// Answers for real events never need encoding/json.
func TestAppendResultWritesEventAnswers(t *testing.T) {
	for _, topic := range []string{"a", "users/123", "rooms/7:chat", "A-Z.a_z~0+9@x/y", string(bytes.Repeat([]byte("t"), engine.MaxTopicLen))} {
		if err := engine.ValidateTopic(topic); err != nil {
			t.Fatal(err)
		}
		for _, pos := range []engine.Position{{}, {Epoch: "iqnrlyabq3w6s", Offset: 1}, {Epoch: "e", Offset: math.MaxUint64}} {
			r := publishResult{ID: hub.EncodeCursor(topic, pos, 0), Topic: topic, Offset: pos.Offset}
			if !checkResultAnswer(t, r) {
				t.Errorf("%+v left to encoding/json", r)
			}
		}
	}
}

// BenchmarkWriteResult answers one published event through encoding/json and
// through appendResult.
func BenchmarkWriteResult(b *testing.B) {
	r := publishResult{ID: hub.EncodeCursor("users/123", engine.Position{Epoch: "iqnrlyabq3w6s", Offset: 5}, 0), Topic: "users/123", Offset: 5}
	w := newDiscardWriter()
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeJSON(w, http.StatusOK, r)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			writeResult(w, r)
		}
	})
}
