package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// outEvent is one event to publish: its topic's index, sequence number and
// the time it was due (Unix ns), which becomes its payload's timestamp.
type outEvent struct {
	topic int
	seq   uint64
	ts    int64
}

// publisher sends events to a server.
type publisher interface {
	// send publishes evs, all accepted or none; evs may be up to maxBatch long.
	send(ctx context.Context, evs []outEvent) error
	maxBatch() int
}

// heraldPublisher posts batches to Herald's POST /v1/publish.
type heraldPublisher struct {
	client *http.Client
	url    string
	key    string
	topics []string
	pad    int
	batch  int // events per request at most
}

func (p *heraldPublisher) maxBatch() int { return p.batch }

func (p *heraldPublisher) send(ctx context.Context, evs []outEvent) error {
	// One event goes as an object, as most applications send it; more as
	// an array.
	b := make([]byte, 0, len(evs)*(80+p.pad)+2)
	if len(evs) > 1 {
		b = append(b, '[')
	}
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"topic":`...)
		b = strconv.AppendQuote(b, p.topics[ev.topic])
		b = append(b, `,"type":"bench","data":`...)
		b = appendPayload(b, ev.seq, ev.ts, p.pad)
		b = append(b, '}')
	}
	if len(evs) > 1 {
		b = append(b, ']')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.key)
	return do(p.client, req)
}

// do sends req and fails unless the answer is 2xx; it drains the body so the
// keep-alive connection is reused.
func do(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publish: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 300)]))
	}
	return nil
}

// newPublishClient returns a client keeping n keep-alive connections. They
// speak HTTP/1.1, over TLS with tlsConf for https:// URLs, whatever the
// streams speak, so the publish path is the same in every mode.
func newPublishClient(n int, tlsConf *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	tr.MaxConnsPerHost = n
	tr.TLSClientConfig = tlsConf.Clone()
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
