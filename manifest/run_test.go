package manifest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/manifest"
)

// The seed demo's services, written as Go handlers.

type message struct {
	ID      int    `json:"id"`
	Message string `json:"message"`
}

func appender(suffix string) flows.Handler {
	return flows.Typed(func(_ context.Context, in message) (message, error) {
		in.Message += suffix
		return in, nil
	})
}

// then calls h and hands its reply to next too, as the seed's "third"
// service logs what it answers.
func then(h flows.Handler, next *recorder) flows.Handler {
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		reply, err := h.Handle(ctx, e)
		if reply != nil {
			next.Handle(ctx, reply.Clone())
		}
		return reply, err
	})
}

// minuteParity is the seed's filter: Math.round(Date.parse(event.time) / 60000) % 2.
func minuteParity(parity int) flows.Handler {
	return flows.Match(func(e event.Event) bool {
		return int(math.Floor(float64(e.Time().UnixMilli())/60000+0.5))%2 == parity
	})
}

func transformer(msg string) flows.Handler {
	return flows.Typed(func(context.Context, struct{}) (map[string]string, error) {
		return map[string]string{"message": msg}, nil
	})
}

type recorder struct{ ch chan event.Event }

func newRecorder() *recorder { return &recorder{ch: make(chan event.Event, 256)} }

func (r *recorder) Handle(_ context.Context, e event.Event) (*event.Event, error) {
	r.ch <- e
	return nil, nil
}

func (r *recorder) next(t *testing.T) event.Event {
	t.Helper()
	return r.nextWithin(t, 10*time.Second)
}

// nextWithin waits for an event; in a synctest bubble d is fake time.
func (r *recorder) nextWithin(t *testing.T, d time.Duration) event.Event {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(d):
		t.Fatalf("no event within %s", d)
		return event.Event{}
	}
}

func (r *recorder) empty(t *testing.T) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Errorf("unexpected event %s", e)
	default:
	}
}

func newEvent(id string, at time.Time, data string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/apis/v1/namespaces/default/pingsources/ping-source")
	e.SetType(flows.PingEventType)
	e.SetTime(at)
	e.SetData(event.ApplicationJSON, []byte(data))
	return e
}

func readSeed(t *testing.T, names ...string) *manifest.Set {
	t.Helper()
	var paths []string
	for _, n := range names {
		paths = append(paths, "../examples/manifests/"+n)
	}
	set, err := manifest.ReadFiles(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func start(t *testing.T, set *manifest.Set, reg *manifest.Registry, opts ...manifest.Option) *manifest.App {
	t.Helper()
	app, err := manifest.Build(set, reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := app.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return app
}

func sameEvent(t *testing.T, got, want event.Event) {
	t.Helper()
	if got.ID() != want.ID() || got.Source() != want.Source() || got.Type() != want.Type() ||
		got.DataContentType() != want.DataContentType() || !bytes.Equal(got.Data(), want.Data()) ||
		fmt.Sprint(got.Extensions()) != fmt.Sprint(want.Extensions()) || !got.Time().Equal(want.Time()) {
		t.Errorf("from the manifests:\n%s\nhand-built:\n%s", got, want)
	}
}

func TestSeedSequenceBehavesAsHandBuilt(t *testing.T) {
	fromYAML, byHand := newRecorder(), newRecorder()
	var reg manifest.Registry
	reg.Bind("Service", "first", appender(" - Handled by 0"))
	reg.Bind("Service", "second", appender(" - Handled by 1"))
	reg.Bind("Service", "third", then(appender(" - Handled by 2"), fromYAML))
	app := start(t, readSeed(t, "sequence/services.yaml", "sequence/sequence.yaml"), &reg)

	hand, err := (&flows.Sequence{Name: "sequence", Steps: []flows.Step{
		{Subscriber: appender(" - Handled by 0")},
		{Subscriber: appender(" - Handled by 1")},
		{Subscriber: then(appender(" - Handled by 2"), byHand)},
	}}).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hand.Shutdown(context.Background())

	ctx := context.Background()
	for i := range 3 {
		e := newEvent(fmt.Sprint("e", i), time.Unix(1600095000, 0), `{"message": "hello, world!"}`)
		if _, err := flow(t, app, "Sequence", "sequence").Handle(ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, err := hand.Handle(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, want := fromYAML.next(t), byHand.next(t)
		sameEvent(t, got, want)
		if string(got.Data()) != `{"id":0,"message":"hello, world! - Handled by 0 - Handled by 1 - Handled by 2"}` {
			t.Errorf("data = %s", got.Data())
		}
	}
}

func TestSeedParallelBehavesAsHandBuilt(t *testing.T) {
	fromYAML, byHand := newRecorder(), newRecorder()
	var reg manifest.Registry
	reg.Bind("Service", "even-filter", minuteParity(0))
	reg.Bind("Service", "odd-filter", minuteParity(1))
	reg.Bind("Service", "even-transformer", transformer("this is even!"))
	reg.Bind("Service", "odd-transformer", transformer("this is odd!"))
	reg.Bind("Service", "event-display", fromYAML)
	app := start(t, readSeed(t, "parallel/services.yaml", "parallel/parallel.yaml"), &reg)

	hand, err := (&flows.Parallel{Name: "odd-even-parallel", Branches: []flows.Branch{
		{Filter: minuteParity(0), Subscriber: transformer("this is even!")},
		{Filter: minuteParity(1), Subscriber: transformer("this is odd!")},
	}, Reply: byHand}).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hand.Shutdown(context.Background())

	ctx := context.Background()
	for i, want := range []string{"even", "odd", "even"} {
		at := time.Date(2020, 9, 15, 11, 32+i, 0, 0, time.UTC) // minute 32 is even
		e := newEvent(fmt.Sprint("e", i), at, `{"message": "Even or odd?"}`)
		if _, err := flow(t, app, "Parallel", "odd-even-parallel").Handle(ctx, e); err != nil {
			t.Fatal(err)
		}
		if _, err := hand.Handle(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, h := fromYAML.next(t), byHand.next(t)
		sameEvent(t, got, h)
		if string(got.Data()) != `{"message":"this is `+want+`!"}` {
			t.Errorf("event at %s: data = %s; want this is %s!", at, got.Data(), want)
		}
		fromYAML.empty(t) // one branch only
	}
}

// The seed's PingSource (v1beta1, jsonData, every minute) drives the
// seed's Sequence; a fake clock makes the minute pass at once.
func TestSeedPingSourceDrivesSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		display := newRecorder()
		var reg manifest.Registry
		reg.Bind("Service", "first", appender(" - Handled by 0"))
		reg.Bind("Service", "second", appender(" - Handled by 1"))
		reg.Bind("Service", "third", then(appender(" - Handled by 2"), display))
		app := start(t, readSeed(t, "sequence"), &reg)

		begin := time.Now()
		for i := range 2 {
			e := display.nextWithin(t, 2*time.Minute)
			if got, want := e.Time(), begin.Add(time.Duration(i+1)*time.Minute); !got.Equal(want) {
				t.Errorf("event %d at %s; want %s", i, got, want)
			}
			if e.Source() != "/apis/v1/namespaces/default/pingsources/ping-source" || e.Type() != "dev.knative.sources.ping" ||
				e.DataContentType() != "application/json" ||
				string(e.Data()) != `{"id":0,"message":"hello, world! - Handled by 0 - Handled by 1 - Handled by 2"}` {
				t.Errorf("event:\n%s", e)
			}
		}
		_ = app
	})
}

func TestSeedPingSourceDrivesParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		display := newRecorder()
		var reg manifest.Registry
		reg.Bind("Service", "even-filter", minuteParity(0))
		reg.Bind("Service", "odd-filter", minuteParity(1))
		reg.Bind("Service", "even-transformer", transformer("this is even!"))
		reg.Bind("Service", "odd-transformer", transformer("this is odd!"))
		reg.Bind("Service", "event-display", display)
		start(t, readSeed(t, "parallel"), &reg)

		var got []string
		for range 4 {
			e := display.nextWithin(t, 2*time.Minute)
			parity := []string{"even", "odd"}[e.Time().Unix()/60%2]
			if want := `{"message":"this is ` + parity + `!"}`; string(e.Data()) != want {
				t.Errorf("event at %s: %s; want %s", e.Time(), e.Data(), want)
			}
			got = append(got, string(e.Data()))
		}
		if got[0] == got[1] || got[1] == got[2] {
			t.Errorf("minutes did not alternate: %q", got)
		}
	})
}

func TestWithSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		display := newRecorder()
		var reg manifest.Registry
		reg.Bind("Service", "first", appender(" - Handled by 0"))
		reg.Bind("Service", "second", appender(" - Handled by 1"))
		reg.Bind("Service", "third", then(appender(" - Handled by 2"), display))
		start(t, readSeed(t, "sequence"), &reg, manifest.WithSchedule("* * * * * *"))
		begin := time.Now()
		for i := range 3 {
			if got, want := display.next(t).Time(), begin.Add(time.Duration(i+1)*time.Second); !got.Equal(want) {
				t.Errorf("event %d at %s; want %s", i, got, want)
			}
		}
	})
}

func parse(t *testing.T, text string) *manifest.Set {
	t.Helper()
	set, err := manifest.Parse("test.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestDeliveryRetriesAndDeadLetters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: flaky}
    delivery:
      retry: 2
      backoffPolicy: exponential
      backoffDelay: PT0.5S
      deadLetterSink:
        ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: dls}
`)
		var calls []time.Duration
		begin := time.Now()
		dls := newRecorder()
		var reg manifest.Registry
		reg.Bind("Service", "flaky", flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
			calls = append(calls, time.Since(begin))
			return nil, errors.New("boom")
		}))
		reg.Bind("Service", "dls", dls)
		app := start(t, set, &reg)
		if _, err := flow(t, app, "Sequence", "s").Handle(context.Background(), newEvent("x", begin, `{}`)); err != nil {
			t.Fatal(err)
		}
		if want := []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond}; !slices.Equal(calls, want) {
			t.Errorf("attempts at %v; want %v (PT0.5S, exponential)", calls, want)
		}
		dl := dls.next(t)
		if dl.ID() != "x" || dl.Extensions()[flows.ExtensionErrorCode] != int32(500) {
			t.Errorf("dead letter:\n%s", dl)
		}
	})
}

// In Knative a backoffDelay without a backoffPolicy is no delay at all;
// the channel template's delivery applies to steps without their own.
func TestBackoffDelayWithoutPolicyMeansNoDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: s}
spec:
  steps:
  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: flaky}
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
    spec:
      delivery:
        retry: 2
        backoffDelay: PT10S
`)
		var calls []time.Duration
		begin := time.Now()
		var reg manifest.Registry
		reg.Bind("Service", "flaky", flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
			calls = append(calls, time.Since(begin))
			return nil, errors.New("boom")
		}))
		app := start(t, set, &reg)
		_, err := flow(t, app, "Sequence", "s").Handle(context.Background(), newEvent("x", begin, `{}`))
		var de *flows.DeliveryError
		if !errors.As(err, &de) || de.Attempts != 3 {
			t.Fatalf("Handle = %v; want a DeliveryError after 3 attempts", err)
		}
		if want := []time.Duration{0, 0, 0}; !slices.Equal(calls, want) {
			t.Errorf("attempts at %v; want %v", calls, want)
		}
	})
}

func TestNestedFlowsStartInOrderAndDrain(t *testing.T) {
	set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: outer}
spec:
  steps:
  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: up}
  reply:
    ref: {apiVersion: flows.knative.dev/v1, kind: Parallel, name: fan}
---
apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {name: fan}
spec:
  branches:
  - subscriber:
      ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: a}
  - subscriber:
      ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: b}
  reply:
    ref: {apiVersion: v1, kind: Service, name: sink}
`)
	sink := newRecorder()
	var reg manifest.Registry
	reg.Bind("Service", "up", appender("+up"))
	reg.Bind("Service", "a", appender("+a"))
	reg.Bind("Service", "b", appender("+b"))
	reg.Bind("Service", "sink", sink)
	app, err := manifest.Build(set, &reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	outer := flow(t, app, "Sequence", "outer")
	if _, err := outer.Handle(context.Background(), newEvent("x", time.Now(), `{"message":"x"}`)); err != nil {
		t.Fatal(err)
	}
	got := []string{string(sink.next(t).Data()), string(sink.next(t).Data())}
	slices.Sort(got)
	if want := []string{`{"id":0,"message":"x+up+a"}`, `{"id":0,"message":"x+up+b"}`}; !slices.Equal(got, want) {
		t.Errorf("sink got %q; want %q", got, want)
	}

	// Shutdown drains the outer flow into the inner one before stopping it.
	const n = 50
	for i := range n {
		if err := outer.Send(context.Background(), newEvent(fmt.Sprint(i), time.Now(), `{"message":"y"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(sink.ch) != 2*n {
		t.Errorf("after Shutdown the sink got %d events; want %d", len(sink.ch), 2*n)
	}
}

func TestChannelAndSubscriptions(t *testing.T) {
	set := parse(t, `apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: orders}
spec:
  delivery: {retry: 1}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {name: bill}
spec:
  channel: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: orders}
  subscriber:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: billing}
  reply:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: audit}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {name: ship}
spec:
  channel: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: orders}
  subscriber:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: shipping}
---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: unused}
`)
	shipping, audit := newRecorder(), newRecorder()
	var billed atomic.Int32
	var reg manifest.Registry
	reg.Bind("Service", "billing", flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		if billed.Add(1) == 1 {
			return nil, errors.New("first attempt fails") // retried once, as the channel's delivery says
		}
		return appender(" billed").Handle(ctx, e)
	}))
	reg.Bind("Service", "shipping", shipping)
	reg.Bind("Service", "audit", audit)
	app := start(t, set, &reg)
	if _, err := flow(t, app, "InMemoryChannel", "orders").Handle(context.Background(), newEvent("o1", time.Now(), `{"message":"order"}`)); err != nil {
		t.Fatal(err)
	}
	if e := shipping.next(t); e.ID() != "o1" {
		t.Errorf("shipping got %s", e)
	}
	if e := audit.next(t); string(e.Data()) != `{"id":0,"message":"order billed"}` {
		t.Errorf("audit got %s", e.Data())
	}
	if _, err := flow(t, app, "InMemoryChannel", "unused").Handle(context.Background(), newEvent("o2", time.Now(), `{}`)); err != nil {
		t.Errorf("a channel without subscriptions refused an event: %v", err)
	}
}

func TestStatus(t *testing.T) {
	var reg manifest.Registry
	reg.Bind("Service", "first", flows.Discard)
	reg.Bind("Service", "second", flows.Discard)
	reg.BindURL("Service", "third", "http://127.0.0.1:8083")
	app, err := manifest.Build(readSeed(t, "sequence"), &reg)
	if err != nil {
		t.Fatal(err)
	}
	if st := app.Status(); st[0].Ready != "Unknown" || st[0].Reason != "NotStarted" {
		t.Errorf("before Start: %+v", st[0])
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := app.Status()
	var b strings.Builder
	manifest.WriteStatus(&b, st, st[0].Since.Add(3*time.Hour+48*time.Minute))
	want := `NAME       URL   AGE     READY   REASON
sequence         3h48m   True

NAME          SINK                AGE     READY   REASON
ping-source   Sequence/sequence   3h48m   True

NAME     URL                     AGE     READY   REASON
first                            3h48m   True
second                           3h48m   True
third    http://127.0.0.1:8083   3h48m   True
`
	if b.String() != want {
		t.Errorf("status:\n%s\nwant:\n%s", b.String(), want)
	}
	if err := app.Start(context.Background()); !errors.Is(err, manifest.ErrState) {
		t.Errorf("second Start = %v; want ErrState", err)
	}
	app.Shutdown(context.Background())
	if st := app.Status(); st[0].Ready != "False" || st[0].Reason != "Stopped" {
		t.Errorf("after Shutdown: %+v", st[0])
	}
}

// A PingSource hands its events to a flow as to a channel's ingress: once
// the flow accepted one, the source is done with it, so a failure inside
// the flow does not make the source send it again.
func TestPingSourceIsDoneOnceTheFlowAccepts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := make(chan string, 16)
		var reg manifest.Registry
		reg.Bind("Service", "first", flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			calls <- e.ID()
			return nil, errors.New("always fails, no dead-letter sink")
		}))
		reg.Bind("Service", "second", flows.Discard)
		reg.Bind("Service", "third", flows.Discard)
		start(t, readSeed(t, "sequence"), &reg, manifest.WithSchedule("* * * * * *"))
		seen := map[string]bool{}
		for range 3 {
			select {
			case id := <-calls:
				if seen[id] {
					t.Fatalf("event %s reached the first step twice", id)
				}
				seen[id] = true
			case <-time.After(time.Minute):
				t.Fatal("no call within a minute")
			}
		}
	})
}

// Status lists each kind's objects as the manifests declare them, not in
// the order the flows start (each after the flows it sends to).
func TestStatusInTheOrderOfTheManifests(t *testing.T) {
	set := parse(t, `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: outer}
spec:
  steps:
  - ref: {apiVersion: flows.knative.dev/v1, kind: Sequence, name: inner}
---
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: inner}
spec:
  steps:
  - uri: http://127.0.0.1:9
`)
	app, err := manifest.Build(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range app.Status() {
		names = append(names, s.Name)
	}
	if want := []string{"outer", "inner"}; !slices.Equal(names, want) {
		t.Errorf("Status lists %q; want %q", names, want)
	}
}

// A Shutdown called while another is draining returns once the app is
// drained too, as flows.Flow.Shutdown does, not at once.
func TestConcurrentShutdownWaitsForTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		delivered := make(chan string, 1)
		var reg manifest.Registry
		reg.Bind("Service", "slow", flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			<-release
			delivered <- e.ID()
			return nil, nil
		}))
		app, err := manifest.Build(parse(t, seqHead+`  - ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: slow}
`), &reg)
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := flow(t, app, "Sequence", "s").Send(context.Background(), newEvent("x", time.Now(), `{}`)); err != nil {
			t.Fatal(err)
		}
		first, second := make(chan error, 1), make(chan error, 1)
		go func() { first <- app.Shutdown(context.Background()) }()
		synctest.Wait() // the first Shutdown is draining
		go func() { second <- app.Shutdown(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-second:
			t.Fatalf("the second Shutdown returned %v before the event was delivered", err)
		default:
		}
		close(release)
		if err := <-first; err != nil {
			t.Error(err)
		}
		if err := <-second; err != nil {
			t.Error(err)
		}
		if id := <-delivered; id != "x" {
			t.Errorf("delivered %q", id)
		}
	})
}

// A v1 PingSource's fields reach its events: namespace in the source,
// timezone, contentType, data or dataBase64, and ceOverrides.
func TestPingSourceV1Fields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := parse(t, `apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: text, namespace: team}
spec:
  schedule: "0 10 * * *"
  timezone: Asia/Tokyo
  contentType: text/plain
  data: hello
  ceOverrides:
    extensions: {owner: blue}
  sink:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: display}
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: bytes, namespace: team}
spec:
  schedule: "0 10 * * *"
  timezone: Asia/Tokyo
  contentType: application/octet-stream
  dataBase64: AAEC
  sink:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: display}
`)
		display := newRecorder()
		var reg manifest.Registry
		reg.Bind("Service", "display", display)
		start(t, set, &reg)
		tokyo, err := time.LoadLocation("Asia/Tokyo")
		if err != nil {
			t.Skip(err)
		}
		got := map[string]event.Event{}
		for range 2 {
			e := display.nextWithin(t, 48*time.Hour)
			got[e.Source()] = e
		}
		text, bytes := got["/apis/v1/namespaces/team/pingsources/text"], got["/apis/v1/namespaces/team/pingsources/bytes"]
		if text.DataContentType() != "text/plain" || string(text.Data()) != "hello" || text.Extensions()["owner"] != "blue" {
			t.Errorf("text source sent:\n%s", text)
		}
		if bytes.DataContentType() != "application/octet-stream" || string(bytes.Data()) != "\x00\x01\x02" {
			t.Errorf("bytes source sent:\n%s", bytes)
		}
		for _, e := range []event.Event{text, bytes} {
			if at := e.Time().In(tokyo); at.Hour() != 10 || at.Minute() != 0 {
				t.Errorf("%s sent at %s; want 10:00 in Tokyo", e.Source(), at)
			}
		}
	})
}

// flow returns the app's running flow of that kind and name.
func flow(t *testing.T, app *manifest.App, kind, name string) *flows.Flow {
	t.Helper()
	f, err := app.Flow(kind, name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A lookup of a flow the app does not have is an error that names what
// was asked and what there is, not a nil that panics on the next call.
func TestFlowLookupNamesWhatExists(t *testing.T) {
	app, err := build(t, []file{seed(t, "sequence/sequence.yaml"), seed(t, "parallel/parallel.yaml")},
		bindAll("Service", "first", "second", "third", "even-filter", "odd-filter", "even-transformer", "odd-transformer", "event-display"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Flow("Sequence", "sequence"); !errors.Is(err, manifest.ErrState) {
		t.Errorf("Flow before Start = %v; want ErrState", err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer app.Shutdown(context.Background())
	_, err = app.Flow("Sequence", "sequnce")
	want := `manifest: no such flow: Sequence "sequnce"; the app has Sequence "sequence", Parallel "odd-even-parallel"`
	if !errors.Is(err, manifest.ErrNoFlow) || err.Error() != want {
		t.Errorf("Flow(Sequence, sequnce) = %v; want %s, wrapping ErrNoFlow", err, want)
	}
	if f, err := app.Flow("Parallel", "default/odd-even-parallel"); f == nil || err != nil {
		t.Errorf("Flow(Parallel, default/odd-even-parallel) = %v, %v", f, err)
	}
}

// When the drain is cut short, Undelivered lists each flow's undelivered
// events with the flow and its ingress URL, from the joined errors of
// Shutdown, where errors.As would find the first flow's only.
func TestUndeliveredNamesEachFlow(t *testing.T) {
	hang := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	reg := new(manifest.Registry)
	reg.Bind("Service", "first", hang)
	set := parse(t, seqHead+stepFirst+`---
apiVersion: messaging.knative.dev/v1
kind: InMemoryChannel
metadata: {name: orders, namespace: shop}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {name: sub, namespace: shop}
spec:
  channel: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: orders}
  subscriber: {ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: first}}
`)
	app, err := manifest.Build(set, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv, err := app.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i, f := range []*flows.Flow{flow(t, app, "Sequence", "s"), flow(t, app, "InMemoryChannel", "shop/orders"), flow(t, app, "Sequence", "s")} {
		if err := f.Send(context.Background(), newEvent(fmt.Sprint("e", i), time.Now(), `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = app.Shutdown(ctx)
	var se *manifest.StopError
	if !errors.As(err, &se) || se.Op != "stopping" || !strings.HasPrefix(err.Error(), "manifest: stopping ") {
		t.Fatalf("Shutdown = %v; want StopErrors", err)
	}
	got := map[string][]string{}
	for _, l := range manifest.Undelivered(err) {
		key := l.Kind + " " + l.Namespace + "/" + l.Name + " " + strings.TrimPrefix(l.URL, srv.URL())
		for _, e := range l.Events {
			got[key] = append(got[key], e.ID())
		}
		slices.Sort(got[key])
	}
	want := map[string][]string{
		"Sequence default/s /default/s-kn-sequence-0": {"e0", "e2"},
		"InMemoryChannel shop/orders /shop/orders":    {"e1"},
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Undelivered = %v; want %v", got, want)
	}
}
