package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// HTTPTemplate is how to publish one event to an SSE server other than
// Herald. In URL, {topic} and {data} are replaced query-escaped; in Body and
// header values, {topic} and {data} are replaced as they are, and
// {topic_json} and {data_json} as JSON strings.
type HTTPTemplate struct {
	Method string // [POST]
	URL    string
	Header http.Header
	Body   string
}

// ParseHeader reads "Name: value" into h.
func ParseHeader(h http.Header, line string) error {
	k, v, ok := strings.Cut(line, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("header %q: want Name: value", line)
	}
	h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	return nil
}

// templatePublisher publishes one event per request following an HTTPTemplate.
type templatePublisher struct {
	client *http.Client
	tmpl   HTTPTemplate
	topics []string
	pad    int
}

func (p *templatePublisher) maxBatch() int { return 1 }

func (p *templatePublisher) send(ctx context.Context, evs []outEvent) error {
	for _, ev := range evs {
		topic := p.topics[ev.topic]
		data := string(appendPayload(nil, ev.seq, ev.ts, p.pad))
		u := strings.NewReplacer("{topic}", url.QueryEscape(topic), "{data}", url.QueryEscape(data)).Replace(p.tmpl.URL)
		tj, _ := json.Marshal(topic)
		dj, _ := json.Marshal(data)
		r := strings.NewReplacer("{topic_json}", string(tj), "{data_json}", string(dj), "{topic}", topic, "{data}", data)
		method := p.tmpl.Method
		if method == "" {
			method = http.MethodPost
		}
		var body *strings.Reader
		if p.tmpl.Body != "" {
			body = strings.NewReader(r.Replace(p.tmpl.Body))
		}
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return err
		}
		if body != nil {
			req, _ = http.NewRequestWithContext(ctx, method, u, body)
		}
		for k, vs := range p.tmpl.Header {
			for _, v := range vs {
				req.Header.Add(k, r.Replace(v))
			}
		}
		if err := do(p.client, req); err != nil {
			return err
		}
	}
	return nil
}
