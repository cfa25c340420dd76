package flowstest_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// A Sequence whose second step keeps failing: after its retries the event
// goes to the dead-letter sink with Knative's error extensions.
func Example_sequenceDeadLetter() {
	ctx := context.Background()
	stock := flowstest.NewRecorder(flowstest.Fail(errors.New("stock service down")))
	dead := flowstest.NewRecorder()
	f, _ := (&flows.Sequence{Name: "orders", Steps: []flows.Step{
		{Subscriber: flowstest.NewRecorder(flowstest.Echo())},
		{Subscriber: stock, Delivery: &flows.Delivery{Retry: 2, DeadLetter: dead}},
	}}).Start(ctx)
	defer f.Close()

	f.Handle(ctx, flowstest.NewEvent("1", "order.created", "/shop", `{"sku": "A1"}`)) // waits until done
	fmt.Println("attempts:", stock.Attempts("1"))
	for _, e := range dead.Events() {
		fmt.Println(flowstest.Summary(e))
		fmt.Println("error:", flowstest.ErrorData(e))
	}
	// Output:
	// attempts: 3
	// id="1" type="order.created" source="/shop" knativeerrorcode="500" knativeerrordata="c3RvY2sgc2VydmljZSBkb3du" knativeerrordest="orders/steps[1]" data={"sku":"A1"}
	// error: stock service down
}

// A Parallel's filters decide which branches see an event.
func Example_parallelFilters() {
	ctx := context.Background()
	amount := func(e event.Event) int {
		var o struct{ Amount int }
		e.DataAs(&o)
		return o.Amount
	}
	large, small := flowstest.NewRecorder(), flowstest.NewRecorder()
	f, _ := (&flows.Parallel{Branches: []flows.Branch{
		{Filter: flows.Match(func(e event.Event) bool { return amount(e) >= 100 }), Subscriber: large},
		{Filter: flows.Match(func(e event.Event) bool { return amount(e) < 100 }), Subscriber: small},
	}}).Start(ctx)
	defer f.Close()

	for i, a := range []int{50, 150, 20} {
		f.Handle(ctx, flowstest.NewEvent(strconv.Itoa(i+1), "order.created", "/shop", map[string]int{"amount": a}))
	}
	fmt.Println("large:", flowstest.IDs(large.Events()))
	fmt.Println("small:", flowstest.IDs(small.Events()))
	// Output:
	// large: [2]
	// small: [1 3]
}

// A scripted subscriber: the first two attempts of each event fail, the
// third replies with the event.
func ExampleRecorder() {
	ctx := context.Background()
	flaky := flowstest.NewRecorder(flowstest.Fail(errors.New("try again")).Times(2), flowstest.Echo())
	out := flowstest.NewRecorder()
	f, _ := (&flows.Sequence{
		Steps: []flows.Step{{Subscriber: flaky, Delivery: &flows.Delivery{Retry: 5}}},
		Reply: out,
	}).Start(ctx)
	defer f.Close()

	f.Handle(ctx, flowstest.NewEvent("1", "greeting", "/test", `{"text": "hi"}`))
	for _, r := range flaky.Records() {
		fmt.Println("attempt", r.Attempt, r.Event.ID())
	}
	fmt.Println("replies:", flowstest.IDs(out.Events()))
	// Output:
	// attempt 1 1
	// attempt 2 1
	// attempt 3 1
	// replies: [1]
}

// Diff compares JSON data semantically and reports each difference at its
// path.
func ExampleDiff() {
	got := flowstest.NewEvent("1", "order.created", "/shop",
		`{"items": [{"sku": "A1", "qty": 2}], "total": 10.0}`,
		flowstest.WithExtension("tenant", "acme"))
	want := flowstest.NewEvent("1", "order.paid", "/shop",
		map[string]any{"total": 10, "items": []any{map[string]any{"sku": "A1", "qty": 3}}})
	fmt.Println(flowstest.Diff(got, want))
	// Output:
	// type: got "order.created", want "order.paid"
	// extension tenant: unexpected "acme"
	// data.items[0].qty: got 2, want 3
}

// An HTTP subscriber under test: the handler is served on 127.0.0.1 and
// reached through an HTTPTarget, so every hop uses the CloudEvents HTTP
// binding.
func ExampleNewServer() {
	ctx := context.Background()
	rec := flowstest.NewRecorder(flowstest.Echo())
	srv := flowstest.NewServer(rec)
	defer srv.Close()

	reply, err := srv.Target().Handle(ctx, flowstest.NewEvent("1", "ping", "/test", `{"n": 1}`))
	fmt.Println(flowstest.Summary(*reply), err)
	fmt.Println("received:", flowstest.IDs(rec.Events()))
	// Output:
	// id="1" type="ping" source="/test" data={"n":1} <nil>
	// received: [1]
}
