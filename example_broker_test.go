package flows_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// A broker with two Triggers: one on new orders, whose subscriber replies
// with an invoice, and one on invoices. The reply enters the broker again,
// where the second Trigger picks it up.
func ExampleBroker() {
	billing := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		fmt.Println("billing got", e.Type(), e.ID())
		invoice := e.Clone()
		invoice.SetType("com.example.invoice.issued")
		return &invoice, nil // enters the broker again
	})
	mail := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		fmt.Println("mail got", e.Type(), e.ID())
		return nil, nil
	})

	broker, err := (&flows.Broker{
		Name: "shop",
		Triggers: []flows.Trigger{
			{Name: "billing", Filter: flows.Attributes(map[string]string{"type": "com.example.order.created"}), Subscriber: billing},
			{Name: "mail", Filters: []flows.Filter{flows.Exact("type", "com.example.invoice.issued")}, Subscriber: mail,
				Delivery: &flows.Delivery{Retry: 3}},
		},
	}).Start(context.Background())
	if err != nil {
		panic(err)
	}
	defer broker.Shutdown(context.Background())

	e := event.New()
	e.SetID("order-1")
	e.SetSource("/shop")
	e.SetType("com.example.order.created")
	// Handle waits for every delivery the event caused, the reply's included.
	if _, err := broker.Handle(context.Background(), e); err != nil {
		panic(err)
	}
	// Output:
	// billing got com.example.order.created order-1
	// mail got com.example.invoice.issued order-1
}

// Filters compose; one that cannot be built is reported by Start, with its
// path, instead of letting every event through as Knative would.
func ExampleFilter() {
	eu := flows.All(
		flows.Prefix("type", "com.example.order."),
		flows.Any(flows.Exact("region", "eu"), flows.CESQL("LOWER(country) IN ('fr', 'de')")),
		flows.Not(flows.Suffix("type", ".test")),
	)
	fmt.Println(eu)

	_, err := (&flows.Broker{Triggers: []flows.Trigger{
		{Filter: eu, Subscriber: flows.Discard},
		{Filter: flows.Any(flows.Exact("Region", "eu")), Subscriber: flows.Discard},
		{Filters: []flows.Filter{flows.CESQL("type = 'a' AND")}, Subscriber: flows.Discard},
	}}).Start(context.Background())
	fmt.Println(errors.Is(err, flows.ErrInvalid))
	fmt.Println(err)
	// Output:
	// all(prefix(type=com.example.order.), any(exact(region=eu), cesql("LOWER(country) IN ('fr', 'de')")), not(suffix(type=.test)))
	// true
	// flows: invalid broker "default": triggers[1].filter.any[0].exact: attribute name "Region": must be lower-case letters and digits, starting with a letter
	// flows: invalid broker "default": triggers[2].filters[0].cesql: expression "type = 'a' AND" does not parse (the CESQL parser gave up: interface conversion: interface is nil, not v2.Expression)
}
