package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"
)

// Publisher publishes events to Herald's POST /v1/publish, retrying what may
// succeed later with the same idempotency keys, so that a retry after a lost
// answer does not store an event twice.
//
// Its zero value is not usable: URL and Key are required. The other fields
// have defaults. A Publisher is safe for concurrent use as long as its fields
// are not changed while it is in use.
type Publisher struct {
	// URL is the base URL of the Herald node, e.g. http://127.0.0.1:8080;
	// /v1/publish is appended to its path.
	URL string
	// Key is the publish key or a token that grants the topics, sent as
	// Authorization: Bearer.
	Key string
	// HTTPClient defaults to a client with a 30s timeout per attempt: a node
	// that never answers is then retried like one that dropped the
	// connection.
	HTTPClient *http.Client

	// MaxAttempts bounds the attempts of one call, the first included;
	// default 10.
	MaxAttempts int
	// MaxElapsed bounds the time from a call's first attempt to the start of
	// its last one; default 1 minute. Keep it well under the server's
	// -idempotency-window (default 2m): a retry after the window has passed
	// is a new event.
	MaxElapsed time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff, with full
	// jitter, between attempts; defaults 100ms and 5s. A Retry-After from
	// the server is waited for even when it is longer than MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// Message is one event to publish.
type Message struct {
	// Topic is required, e.g. rooms/7.
	Topic string
	// Type is the SSE event type; empty is "message".
	Type string
	// Data is delivered to subscribers byte for byte: it is sent as a JSON
	// string, so it must be UTF-8 text. For a JSON payload pass the output
	// of json.Marshal.
	Data []byte
	// Key is the event's idempotency key: 1 to 128 visible ASCII characters
	// (! to ~), unique per topic. When empty, one is generated for the call
	// and kept across its retries. Set it to name the event across calls
	// too, e.g. the id of an outbox row, so that publishing the row again
	// after a crash appends nothing while the server remembers the key
	// (-idempotency-window, default 2m).
	Key string
}

// Result is where the server stored an event. When a key had been seen
// within the idempotency window, it is the first publish's result.
type Result struct {
	// ID is a cursor of the event's topic: a stream of that topic given it
	// as Config.LastEventID resumes right after the event.
	ID     string `json:"id"`
	Topic  string `json:"topic"`
	Offset uint64 `json:"offset"`
}

// PublishError is an error answer from the server. Code and Message come
// from Herald's JSON error body {"error":{"code","message"}} (see
// docs/api.md). A 2xx answer that is not Herald's, such as a proxy's page,
// has the Code unexpected_response and is not retried.
type PublishError struct {
	Status  int
	Code    string // e.g. invalid_topic, forbidden_topic, rate_limited, engine_unavailable
	Message string
}

func (e *PublishError) Error() string {
	return "client: publish: " + describeAnswer(e.Status, e.Code, e.Message)
}

// Temporary reports whether a retry may succeed: 408, 429 and 5xx. Other
// statuses mean nothing was stored and the same request will fail again.
func (e *PublishError) Temporary() bool {
	return (&HTTPError{Status: e.Status}).Temporary()
}

// BatchError is a batch that the server appended in part (207 Multi-Status)
// on the last attempt. Retrying the whole batch with the same Messages is
// safe: each event carries its idempotency key, so the events already
// appended are answered again and only the rest is appended, within the
// server's idempotency window. PublishBatch already does so until its retry
// limits; give caller-chosen Keys to retry later from another call.
type BatchError struct {
	// Results holds, per event of the batch in order, where it was stored;
	// only the Topic for an event that was not appended.
	Results []Result
	// Errs holds, per event, nil for an appended event and why it was not
	// appended otherwise.
	Errs []*PublishError
}

func (e *BatchError) Error() string {
	n := 0
	var first *PublishError
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	s := fmt.Sprintf("client: publish: %d of %d events not appended", n, len(e.Errs))
	if first != nil {
		s += ": " + first.Code
	}
	return s
}

// Failed returns the indexes of the events that were not appended.
func (e *BatchError) Failed() []int {
	var idx []int
	for i, err := range e.Errs {
		if err != nil {
			idx = append(idx, i)
		}
	}
	return idx
}

// maxKeyLen is the server's limit on an idempotency key.
const maxKeyLen = 128

const (
	defaultMaxAttempts       = 10
	defaultMaxElapsed        = time.Minute
	defaultPublishMaxBackoff = 5 * time.Second
	maxResponseSize          = 4 << 20 // 1000 results fit many times over
)

var defaultPublishClient = &http.Client{Timeout: 30 * time.Second}

// Publish publishes one event and returns where it was stored. It retries
// network errors, 408, 429 and 5xx answers, with the same idempotency key,
// until the event is stored, another answer comes, MaxAttempts or
// MaxElapsed is reached, or ctx ends. An error answer is a *PublishError
// (find it with errors.As, also in the error of a call that gave up).
func (p *Publisher) Publish(ctx context.Context, m Message) (Result, error) {
	key := m.Key
	if key == "" {
		key = newKey()
	}
	body, err := encodeMessage(m, "")
	if err != nil {
		return Result{}, err
	}
	if err := checkKey(key); err != nil {
		return Result{}, err
	}
	var res Result
	err = p.do(ctx, body, key, func(status int, b []byte) (bool, error) {
		if status != http.StatusOK || json.Unmarshal(b, &res) != nil {
			return false, unexpected(status, b)
		}
		return false, nil
	})
	return res, err
}

// PublishBatch publishes events in one request, appended in order, and
// returns their results in the same order. Each event without a Key is given
// one made of a key drawn for the call and its index. It retries like
// Publish, and also a 207 answer, which is a batch appended in part: the
// retry sends the whole batch again with the same keys, which appends only
// what is missing. When the last attempt was a 207 the error is a
// *BatchError with the per-event outcome.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []Message) ([]Result, error) {
	if len(msgs) == 0 {
		return nil, errors.New("client: publish: empty batch")
	}
	callKey := newKey()
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, m := range msgs {
		key := m.Key
		if key == "" {
			key = callKey + "-" + strconv.Itoa(i)
		}
		if err := checkKey(key); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		b, err := encodeMessage(m, key)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	var results []Result
	err := p.do(ctx, buf.Bytes(), "", func(status int, b []byte) (bool, error) {
		switch status {
		case http.StatusOK:
			if err := json.Unmarshal(b, &results); err != nil || len(results) != len(msgs) {
				return false, unexpected(status, b)
			}
			return false, nil
		case http.StatusMultiStatus:
			// Appended in part: the same batch again appends the rest.
			if berr, ok := parsePartial(b, len(msgs)); ok {
				return true, berr
			}
		}
		return false, unexpected(status, b)
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// do posts body until an attempt is final. key, if set, is sent as the
// Idempotency-Key header. decode reads a 2xx answer; it reports an error and
// whether the attempt may be retried.
func (p *Publisher) do(ctx context.Context, body []byte, key string, decode func(int, []byte) (retry bool, err error)) error {
	endpoint, err := url.JoinPath(p.URL, "v1/publish")
	if err != nil {
		return fmt.Errorf("client: publish: URL: %w", err)
	}
	if u, _ := url.Parse(endpoint); u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("client: publish: URL %q: want http or https", p.URL)
	}
	hc := p.HTTPClient
	if hc == nil {
		hc = defaultPublishClient
	}
	maxAttempts := p.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = defaultMaxAttempts
	}
	maxElapsed := p.MaxElapsed
	if maxElapsed <= 0 {
		maxElapsed = defaultMaxElapsed
	}
	minBackoff, maxBackoff := p.MinBackoff, p.MaxBackoff
	if minBackoff <= 0 {
		minBackoff = defaultMinBackoff
	}
	if maxBackoff <= 0 {
		maxBackoff = defaultPublishMaxBackoff
	}
	start := time.Now()
	var last error // the last attempt's error, kept to tell why ctx's end came before success
	for attempt := 1; ; attempt++ {
		wait, retry, err := p.attempt(ctx, hc, endpoint, body, key, decode)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			// An attempt cut by ctx says nothing: report the one before.
			if last == nil {
				last = err
			}
			return fmt.Errorf("client: publish: %w; last attempt: %w", ctx.Err(), last)
		}
		last = err
		if !retry {
			return err
		}
		d := delay(minBackoff, maxBackoff, attempt, wait)
		if attempt >= maxAttempts || time.Since(start)+d > maxElapsed {
			return fmt.Errorf("client: publish: gave up after %d attempts in %v: %w", attempt, time.Since(start).Round(time.Millisecond), err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("client: publish: %w; last attempt: %w", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// attempt makes one request. It returns the delay the server asked for,
// whether the error may be retried, and the error.
func (p *Publisher) attempt(ctx context.Context, hc *http.Client, endpoint string, body []byte, key string, decode func(int, []byte) (bool, error)) (wait time.Duration, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, false, fmt.Errorf("client: publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.Key)
	if key != "" {
		// net/http also treats a request with this header as idempotent, so
		// it may resend it by itself on a reused connection that dropped.
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, retryable(err), err
	}
	defer resp.Body.Close()
	// The answer may be lost after the event was stored: a body cut short
	// is retried like a dropped connection, and the key dedupes it.
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize))
	if err != nil {
		return 0, retryable(err), err
	}
	wait = retryAfter(resp.Header, time.Now())
	if resp.StatusCode/100 == 2 {
		retry, err := decode(resp.StatusCode, b)
		return wait, retry, err
	}
	herr := readHTTPError(&http.Response{StatusCode: resp.StatusCode, Body: io.NopCloser(bytes.NewReader(b))})
	perr := &PublishError{Status: herr.Status, Code: herr.Code, Message: herr.Message}
	return wait, perr.Temporary(), perr
}

// retryable reports whether a failed request may succeed if made again: a
// connection that failed, was refused, reset, closed or timed out may work
// next time; a certificate the client does not trust, or a TLS alert from the
// server (a client certificate required), will not change.
func retryable(err error) bool {
	// Every error of http.Client.Do is a *url.Error: judge what it wraps.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var cverr *tls.CertificateVerificationError
	var uaerr x509.UnknownAuthorityError
	var hnerr x509.HostnameError
	var cierr x509.CertificateInvalidError
	var alert tls.AlertError
	if errors.As(err, &cverr) || errors.As(err, &uaerr) || errors.As(err, &hnerr) || errors.As(err, &cierr) || errors.As(err, &alert) {
		return false
	}
	var operr *net.OpError
	if errors.As(err, &operr) && operr.Op == "remote error" {
		return false // a TLS alert from the server
	}
	return true
}

// wireMessage is a Message as the server reads it. Data is a JSON string, so
// the server streams its text as is instead of compacting a JSON value.
type wireMessage struct {
	Topic string `json:"topic"`
	Type  string `json:"type,omitempty"`
	Data  string `json:"data,omitempty"`
	ID    string `json:"id,omitempty"`
}

func encodeMessage(m Message, id string) ([]byte, error) {
	if m.Topic == "" {
		return nil, errors.New("client: publish: no topic")
	}
	// encoding/json would replace invalid UTF-8 with U+FFFD without a word.
	if !utf8.ValidString(m.Topic) || !utf8.ValidString(m.Type) {
		return nil, errors.New("client: publish: topic and type must be UTF-8 text")
	}
	if !utf8.Valid(m.Data) {
		return nil, errors.New("client: publish: data must be UTF-8 text")
	}
	return json.Marshal(wireMessage{Topic: m.Topic, Type: m.Type, Data: string(m.Data), ID: id})
}

// checkKey applies the server's rule for keys before anything is sent: a key
// it refuses would fail every attempt.
func checkKey(k string) error {
	bad := len(k) == 0 || len(k) > maxKeyLen
	for i := 0; i < len(k) && !bad; i++ {
		bad = k[i] < '!' || k[i] > '~'
	}
	if bad {
		return fmt.Errorf("client: publish: idempotency key %q: want 1 to %d visible ASCII characters (! to ~)", k, maxKeyLen)
	}
	return nil
}

// newKey returns a random idempotency key: 128 bits, hex.
func newKey() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// parsePartial reads a 207 answer: per event, a result or an error.
func parsePartial(b []byte, n int) (*BatchError, bool) {
	var items []struct {
		Result
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &items); err != nil || len(items) != n {
		return nil, false
	}
	e := &BatchError{Results: make([]Result, n), Errs: make([]*PublishError, n)}
	for i, it := range items {
		if it.Error != nil {
			e.Errs[i] = &PublishError{Status: http.StatusMultiStatus, Code: it.Error.Code, Message: it.Error.Message}
			e.Results[i] = Result{Topic: it.Topic}
			continue
		}
		e.Results[i] = it.Result
	}
	return e, true
}

// unexpected is a 2xx answer that is not Herald's, e.g. a proxy's page.
func unexpected(status int, b []byte) *PublishError {
	herr := readHTTPError(&http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(b))})
	return &PublishError{Status: status, Code: "unexpected_response", Message: herr.Message}
}
