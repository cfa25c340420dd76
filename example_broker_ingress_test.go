package flows_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// Two brokers served on one handler, each at /<namespace>/<broker>, as
// Knative's broker ingress serves them.
func ExampleBrokerIngress() {
	show := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		fmt.Println("shop/orders got", e.Type())
		return nil, nil
	})
	orders, err := (&flows.Broker{Name: "orders", Triggers: []flows.Trigger{{Subscriber: show}}}).Start(context.Background())
	if err != nil {
		panic(err)
	}
	defer orders.Shutdown(context.Background())
	audit, err := (&flows.Broker{Name: "audit"}).Start(context.Background())
	if err != nil {
		panic(err)
	}
	defer audit.Shutdown(context.Background())

	ingress := flows.NewBrokerIngress(flows.IngressSynchronous())
	ingress.Add("shop", "orders", orders)
	ingress.Add("shop", "audit", audit)
	// Served with flows.ListenAndServe(addr, ingress); here, in process.
	for _, path := range []string{"/shop/orders", "/shop/unknown", "/"} {
		r := httptest.NewRequest("POST", path, strings.NewReader(`{}`))
		r.Header.Set("Ce-Specversion", "1.0")
		r.Header.Set("Ce-Id", "1")
		r.Header.Set("Ce-Source", "/shop")
		r.Header.Set("Ce-Type", "com.example.order.created")
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		ingress.ServeHTTP(w, r)
		fmt.Println(path, w.Code)
	}
	// Output:
	// shop/orders got com.example.order.created
	// /shop/orders 202
	// /shop/unknown 404
	// / 404
}
