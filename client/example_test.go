package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"os"
	"time"

	"github.com/herald-hub/herald/client"
)

// Publish an event from a back end. The key names the event across retries
// and across calls: publishing the same outbox row again after a crash
// appends nothing (within the server's idempotency window).
func ExamplePublisher_Publish() {
	p := &client.Publisher{
		URL: "http://127.0.0.1:8080",
		Key: os.Getenv("HERALD_PUBLISH_KEY"),
		// Retries stop at the first limit reached, or when ctx ends.
		MaxAttempts: 5,
		MaxElapsed:  30 * time.Second,
	}
	data, err := json.Marshal(map[string]string{"phase": "night"})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := p.Publish(ctx, client.Message{
		Topic: "rooms/7",
		Type:  "state",
		Data:  data, // delivered byte for byte
		Key:   "outbox-1042",
	})
	var perr *client.PublishError
	switch {
	case errors.As(err, &perr) && !perr.Temporary():
		log.Fatalf("refused, retrying will not help: %s (%s)", perr.Code, perr.Message)
	case err != nil:
		log.Fatalf("not acknowledged, keep the outbox row for later: %v", err)
	}
	log.Printf("stored at offset %d; resume a stream of rooms/7 after it with cursor %s", res.Offset, res.ID)
}

// Publish several events in one request. A batch appended in part ends in a
// *client.BatchError that says which events were stored; sending the same
// messages again is safe when they carry their own keys.
func ExamplePublisher_PublishBatch() {
	p := &client.Publisher{URL: "http://127.0.0.1:8080", Key: os.Getenv("HERALD_PUBLISH_KEY")}
	msgs := []client.Message{
		{Topic: "orders/42", Type: "shipped", Key: "order-42-shipped"},
		{Topic: "users/7", Type: "notice", Data: []byte("your order shipped"), Key: "order-42-notice"},
	}
	results, err := p.PublishBatch(context.Background(), msgs)
	var berr *client.BatchError
	if errors.As(err, &berr) {
		for _, i := range berr.Failed() {
			log.Printf("%s not stored yet: %v", msgs[i].Topic, berr.Errs[i])
		}
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		log.Printf("%s: offset %d", r.Topic, r.Offset)
	}
}
