package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"github.com/eventflows/flows/jetstream"
)

// A broker on JetStream channels: two Triggers, the first of which replies
// with an event that re-enters the broker for the second, and one more
// without a filter that sees everything. Its first attempt at each event
// fails, so that retries go through the broker (NakWithDelay) too. Every
// event reaches the right subscribers, once each, with the broker's
// attributes (no TTL, an arrival time).
func TestBrokerOnJetStream(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	_, js := s.connect(t)

	orders := flowstest.NewRecorder(flowstest.Delegate(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		r := e.Clone()
		r.SetType("com.example.invoice.issued")
		r.SetID("invoice-" + e.ID())
		return &r, nil
	})))
	invoices := flowstest.NewRecorder()
	audit := flowstest.NewRecorder(flowstest.Fail(errors.New("audit log busy")), flowstest.NoReply())
	f, err := (&flows.Broker{Name: "shop", Triggers: []flows.Trigger{
		{Name: "orders", Filter: flows.Attributes(map[string]string{"type": "com.example.order.created"}), Subscriber: orders},
		{Name: "invoices", Filters: []flows.Filter{flows.CESQL("type = 'com.example.invoice.issued'")}, Subscriber: invoices},
		{Name: "audit", Subscriber: audit, Delivery: &flows.Delivery{Retry: 2, BackoffDelay: 10 * time.Millisecond}},
	}}).Start(ctx, flows.WithChannels(jetstream.Channels(js, jetstream.WithPrefix("brokertest"))))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var want []string
	for i := range n {
		e := flowstest.NewEvent(fmt.Sprintf("order-%02d", i), "com.example.order.created", "/shop", fmt.Sprintf(`{"n":%d}`, i))
		if err := f.Send(ctx, e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID())
	}
	// Another type, which only the audit trigger takes.
	if err := f.Send(ctx, flowstest.NewEvent("other", "com.example.other", "/shop", nil)); err != nil {
		t.Fatal(err)
	}

	gotOrders := sortedIDs(orders.MustWaitFor(t, n, 30*time.Second))
	gotInvoices := sortedIDs(invoices.MustWaitFor(t, n, 30*time.Second))
	// audit: 2n+1 events, each failing once first.
	audit.MustWaitFor(t, 2*(2*n+1), 30*time.Second)
	if err := f.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}

	if !slices.Equal(gotOrders, want) {
		t.Errorf("orders got %v, want %v", gotOrders, want)
	}
	var wantInvoices []string
	for _, id := range want {
		wantInvoices = append(wantInvoices, "invoice-"+id)
	}
	if !slices.Equal(gotInvoices, wantInvoices) {
		t.Errorf("invoices got %v, want %v", gotInvoices, wantInvoices)
	}
	if orders.Len() != n || invoices.Len() != n {
		t.Errorf("orders got %d deliveries, invoices %d; want %d each", orders.Len(), invoices.Len(), n)
	}
	seen := map[string]int{}
	for _, rec := range audit.Records() {
		seen[rec.Event.ID()]++
	}
	for _, id := range append(append(want, wantInvoices...), "other") {
		if seen[id] != 2 {
			t.Errorf("audit got %s %d times, want 2 (a failed attempt, then its retry)", id, seen[id])
		}
	}
	for _, e := range invoices.Events() {
		if _, ok := e.Extensions()[flows.ExtensionBrokerTTL]; ok {
			t.Errorf("a subscriber sees the TTL: %v", e)
		}
		if _, ok := e.Extensions()[flows.ExtensionArrivalTime]; !ok {
			t.Errorf("no arrival time on %v", e)
		}
	}
}

// The TTL travels through JetStream with the event: a loop ends after 255
// deliveries there too.
func TestBrokerTTLOnJetStream(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	_, js := s.connect(t)
	loop, dead := flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder()
	f, err := (&flows.Broker{Name: "loop", Triggers: []flows.Trigger{{Subscriber: loop}},
		Delivery: &flows.Delivery{DeadLetter: dead}}).Start(ctx, flows.WithChannels(jetstream.Channels(js)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Shutdown(ctx)
	if err := f.Send(ctx, flowstest.NewEvent("1", "ping", "/s", nil, flowstest.WithExtension(flows.ExtensionBrokerTTL, 20))); err != nil {
		t.Fatal(err)
	}
	dl := dead.MustWaitFor(t, 1, 30*time.Second)[0]
	if loop.Len() != 19 || dl.Extensions()[flows.ExtensionErrorCode] != int32(400) {
		t.Errorf("%d deliveries and a dead letter %v; want 19 and code 400", loop.Len(), dl)
	}
}

func sortedIDs(events []event.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID()
	}
	slices.Sort(out)
	return out
}
