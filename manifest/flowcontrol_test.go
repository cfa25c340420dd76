package manifest_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// keyedLog records, per partition key, the order in which a subscriber
// saw its events succeed, and fails the first attempt of every third.
type keyedLog struct {
	mu       sync.Mutex
	attempts map[string]int
	order    map[string][]int
	inFlight int
	maxSeen  int
}

func newKeyedLog() *keyedLog {
	return &keyedLog{attempts: map[string]int{}, order: map[string][]int{}}
}

func (l *keyedLog) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	l.mu.Lock()
	l.inFlight++
	l.maxSeen = max(l.maxSeen, l.inFlight)
	l.attempts[e.ID()]++
	first := l.attempts[e.ID()] == 1
	l.mu.Unlock()
	time.Sleep(time.Millisecond) // fake time: lets other deliveries start
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	n, _ := strconv.Atoi(e.ID())
	if first && n%3 == 0 {
		return nil, errors.New("transient")
	}
	key, _ := e.Extensions()[flows.ExtensionPartitionKey].(string)
	l.order[key] = append(l.order[key], n)
	return nil, nil
}

// A Trigger annotated with Knative's delivery.order: ordered delivers each
// partition key in the order sent, across the retries of the Broker's
// delivery (which the annotations add to rather than replace), with up to
// max-in-flight deliveries at once.
func TestTriggerOrderedByAnnotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := newKeyedLog()
		reg := new(manifest.Registry)
		reg.Bind("Service", "orders", log)
		set := parse(t, `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default}
spec:
  delivery: {retry: 3, backoffPolicy: linear, backoffDelay: PT0.01S}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: orders
  annotations:
    kafka.eventing.knative.dev/delivery.order: ordered
    flows.eventflows.dev/delivery.max-in-flight: "4"
spec:
  broker: default
  subscriber:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: orders}
`)
		app, err := manifest.Build(set, reg)
		if err != nil {
			t.Fatal(err)
		}
		// Unordered, 16 at once would reorder the retried events.
		if err := app.Start(context.Background(), flows.WithConcurrency(16)); err != nil {
			t.Fatal(err)
		}
		broker := flow(t, app, "Broker", "default")
		const keys, perKey = 8, 30
		for i := range keys * perKey {
			e := newEvent(strconv.Itoa(i), time.Now(), `{}`)
			e.SetExtension(flows.ExtensionPartitionKey, "k"+strconv.Itoa(i%keys))
			if err := broker.Send(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			got := log.order["k"+strconv.Itoa(k)]
			var want []int
			for i := k; i < keys*perKey; i += keys {
				want = append(want, i)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("key k%d delivered in the order\n%v\nwant\n%v", k, got, want)
			}
		}
		if log.maxSeen != 4 {
			t.Errorf("%d deliveries ran at once; want max-in-flight 4", log.maxSeen)
		}
	})
}

// A Subscription's rate annotations hold it to the rate, with its burst:
// 1,000 events at 100/s with a burst of 10 take 9.9 s.
func TestSubscriptionRateLimitByAnnotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var times []time.Time
		reg := new(manifest.Registry)
		reg.Bind("Service", "slow", flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			return nil, nil
		}))
		set := parse(t, `apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: in}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata:
  name: slow
  annotations:
    flows.eventflows.dev/delivery.rate-limit: "100"
    flows.eventflows.dev/delivery.rate-burst: "10"
spec:
  channel: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: in}
  subscriber:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: slow}
`)
		app := start(t, set, reg)
		ch := flow(t, app, "InMemoryChannel", "in")
		begin := time.Now()
		for i := range 1000 {
			if err := ch.Send(context.Background(), newEvent(strconv.Itoa(i), begin, `{}`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(times) != 1000 {
			t.Fatalf("%d events delivered; want 1000", len(times))
		}
		if took := times[len(times)-1].Sub(begin); took < 9800*time.Millisecond || took > 10*time.Second {
			t.Errorf("1,000 events at 100/s, burst 10, took %v; want 9.9s", took)
		}
	})
}

// The annotations are shown in the graph's label of the Trigger.
func TestGraphShowsFlowControl(t *testing.T) {
	set := parse(t, brokerDoc+`---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t
  annotations:
    kafka.eventing.knative.dev/delivery.order: ordered
    flows.eventflows.dev/delivery.order-key: tenant
    flows.eventflows.dev/delivery.max-in-flight: "8"
    flows.eventflows.dev/delivery.rate-limit: "2.5"
spec:
  broker: default
  subscriber:
    `+svc("x")+`
`)
	g, err := manifest.NewGraph(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ordered by tenant; max in flight 8; rate 2.5/s, burst 1"; !strings.Contains(g.Mermaid(), want) {
		t.Errorf("mermaid lacks %q:\n%s", want, g.Mermaid())
	}
}

// Each wrong annotation is reported at its path, all at once; flows' own
// annotations on a kind that does not read them are errors, not ignored.
func TestFlowControlAnnotationProblems(t *testing.T) {
	set := parse(t, brokerDoc+`---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t
  annotations:
    kafka.eventing.knative.dev/delivery.order: sorted
    flows.eventflows.dev/delivery.order-key: Tenant-ID
    flows.eventflows.dev/delivery.max-in-flight: "0"
    flows.eventflows.dev/delivery.rate-burst: "5"
    flows.eventflows.dev/delivery.rate-limt: "5"
    example.com/other: ignored
spec:
  broker: default
  subscriber:
    `+svc("x")+`
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: u
  annotations:
    flows.eventflows.dev/delivery.rate-limit: fast
spec:
  broker: default
  subscriber:
    `+svc("x")+`
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: s
  annotations:
    flows.eventflows.dev/delivery.max-in-flight: "2"
    kafka.eventing.knative.dev/delivery.order: ordered
spec:
  steps:
  - `+svc("x")+`
`)
	reg := new(manifest.Registry)
	reg.Bind("Service", "x", flows.Discard)
	_, err := manifest.Build(set, reg)
	if err == nil {
		t.Fatal("Build accepted the annotations")
	}
	for _, want := range []string{
		`Trigger "t": metadata.annotations["kafka.eventing.knative.dev/delivery.order"]: "sorted" is not an order: want "ordered" or "unordered"`,
		`Trigger "t": metadata.annotations["flows.eventflows.dev/delivery.max-in-flight"]: "0": want a whole number of deliveries, at least 1`,
		`Trigger "t": metadata.annotations["flows.eventflows.dev/delivery.rate-limt"]: not an annotation flows knows; did you mean "flows.eventflows.dev/delivery.rate-limit"?`,
		`Trigger "t": metadata.annotations["flows.eventflows.dev/delivery.order-key"]: needs kafka.eventing.knative.dev/delivery.order: ordered`,
		`Trigger "t": metadata.annotations["flows.eventflows.dev/delivery.order-key"]: attribute name "Tenant-ID" must be lower-case letters and digits`,
		`Trigger "t": metadata.annotations["flows.eventflows.dev/delivery.rate-burst"]: needs flows.eventflows.dev/delivery.rate-limit`,
		`Trigger "u": metadata.annotations["flows.eventflows.dev/delivery.rate-limit"]: "fast": want events per second, a number greater than 0`,
		`Sequence "s": metadata.annotations["flows.eventflows.dev/delivery.max-in-flight"]: only a Trigger or a Subscription reads this annotation`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks\n%s\nin\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "example.com/other") || strings.Contains(err.Error(), `Sequence "s": metadata.annotations["kafka`) {
		t.Errorf("annotations flows does not own are reported:\n%v", err)
	}
}
