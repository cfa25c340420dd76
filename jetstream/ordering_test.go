package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/jetstream"
)

// Within one process, a subscription ordered by key keeps the order of each
// key on a JetStream channel too, retries included.
func TestOrderedByKeyInOneProcess(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	_, js := s.connect(t)
	const keys, perKey = 10, 20
	var mu sync.Mutex
	next := map[string]int{}
	attempts := map[string]int{}
	var problems []string
	delivered, all := 0, make(chan struct{})
	h := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		key := flows.PartitionKey(e)
		var seq int
		fmt.Sscanf(e.Subject(), "%d", &seq)
		mu.Lock()
		defer mu.Unlock()
		if seq != next[key] {
			problems = append(problems, fmt.Sprintf("%s: %d delivered when %d was due", key, seq, next[key]))
		}
		attempts[e.ID()]++
		if seq%7 == 3 && attempts[e.ID()] == 1 {
			return nil, errors.New("transient")
		}
		next[key] = seq + 1
		if delivered++; delivered == keys*perKey {
			close(all)
		}
		return nil, nil
	})
	f, err := (&flows.Sequence{Name: "ordered", Steps: []flows.Step{{
		Subscriber: h,
		Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, Retry: 2, BackoffDelay: 5 * time.Millisecond},
	}}}).Start(ctx, flows.WithConcurrency(4), flows.WithChannels(jetstream.Channels(js, jetstream.WithPrefix("ordertest"))))
	if err != nil {
		t.Fatal(err)
	}
	for seq := range perKey {
		for k := range keys {
			e := event.New()
			e.SetID(fmt.Sprintf("k%d-%d", k, seq))
			e.SetSource("/jetstream/ordering-test")
			e.SetType("dev.flows.test")
			e.SetSubject(fmt.Sprint(seq))
			e.SetExtension(flows.ExtensionPartitionKey, fmt.Sprintf("k%d", k))
			if err := f.Send(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Shutdown leaves in the stream what this run did not take: wait.
	select {
	case <-all:
	case <-ctx.Done():
		t.Error("not every event was delivered")
	}
	if err := f.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for k := range keys {
		if got := next[fmt.Sprintf("k%d", k)]; got != perKey {
			t.Errorf("key k%d: %d events delivered, want %d", k, got, perKey)
		}
	}
}
