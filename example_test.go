package flows_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

type Order struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func ExampleSequence() {
	type Msg struct {
		Message string `json:"message"`
	}
	appender := func(suffix string) flows.Handler {
		return flows.Typed(func(_ context.Context, in Msg) (Msg, error) {
			in.Message += suffix
			return in, nil
		})
	}
	display := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		fmt.Printf("%s: %s\n", e.ID(), e.Data())
		return nil, nil
	})

	flow, err := (&flows.Sequence{
		Steps: []flows.Step{
			{Subscriber: appender(" - Handled by 0")},
			{Subscriber: appender(" - Handled by 1")},
			{Subscriber: appender(" - Handled by 2")},
		},
		Reply: display,
	}).Start(context.Background())
	if err != nil {
		panic(err)
	}
	defer flow.Shutdown(context.Background())

	e := event.New()
	e.SetID("1")
	e.SetSource("/example")
	e.SetType("greeting")
	e.SetData(event.ApplicationJSON, Msg{Message: "hello, world!"})
	// Handle waits until the flow is done with the event.
	if _, err := flow.Handle(context.Background(), e); err != nil {
		panic(err)
	}
	// Output:
	// 1: {"message":"hello, world! - Handled by 0 - Handled by 1 - Handled by 2"}
}

func ExampleParallel() {
	isEven := func(e event.Event) bool { return e.Time().Second()%2 == 0 }
	say := func(s string) flows.Handler {
		return flows.Typed(func(context.Context, any) (map[string]string, error) {
			return map[string]string{"message": s}, nil
		})
	}
	display := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		fmt.Printf("%s %s\n", e.Time().Format("15:04:05"), e.Data())
		return nil, nil
	})

	flow, err := (&flows.Parallel{
		Branches: []flows.Branch{
			{Filter: flows.Match(isEven), Subscriber: say("this is even!")},
			{Filter: flows.Match(func(e event.Event) bool { return !isEven(e) }), Subscriber: say("this is odd!")},
		},
		Reply: display,
	}).Start(context.Background())
	if err != nil {
		panic(err)
	}
	defer flow.Shutdown(context.Background())

	for sec := range 2 {
		e := event.New()
		e.SetID(fmt.Sprint(sec))
		e.SetSource("/example")
		e.SetType("tick")
		e.SetTime(time.Date(2020, 9, 15, 11, 32, sec, 0, time.UTC))
		flow.Handle(context.Background(), e)
	}
	// Output:
	// 11:32:00 {"message":"this is even!"}
	// 11:32:01 {"message":"this is odd!"}
}

func ExamplePing() {
	got := make(chan event.Event, 1)
	src, err := (&flows.Ping{
		Name:        "ping-source",
		Schedule:    "* * * * * *", // every second
		ContentType: "application/json",
		Data:        `{"message": "hello, world!"}`,
		Sink: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			select {
			case got <- e:
			default:
			}
			return nil, nil
		}),
	}).Start(context.Background())
	if err != nil {
		panic(err)
	}
	e := <-got
	src.Shutdown(context.Background())
	fmt.Println(e.Type())
	fmt.Println(e.Source())
	fmt.Println(string(e.Data()))
	// Output:
	// dev.knative.sources.ping
	// /apis/v1/namespaces/default/pingsources/ping-source
	// {"message": "hello, world!"}
}

func ExampleDelivery() {
	charge := flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		return nil, errors.New("payment service unavailable")
	})
	deadLetters := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		data, _ := base64.StdEncoding.DecodeString(e.Extensions()[flows.ExtensionErrorData].(string))
		fmt.Println("dead letter:", e.ID())
		fmt.Println("  failed at:", e.Extensions()[flows.ExtensionErrorDest])
		fmt.Println("  code:", e.Extensions()[flows.ExtensionErrorCode])
		fmt.Println("  error:", string(data))
		return nil, nil
	})
	attempts := 0
	counting := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		attempts++
		return charge(ctx, e)
	})

	flow, _ := (&flows.Sequence{
		Name: "orders",
		Steps: []flows.Step{{Subscriber: counting, Delivery: &flows.Delivery{
			Retry:        2,
			BackoffDelay: time.Millisecond,
			DeadLetter:   deadLetters,
		}}},
	}).Start(context.Background())
	defer flow.Shutdown(context.Background())

	e := event.New()
	e.SetID("order-1")
	e.SetSource("/shop")
	e.SetType("order.placed")
	e.SetData(event.ApplicationJSON, Order{ID: "1", Total: 42})
	flow.Handle(context.Background(), e)
	fmt.Println("attempts:", attempts)
	// Output:
	// dead letter: order-1
	//   failed at: orders/steps[0]
	//   code: 500
	//   error: payment service unavailable
	// attempts: 3
}

func ExampleHTTP() {
	// Any CloudEvents HTTP service can be a step; here a Go handler served
	// on 127.0.0.1 plays that part.
	upper := flows.Typed(func(_ context.Context, o Order) (Order, error) {
		o.Total *= 100
		return o, nil
	})
	srv := httptest.NewServer(flows.NewHTTPHandler(upper))
	defer srv.Close()

	flow, _ := (&flows.Sequence{
		Steps: []flows.Step{{Subscriber: flows.HTTP(srv.URL)}},
		Reply: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			fmt.Println(string(e.Data()))
			return nil, nil
		}),
	}).Start(context.Background())
	defer flow.Shutdown(context.Background())

	e := event.New()
	e.SetID("1")
	e.SetSource("/shop")
	e.SetType("order.placed")
	e.SetData(event.ApplicationJSON, Order{ID: "1", Total: 42})
	flow.Handle(context.Background(), e)
	// Output:
	// {"id":"1","total":4200}
}

func ExampleTyped() {
	double := flows.Typed(func(_ context.Context, n int) (int, error) { return 2 * n, nil },
		flows.TypedReplyType("number.doubled"))
	e := event.New()
	e.SetID("1")
	e.SetSource("/example")
	e.SetType("number")
	e.SetData(event.ApplicationJSON, 21)
	reply, _ := double.Handle(context.Background(), e)
	fmt.Println(reply.Type(), string(reply.Data()))
	// Output:
	// number.doubled 42
}
