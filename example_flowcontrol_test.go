package flows_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// Events of one account are delivered one at a time and in order, even when
// one of them is retried, while different accounts are handled concurrently.
func ExampleDeliveryOrdered() {
	var mu sync.Mutex
	seen := map[string][]string{}
	failedOnce := false
	ledger := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		mu.Lock()
		defer mu.Unlock()
		if e.ID() == "a-1" && !failedOnce {
			failedOnce = true
			return nil, fmt.Errorf("database busy") // retried before a-2 is delivered
		}
		account := flows.PartitionKey(e)
		seen[account] = append(seen[account], e.ID())
		return nil, nil
	})

	flow, err := (&flows.Sequence{
		Steps: []flows.Step{{Subscriber: ledger}},
		Delivery: &flows.Delivery{
			Order:        flows.DeliveryOrdered, // by the partitionkey extension
			Retry:        3,
			BackoffDelay: 10 * time.Millisecond,
		},
	}).Start(context.Background(), flows.WithConcurrency(8))
	if err != nil {
		panic(err)
	}
	for i := 1; i <= 3; i++ {
		for _, account := range []string{"a", "b"} {
			e := event.New()
			e.SetID(fmt.Sprintf("%s-%d", account, i))
			e.SetSource("/bank")
			e.SetType("transfer")
			e.SetExtension(flows.ExtensionPartitionKey, account)
			if err := flow.Send(context.Background(), e); err != nil {
				panic(err)
			}
		}
	}
	if err := flow.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println("a:", strings.Join(seen["a"], " "))
	fmt.Println("b:", strings.Join(seen["b"], " "))
	// Output:
	// a: a-1 a-2 a-3
	// b: b-1 b-2 b-3
}

// A subscriber limited to 100 events per second with bursts of 10: the
// senders are held back by the channel's capacity, nothing is dropped.
func ExampleDelivery_rateLimit() {
	var mu sync.Mutex
	n := 0
	api := flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		mu.Lock()
		n++
		mu.Unlock()
		return nil, nil
	})
	flow, err := (&flows.Sequence{Steps: []flows.Step{{
		Subscriber: api,
		Delivery:   &flows.Delivery{RateLimit: 100, RateBurst: 10, MaxInFlight: 4},
	}}}).Start(context.Background(), flows.WithCapacity(8))
	if err != nil {
		panic(err)
	}
	start := time.Now()
	for i := range 30 {
		e := event.New()
		e.SetID(fmt.Sprint(i))
		e.SetSource("/example")
		e.SetType("call")
		if err := flow.Send(context.Background(), e); err != nil {
			panic(err)
		}
	}
	if err := flow.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	// 10 at once, then one every 10 ms.
	fmt.Println("delivered:", n, "in at least 190ms:", time.Since(start) >= 190*time.Millisecond)
	// Output:
	// delivered: 30 in at least 190ms: true
}
