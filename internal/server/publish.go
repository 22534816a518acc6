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
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-hub/herald/engine"
	"github.com/herald-hub/herald/internal/hub"
	"github.com/herald-hub/herald/sse"
)

// MaxTypeLen bounds an event type.
const MaxTypeLen = 128

// publishRequest is one event as a publisher sends it. Data is any JSON value; a
// JSON string is delivered as its text, anything else as compact JSON.
type publishRequest struct {
	Topic string          `json:"topic"`
	Type  string          `json:"type"`
	Data  json.RawMessage `json:"data"`
}

type publishResult struct {
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
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

// handlePublish serves POST /v1/publish: one event or a JSON array of events,
// appended durably before the answer.
func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	cred, aerr := publishCredential(r)
	if aerr != nil {
		s.refuse(w, aerr)
		return
	}
	p, aerr := s.authenticatePublisher(r, cred)
	if aerr != nil {
		s.refuse(w, aerr)
		return
	}
	if aerr := s.allowPublish(w, p); aerr != nil {
		s.refuse(w, aerr)
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
		if !p.CanPublish(ev.Topic) {
			e := forbidden(p, "publish to", ev.Topic)
			if batch {
				e.message = fmt.Sprintf("event %d: %s", i, e.message)
			}
			s.refuse(w, e)
			return
		}
	}
	start := time.Now()
	positions, err := s.eng.Append(r.Context(), events)
	s.metrics.appendLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.publishErrors.Inc()
		s.log.Warn("append failed", "events", len(events), "err", err)
		w.Header().Set("Retry-After", "1")
		s.refuse(w, &apiError{http.StatusServiceUnavailable, "engine_unavailable", "the event was not stored: engine unavailable; retry later"})
		return
	}
	s.metrics.published.Add(float64(len(events)))
	results := make([]publishResult, len(events))
	for i, ev := range events {
		results[i] = publishResult{ID: hub.EncodeCursor(ev.Topic, positions[i]), Topic: ev.Topic, Offset: positions[i].Offset}
	}
	if batch {
		writeJSON(w, http.StatusOK, results)
		return
	}
	writeJSON(w, http.StatusOK, results[0])
}

// parsePublish reads and validates the body: JSON object, JSON array, or form.
func (s *Server) parsePublish(w http.ResponseWriter, r *http.Request) ([]engine.Event, bool, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, false, &apiError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodySize)}
		}
		return nil, false, badRequest("bad_body", "reading the request body: %v", err)
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var reqs []publishRequest
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
		data := form.Get("data")
		if !utf8.ValidString(data) {
			return nil, false, badRequest("invalid_data", "data must be UTF-8 text")
		}
		q, _ := json.Marshal(data)
		reqs = []publishRequest{{Topic: form.Get("topic"), Type: form.Get("type"), Data: q}}
	case "", "application/json", "text/plain":
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) > 0 && trimmed[0] == '[' {
			batch = true
			if err := strictUnmarshal(body, &reqs); err != nil {
				return nil, false, badRequest("bad_json", "malformed JSON array of events: %v", err)
			}
		} else {
			var one publishRequest
			if err := strictUnmarshal(body, &one); err != nil {
				return nil, false, badRequest("bad_json", `malformed JSON event (want {"topic","type","data"}): %v`, err)
			}
			reqs = []publishRequest{one}
		}
	default:
		return nil, false, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json or application/x-www-form-urlencoded"}
	}
	if len(reqs) == 0 {
		return nil, false, badRequest("empty_batch", "the batch holds no events")
	}
	if len(reqs) > s.cfg.MaxBatch {
		return nil, false, &apiError{http.StatusRequestEntityTooLarge, "batch_too_large", fmt.Sprintf("%d events in one request, at most %d", len(reqs), s.cfg.MaxBatch)}
	}
	events := make([]engine.Event, len(reqs))
	for i, req := range reqs {
		ev, err := s.toEvent(req)
		if err != nil {
			if batch {
				err.message = fmt.Sprintf("event %d: %s", i, err.message)
			}
			return nil, false, err
		}
		events[i] = ev
	}
	return events, batch, nil
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

func (s *Server) toEvent(req publishRequest) (engine.Event, *apiError) {
	if err := engine.ValidateTopic(req.Topic); err != nil {
		return engine.Event{}, badRequest("invalid_topic", "%v", err)
	}
	if err := sse.CheckField(req.Type); err != nil {
		return engine.Event{}, badRequest("invalid_type", "type must not contain CR, LF or NUL")
	}
	if !utf8.ValidString(req.Type) { // JSON replaces bad bytes; a form does not
		return engine.Event{}, badRequest("invalid_type", "type must be UTF-8 text")
	}
	if len(req.Type) > MaxTypeLen {
		return engine.Event{}, badRequest("invalid_type", "type is %d bytes, at most %d", len(req.Type), MaxTypeLen)
	}
	if strings.HasPrefix(req.Type, "herald.") {
		return engine.Event{}, badRequest("invalid_type", "types starting with \"herald.\" are reserved")
	}
	data, err := eventData(req.Data)
	if err != nil {
		return engine.Event{}, badRequest("invalid_data", "%v", err)
	}
	if len(data) > s.cfg.MaxEventSize {
		return engine.Event{}, &apiError{http.StatusRequestEntityTooLarge, "event_too_large", fmt.Sprintf("event data is %d bytes, at most %d", len(data), s.cfg.MaxEventSize)}
	}
	return engine.Event{Topic: req.Topic, Type: req.Type, Data: data}, nil
}

// eventData turns the JSON data value into the bytes streamed: a string as its
// text, null or absent as nothing, anything else as compact JSON.
func eventData(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
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
