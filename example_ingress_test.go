package flows_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

func ExampleNewIngress() {
	display := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		fmt.Printf("flow got %s from %s: %s\n", e.ID(), e.Source(), e.Data())
		return nil, nil
	})
	flow, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: display}}}).Start(context.Background())
	if err != nil {
		panic(err)
	}
	defer flow.Shutdown(context.Background())

	// Synchronous: the answer comes once the flow is done with the event.
	srv, err := flows.ListenAndServe("127.0.0.1:0", flows.NewIngress(flow, flows.IngressSynchronous()))
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())

	// Any CloudEvents client will do; this is binary mode by hand.
	req, _ := http.NewRequest(http.MethodPost, srv.URL(), strings.NewReader(`{"message":"hello"}`))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "42")
	req.Header.Set("Ce-Source", "/curl")
	req.Header.Set("Ce-Type", "greeting")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)

	resp, _ = http.Post(srv.URL(), "text/plain", strings.NewReader("not an event"))
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// flow got 42 from /curl: {"message":"hello"}
	// 202 Accepted
	// 400 Bad Request
}
