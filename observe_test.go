package flows_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// An Observer sees each attempt of each subscription, with its outcome.
func ExampleObserver() {
	var mu sync.Mutex
	var lines []string
	obs := &flows.Observer{
		Deliver: func(ctx context.Context, d *flows.DeliveryInfo) (context.Context, func()) {
			return ctx, func() {
				mu.Lock()
				defer mu.Unlock()
				lines = append(lines, fmt.Sprintf("%s %s attempt %d/%d: %s", d.Flow, d.Step, d.Attempt, d.MaxAttempts, d.Outcome))
			}
		},
	}
	failures := 1
	flaky := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		if failures > 0 {
			failures--
			return nil, errors.New("flaky")
		}
		return &e, nil
	})
	f, err := (&flows.Sequence{Name: "orders", Steps: []flows.Step{
		{Subscriber: flaky, Delivery: &flows.Delivery{Retry: 2}},
		{Subscriber: flows.Discard},
	}}).Start(context.Background(), flows.WithObserver(obs))
	if err != nil {
		panic(err)
	}
	defer f.Close()
	e := event.New()
	e.SetID("1")
	e.SetType("order.created")
	e.SetSource("/shop")
	f.Handle(context.Background(), e) // returns once every hook is done
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// orders steps[0] attempt 1/3: retried
	// orders steps[0] attempt 2/3: delivered
	// orders steps[1] attempt 1/1: delivered
}

// The hooks see every hop, with the information a tracer needs.
func TestObserverHooks(t *testing.T) {
	var mu sync.Mutex
	var got []string
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf(format, args...))
	}
	obs := &flows.Observer{
		Accept: func(ctx context.Context, a *flows.AcceptInfo) (context.Context, func(error)) {
			return ctx, func(err error) { note("accept %s %s err=%v", a.Flow, a.Event.ID(), err) }
		},
		Deliver: func(ctx context.Context, d *flows.DeliveryInfo) (context.Context, func()) {
			return ctx, func() {
				note("deliver %s %s %s dest=%s #%d/%d %s forwarded=%v err=%v", d.Flow, d.Step, d.Subscription, d.Destination, d.Attempt, d.MaxAttempts, d.Outcome, d.Forwarded, d.Err)
			}
		},
		Attempt: func(ctx context.Context, a *flows.AttemptInfo) (context.Context, func()) {
			return ctx, func() {
				note("attempt %s %s %s dest=%s #%d/%d reply=%v err=%v", a.Flow, a.Step, a.Role, a.Destination, a.Attempt, a.MaxAttempts, a.Reply != nil, a.Err)
			}
		},
		Publish: func(_ context.Context, channel string, e *event.Event) { note("publish %s %s", channel, e.ID()) },
	}
	dead := flowstest.NewRecorder()
	pass := flows.Match(func(event.Event) bool { return true })
	f, err := (&flows.Parallel{Name: "p", Branches: []flows.Branch{
		{Filter: pass, Subscriber: flowstest.NewRecorder(flowstest.Fail(flows.Permanent(errors.New("no")))),
			Delivery: &flows.Delivery{Retry: 1, DeadLetter: dead}},
	}, Reply: flowstest.NewRecorder()}).Start(t.Context(), flows.WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Handle(t.Context(), flowstest.NewEvent("1", "t", "/test", nil)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"accept p 1 err=<nil>",
		"attempt p branches[0].filter subscriber dest=p/branches[0].filter #1/1 reply=true err=<nil>",
		"publish p-kn-parallel-0 1",
		"deliver p branches[0].filter p-kn-parallel-filter-0 dest=p/branches[0].filter #1/1 delivered forwarded=true err=<nil>",
		"attempt p branches[0] subscriber dest=p/branches[0] #1/2 reply=false err=no",
		"attempt p branches[0] dead-letter dest=p/branches[0].delivery.deadLetter #1/2 reply=false err=<nil>",
		"deliver p branches[0] p-kn-parallel-0 dest=p/branches[0] #1/2 dead-lettered forwarded=false err=no",
	}
	// Hops of different subscriptions overlap: compare in any order.
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("hooks saw:\n%q\nwant:\n%q", got, want)
	}
}

// An observer whose Enabled answers false sees nothing of the events it
// is asked about, and everything again once it answers true.
func TestObserverEnabledGatesTheHooks(t *testing.T) {
	var on atomic.Bool
	var mu sync.Mutex
	var got []string
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, s)
	}
	obs := &flows.Observer{
		Enabled: func(context.Context) bool { return on.Load() },
		Accept: func(ctx context.Context, a *flows.AcceptInfo) (context.Context, func(error)) {
			note("accept " + a.Event.ID())
			return ctx, nil
		},
		Deliver: func(ctx context.Context, d *flows.DeliveryInfo) (context.Context, func()) {
			note("deliver " + d.Step + " " + d.Event.ID())
			return ctx, nil
		},
		Attempt: func(ctx context.Context, a *flows.AttemptInfo) (context.Context, func()) {
			note("attempt " + a.Step + " " + string(a.Role) + " " + a.Event.ID())
			return ctx, nil
		},
		Publish: func(_ context.Context, channel string, e *event.Event) { note("publish " + channel + " " + e.ID()) },
	}
	f, err := (&flows.Sequence{Name: "s", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Echo())}},
		Reply: flowstest.NewRecorder()}).Start(t.Context(), flows.WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Handle(t.Context(), flowstest.NewEvent("off", "t", "/test", nil)); err != nil {
		t.Fatal(err)
	}
	on.Store(true)
	if _, err := f.Handle(t.Context(), flowstest.NewEvent("on", "t", "/test", nil)); err != nil {
		t.Fatal(err)
	}
	want := []string{"accept on", "deliver steps[0] on", "attempt steps[0] subscriber on", "attempt steps[0] reply on"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("hooks saw %q, want %q", got, want)
	}
}

// Queues counts what each subscription holds: queued, in delivery, or
// waiting for a retry.
func TestQueuesReportWhatEachSubscriptionHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		block := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			<-release
			return nil, nil
		})
		f, _ := (&flows.Sequence{Name: "s", Steps: []flows.Step{
			{Subscriber: failN(1, errors.New("once")), Delivery: &flows.Delivery{Retry: 1, BackoffDelay: time.Hour}},
			{Subscriber: block},
		}}).Start(context.Background())
		defer f.Shutdown(context.Background())
		for _, id := range []string{"1", "2", "3"} {
			f.Send(context.Background(), newEvent(id, nil))
		}
		synctest.Wait() // each event failed once in step 0 and waits an hour for its retry
		want := []flows.Queue{{Subscription: "s-kn-sequence-0", Step: "steps[0]", Len: 3}, {Subscription: "s-kn-sequence-1", Step: "steps[1]", Len: 0}}
		if got := f.Queues(); !slices.Equal(got, want) {
			t.Errorf("Queues = %v, want %v", got, want)
		}
		time.Sleep(time.Hour)
		synctest.Wait() // retried: one is in step 1's handler, two wait for it
		want[0].Len, want[1].Len = 0, 3
		if got := f.Queues(); !slices.Equal(got, want) {
			t.Errorf("Queues = %v, want %v", got, want)
		}
		close(release)
	})
}
