package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-hub/herald/auth"
	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
	"github.com/herald-hub/herald/presence"
	"github.com/herald-hub/herald/sse"
)

// MaxTypeLen bounds an event type.
const MaxTypeLen = 128

// MaxIdempotencyKeyLen bounds an idempotency key (the Idempotency-Key header
// or an event's "id"): room for a UUID, a ULID or a hash, with a prefix.
const MaxIdempotencyKeyLen = 128

// idempotencyKeyHeader names the single event of a publish for retries.
const idempotencyKeyHeader = "Idempotency-Key"

// publishRequest is one event as a publisher sends it in JSON. The fields stay
// raw so their text can be checked before encoding/json decodes it: the
// decoder replaces invalid UTF-8 and lone surrogate escapes with U+FFFD
// without a word. Data is any JSON value; a JSON string is delivered as its
// text, anything else as compact JSON.
type publishRequest struct {
	Topic json.RawMessage `json:"topic"`
	Type  json.RawMessage `json:"type"`
	Data  json.RawMessage `json:"data"`
	ID    json.RawMessage `json:"id"`
}

// eventInput is one event's fields as text, from JSON or a form, before they
// are validated.
type eventInput struct {
	topic, typ string
	data       []byte
	id         string
	hasID      bool // an id was given, maybe empty (which is refused)
}

type publishResult struct {
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
}

// publishFailure is the element of a 207 answer for an event that was not
// appended.
type publishFailure struct {
	Topic string `json:"topic"`
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// apiError is an error with its HTTP status and code.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

// publisher authenticates a request that publishes (a publish key or a
// token, never a cookie or ?access_token=) and applies its rate limit,
// answering the refusal itself.
func (s *Server) publisher(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	cred, aerr := publishCredential(r)
	if aerr == nil {
		var p *auth.Principal
		if p, aerr = s.authenticatePublisher(r, cred); aerr == nil {
			if aerr = s.allowPublish(w, p); aerr == nil {
				return p, true
			}
		}
	}
	s.refuse(w, aerr)
	return nil, false
}

// handlePublish serves POST /v1/publish: one event or a JSON array of events,
// appended durably before the answer.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	p, ok := s.publisher(w, r)
	if !ok {
		return
	}
	events, batch, aerr := s.parsePublish(w, r)
	if aerr != nil {
		s.refuse(w, aerr)
		return
	}
	// Every event's topic is authorized before any is appended: a batch is
	// accepted whole or not at all.
	for i, ev := range events {
		if presence.IsEventTopic(ev.Topic) {
			s.refuse(w, numbered(&apiError{http.StatusForbidden, "reserved_topic", "topic " + ev.Topic + " is reserved: Herald publishes presence changes there"}, batch, i))
			return
		}
		if auth.IsAdmin(ev.Topic) {
			s.refuse(w, numbered(&apiError{http.StatusForbidden, "reserved_topic", "topic " + ev.Topic + " is reserved: Herald publishes its own statistics under " + auth.AdminPrefix + "/"}, batch, i))
			return
		}
		if !p.CanPublish(ev.Topic) {
			s.refuse(w, numbered(forbidden("publish to", ev.Topic), batch, i))
			return
		}
	}
	start := time.Now()
	positions, err := s.eng.Append(r.Context(), events)
	s.metrics.appendLatency.Observe(time.Since(start).Seconds())
	// Appended for some topics only: say which. A single event, or nothing
	// appended, is a plain failure below.
	var partial *engine.AppendError
	if batch && errors.As(err, &partial) && len(positions) == len(events) && slices.ContainsFunc(positions, appended) {
		s.answerPartial(w, events, positions, partial)
		return
	}
	if err != nil {
		s.metrics.publishErrors.Inc()
		s.log.Warn("append failed", "events", len(events), "err", err)
		w.Header().Set("Retry-After", "1")
		// Not "not stored": an append whose write failed after it reached
		// the log may still come back when the store recovers.
		s.refuse(w, &apiError{http.StatusServiceUnavailable, "engine_unavailable", "the event was not acknowledged: engine unavailable; retry later"})
		return
	}
	s.metrics.published.Add(float64(len(events)))
	s.publishes.Add(1)
	s.events.Add(uint64(len(events)))
	results := make([]publishResult, len(events))
	for i, ev := range events {
		// The engine does not return the event's time, so this id carries no
		// check: a resume from it is not compared with the event stored there.
		results[i] = publishResult{ID: hub.EncodeCursor(ev.Topic, positions[i], 0), Topic: ev.Topic, Offset: positions[i].Offset}
	}
	if batch {
		writeJSON(w, http.StatusOK, results)
		return
	}
	writeResult(w, results[0])
}

func appended(p engine.Position) bool { return p != engine.Position{} }

// numbered names event i in err's message when the request was a batch.
func numbered(err *apiError, batch bool, i int) *apiError {
	if batch {
		err.message = fmt.Sprintf("event %d: %s", i, err.message)
	}
	return err
}

// answerPartial answers a batch that the engine appended for some topics
// only: 207, and per event either its result or why it was not appended, so
// the publisher can retry the rest (with the same ids, a retry of the whole
// batch appends only what is missing).
func (s *Server) answerPartial(w http.ResponseWriter, events []engine.Event, positions []engine.Position, perr *engine.AppendError) {
	s.metrics.publishErrors.Inc()
	s.log.Warn("append failed for some topics", "events", len(events), "topics", len(perr.Topics), "err", perr)
	out := make([]any, len(events))
	accepted := 0
	for i, ev := range events {
		if _, failed := perr.Topics[ev.Topic]; failed || !appended(positions[i]) {
			f := publishFailure{Topic: ev.Topic}
			f.Error.Code = "engine_unavailable"
			f.Error.Message = "the event was not acknowledged: engine unavailable for this topic; retry later"
			out[i] = f
			continue
		}
		accepted++
		out[i] = publishResult{ID: hub.EncodeCursor(ev.Topic, positions[i], 0), Topic: ev.Topic, Offset: positions[i].Offset}
	}
	s.metrics.published.Add(float64(accepted))
	s.publishes.Add(1)
	s.events.Add(uint64(accepted))
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusMultiStatus, out)
}

// parsePublish reads and validates the body: JSON object, JSON array, or form.
func (s *Server) parsePublish(w http.ResponseWriter, r *http.Request) ([]engine.Event, bool, *apiError) {
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize), r.ContentLength, s.cfg.MaxBodySize)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, false, &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodySize)}
		}
		return nil, false, badRequest("bad_body", "reading the request body: %v", err)
	}
	ct := mediaType(r.Header.Get("Content-Type"))
	var inputs []eventInput
	batch := false
	if first := bytes.TrimLeft(body, " \t\r\n"); ct == "application/x-www-form-urlencoded" && len(first) > 0 && (first[0] == '{' || first[0] == '[') {
		// `curl -d '{...}'` labels JSON as a form; no form starts with { or [.
		ct = "application/json"
	}
	switch ct {
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, false, badRequest("bad_form", "malformed form body: %v", err)
		}
		in := eventInput{topic: form.Get("topic"), typ: form.Get("type"), data: []byte(form.Get("data"))}
		if !utf8.ValidString(in.typ) {
			return nil, false, badRequest("invalid_type", "type must be UTF-8 text")
		}
		if !utf8.Valid(in.data) {
			return nil, false, badRequest("invalid_data", "data must be UTF-8 text")
		}
		inputs = []eventInput{in}
	case "", "application/json", "text/plain":
		var aerr *apiError
		if inputs, batch, aerr = jsonInputs(body, s.cfg.MaxBatch); aerr != nil {
			return nil, false, aerr
		}
	default:
		return nil, false, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json or application/x-www-form-urlencoded"}
	}
	if len(inputs) == 0 {
		return nil, false, badRequest("empty_batch", "the batch holds no events")
	}
	if keys := r.Header.Values(idempotencyKeyHeader); len(keys) > 0 {
		switch in := &inputs[0]; {
		case len(keys) > 1:
			return nil, false, badRequest("invalid_idempotency_key", "send one Idempotency-Key header, not %d", len(keys))
		case batch:
			return nil, false, badRequest("invalid_idempotency_key", `the Idempotency-Key header names a single event; give each event of a batch its own "id" instead`)
		case in.hasID && in.id != keys[0]:
			return nil, false, badRequest("invalid_idempotency_key", `the Idempotency-Key header and the event's "id" differ; send one of them, or the same key in both`)
		default:
			in.id, in.hasID = keys[0], true
		}
	}
	events := make([]engine.Event, len(inputs))
	for i, in := range inputs {
		ev, err := s.toEvent(in)
		if err != nil {
			return nil, false, numbered(err, batch, i)
		}
		events[i] = ev
	}
	return events, batch, nil
}

// readBodyUpFront bounds the buffer readBody makes before any byte arrives.
const readBodyUpFront = 64 << 10

// readBody reads all of rd. A body whose length the request states, within
// limit, is read into one buffer of that size instead of io.ReadAll's growing
// ones. Every body has a buffer of its own, never pooled: the engine may keep
// the slices of the events it is given.
func readBody(rd io.Reader, size, limit int64) ([]byte, error) {
	if size < 0 || size > limit {
		return io.ReadAll(rd)
	}
	// One byte more than stated, so that the read meeting the end has room;
	// at most readBodyUpFront, so a publisher that states a large body and
	// sends it slowly does not get that memory held for it at once.
	b := make([]byte, 0, min(size+1, readBodyUpFront))
	for {
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			// Past readBodyUpFront; or longer than stated, which
			// net/http does not let through: read on all the same, as
			// io.ReadAll would.
			b = slices.Grow(b, min(max(int(size)+1-len(b), 512), len(b)))
		}
	}
}

// mediaType is the media type of a Content-Type header, as
// mime.ParseMediaType gives it. The values publishers send are already what
// it returns for them (lower case, no parameters), and are common enough to
// skip its cost.
func mediaType(contentType string) string {
	switch contentType {
	case "", "application/json", "application/x-www-form-urlencoded", "text/plain":
		return contentType
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt
}

// jsonInputs decodes a JSON event or array of events: the common shapes by
// scanPublish, anything else, errors included, by strictInputs.
func jsonInputs(body []byte, maxBatch int) ([]eventInput, bool, *apiError) {
	inputs, batch, ok := scanPublish(body)
	if !ok {
		return strictInputs(body, maxBatch)
	}
	if len(inputs) > maxBatch {
		return nil, false, batchTooLarge(len(inputs), maxBatch)
	}
	return inputs, batch, nil
}

// strictInputs decodes a JSON event or array of events with encoding/json,
// and says what is wrong with any other body.
func strictInputs(body []byte, maxBatch int) ([]eventInput, bool, *apiError) {
	var reqs []publishRequest
	batch := false
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		batch = true
		if err := strictUnmarshal(body, &reqs); err != nil {
			return nil, false, badRequest("bad_json", "malformed JSON array of events: %v", err)
		}
	} else {
		var one publishRequest
		if err := strictUnmarshal(body, &one); err != nil {
			return nil, false, badRequest("bad_json", `malformed JSON event (want {"topic","type","data","id"}): %v`, err)
		}
		reqs = []publishRequest{one}
	}
	if len(reqs) > maxBatch {
		return nil, false, batchTooLarge(len(reqs), maxBatch)
	}
	inputs := make([]eventInput, len(reqs))
	for i, req := range reqs {
		in, err := req.input()
		if err != nil {
			return nil, false, numbered(err, batch, i)
		}
		inputs[i] = in
	}
	return inputs, batch, nil
}

func batchTooLarge(n, limit int) *apiError {
	return &apiError{http.StatusRequestEntityTooLarge, "batch_too_large", fmt.Sprintf("%d events in one request, at most %d", n, limit)}
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// reservedTypes are the types a publisher may not use. EventSource fires
// "error" and "open" listeners for its own connection state: an event of
// those types would reach onerror/onopen and look like a dropped or reopened
// connection. "message" is what an event without a type is dispatched as
// anyway, so it is allowed.
var reservedTypes = map[string]bool{"error": true, "open": true}

// reservedPrefix marks Herald's own event types, such as herald.gap.
const reservedPrefix = "herald."

func (s *Server) toEvent(in eventInput) (engine.Event, *apiError) {
	if err := engine.ValidateTopic(in.topic); err != nil {
		return engine.Event{}, badRequest("invalid_topic", "%v", err)
	}
	if err := sse.CheckField(in.typ); err != nil {
		return engine.Event{}, badRequest("invalid_type", "type must not contain CR, LF or NUL")
	}
	if len(in.typ) > MaxTypeLen {
		return engine.Event{}, badRequest("invalid_type", "type is %d bytes, at most %d", len(in.typ), MaxTypeLen)
	}
	if strings.HasPrefix(in.typ, reservedPrefix) {
		return engine.Event{}, badRequest("invalid_type", "type %q: types starting with %q are reserved for Herald's own events", in.typ, reservedPrefix)
	}
	if reservedTypes[in.typ] {
		return engine.Event{}, badRequest("invalid_type", "type %q is reserved: browsers' EventSource fires it for its own connection state", in.typ)
	}
	if len(in.data) > s.cfg.MaxEventSize {
		return engine.Event{}, &apiError{http.StatusRequestEntityTooLarge, "event_too_large", fmt.Sprintf("event data is %d bytes, at most %d", len(in.data), s.cfg.MaxEventSize)}
	}
	if in.hasID {
		if err := checkIdempotencyKey(in.id); err != nil {
			return engine.Event{}, err
		}
	}
	return engine.Event{Topic: in.topic, Type: in.typ, Data: in.data, ID: in.id}, nil
}

// checkIdempotencyKey refuses keys outside 1..MaxIdempotencyKeyLen visible
// ASCII characters: keys travel in a header, and a publisher whose key is cut
// or re-encoded on the way would lose the dedup without a word.
func checkIdempotencyKey(k string) *apiError {
	bad := len(k) == 0 || len(k) > MaxIdempotencyKeyLen
	for i := 0; i < len(k) && !bad; i++ {
		bad = k[i] < '!' || k[i] > '~'
	}
	if bad {
		return badRequest("invalid_idempotency_key", "idempotency key %q: want 1 to %d visible ASCII characters (! to ~, no spaces)", truncate(k, 40), MaxIdempotencyKeyLen)
	}
	return nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// input checks the raw fields' text and decodes them.
func (req publishRequest) input() (eventInput, *apiError) {
	var in eventInput
	var err error
	if in.topic, err = jsonText(req.Topic); err != nil {
		return in, badRequest(codeOf(err, "invalid_topic"), "topic: %v", err)
	}
	if in.typ, err = jsonText(req.Type); err != nil {
		return in, badRequest(codeOf(err, "invalid_type"), "type: %v", err)
	}
	if in.data, err = eventData(req.Data); err != nil {
		return in, badRequest("invalid_data", "data: %v", err)
	}
	if len(req.ID) > 0 && string(req.ID) != "null" {
		if in.id, err = jsonText(req.ID); err != nil {
			return in, badRequest(codeOf(err, "invalid_idempotency_key"), "id: %v", err)
		}
		in.hasID = true
	}
	return in, nil
}

var (
	errNotText   = errors.New("must be UTF-8 text, without unpaired surrogate escapes (\\uD800-\\uDFFF)")
	errNotString = errors.New("must be a JSON string")
)

// codeOf is the error code for err on a field whose bad text has code text:
// a field of the wrong JSON type is malformed JSON.
func codeOf(err error, text string) string {
	if errors.Is(err, errNotString) {
		return "bad_json"
	}
	return text
}

// jsonText decodes a JSON string field; absent or null is empty.
func jsonText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] != '"' {
		return "", errNotString
	}
	if !validText(raw) {
		return "", errNotText
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return "", err
	}
	return str, nil
}

// eventData turns the JSON data value into the bytes streamed: a string as its
// text, null or absent as nothing, anything else as compact JSON.
func eventData(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	// Every string in the value counts, object keys too: a compacted object
	// is streamed as sent, a string is decoded.
	if !validText(raw) {
		return nil, errNotText
	}
	if raw[0] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return nil, err
		}
		return []byte(str), nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// validText reports whether the JSON text raw is UTF-8 and its \u escapes
// name no unpaired surrogate, the two things encoding/json would silently
// turn into U+FFFD. Backslashes occur only inside strings, so raw may be any
// JSON value.
func validText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped byte
		if i >= len(raw) || raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw[i+1:])
		if !ok {
			continue // not an escape encoding/json accepts; it reports it
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return false // a low surrogate with no high one before it
		case r >= 0xD800 && r <= 0xDBFF:
			// A high surrogate must be followed by an escaped low one.
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return false
			}
			lo, ok := hex4(raw[i+3:])
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 6
		}
	}
	return true
}

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
