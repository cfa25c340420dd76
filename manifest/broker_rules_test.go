package manifest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

// A Trigger of a Broker in metadata.namespace shop sends Kn-Namespace: shop
// to its subscriber URI; one in no namespace sends "default".
func TestTriggerSendsItsNamespace(t *testing.T) {
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Path + " " + r.Header.Get("Kn-Namespace")
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	set := parse(t, `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: events, namespace: shop}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: all, namespace: shop}
spec:
  broker: events
  subscriber: {uri: "`+srv.URL+`/shop"}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: all}
spec:
  broker: default
  subscriber: {uri: "`+srv.URL+`/default"}
`)
	app := start(t, set, nil)
	for _, name := range []string{"shop/events", "default"} {
		e := event.New()
		e.SetID("1")
		e.SetType("t")
		e.SetSource("/test")
		if _, err := flow(t, app, "Broker", name).Handle(context.Background(), e); err != nil {
			t.Fatalf("Handle to Broker %s: %v", name, err)
		}
		want := map[string]string{"shop/events": "/shop shop", "default": "/default default"}[name]
		if g := <-got; g != want {
			t.Errorf("Broker %s: subscriber got path and Kn-Namespace %q, want %q", name, g, want)
		}
	}
}
