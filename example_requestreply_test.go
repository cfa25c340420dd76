package flows_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// A service answers a question through a Broker: its Trigger's subscriber
// replies with the question's correlationid as replyid, the reply
// re-enters the broker, and the RequestReply hands it to the request that
// waits for it, in Go or over HTTP.
func ExampleRequestReply() {
	ctx := context.Background()
	quote := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		r := event.New()
		r.SetID("quote-" + e.ID())
		r.SetSource("/pricing")
		r.SetType("com.example.quote")
		r.SetExtension("replyid", e.Extensions()["correlationid"])
		_ = r.SetData(event.ApplicationJSON, map[string]int{"price": 10 * len(e.Data())})
		return &r, nil
	})
	broker, err := (&flows.Broker{Name: "shop", Triggers: []flows.Trigger{
		{Name: "pricing", Filter: flows.Attributes(map[string]string{"type": "com.example.quote.requested"}), Subscriber: quote},
	}}).Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer broker.Shutdown(ctx)
	rr, err := (&flows.RequestReply{Name: "quotes", Broker: broker, Timeout: 5 * time.Second}).Start(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rr.Shutdown(ctx) // before the broker's

	e := event.New()
	e.SetID("1")
	e.SetSource("/shop")
	e.SetType("com.example.quote.requested")
	_ = e.SetData(event.ApplicationJSON, map[string]string{"item": "book"})
	reply, err := rr.Request(ctx, e)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.ID(), reply.Type(), string(reply.Data()))

	// Over HTTP, served with flows.ListenAndServe(addr, rr.Handler()); here, in process.
	req := httptest.NewRequest("POST", rr.Path(), strings.NewReader(`{"item":"pen"}`))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "2")
	req.Header.Set("Ce-Source", "/curl")
	req.Header.Set("Ce-Type", "com.example.quote.requested")
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	rr.Handler().ServeHTTP(w, req)
	fmt.Println(rr.Path(), w.Code, w.Header().Get("Ce-Id"), w.Body)
	// Output:
	// quote-1 com.example.quote {"price":150}
	// /default/quotes 200 quote-2 {"price":140}
}
