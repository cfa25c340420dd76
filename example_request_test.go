package flows_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// A Go service answers with the result of a Sequence: Request returns the
// events that left the flow for the one it was given.
func ExampleFlow_Request() {
	type Quote struct {
		Item  string `json:"item"`
		Price int    `json:"price"`
	}
	price := flows.Typed(func(_ context.Context, q Quote) (Quote, error) {
		q.Price = 10 * len(q.Item)
		return q, nil
	})
	discount := flows.Typed(func(_ context.Context, q Quote) (Quote, error) {
		if strings.HasPrefix(q.Item, "gift") {
			q.Price -= q.Price / 10
		}
		return q, nil
	})
	flow, err := (&flows.Sequence{Name: "quote", Steps: []flows.Step{{Subscriber: price}, {Subscriber: discount}}}).
		Start(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer flow.Shutdown(context.Background())

	for _, item := range []string{"book", "gift card"} {
		e := event.New()
		e.SetID("q-" + item)
		e.SetSource("/shop")
		e.SetType("com.example.quote")
		_ = e.SetData(event.ApplicationJSON, Quote{Item: item})
		outs, err := flow.Request(context.Background(), e)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, out := range outs {
			fmt.Printf("%s: %s\n", out.ID(), out.Data())
		}
	}
	// Output:
	// q-book: {"item":"book","price":40}
	// q-gift card: {"item":"gift card","price":81}
}
