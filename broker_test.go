package flows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// retype replies with a copy of the event with another type (and id, when
// id is not empty).
func retype(typ, id string) flowstest.Reply {
	return flowstest.Delegate(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		r := e.Clone()
		r.SetType(typ)
		if id != "" {
			r.SetID(id)
		}
		return &r, nil
	}))
}

func ofType(typ string) flows.Filter { return flows.Attributes(map[string]string{"type": typ}) }

// typesOf lists the types of events, in order.
func typesOf(events []event.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Type()
	}
	return out
}

func TestBrokerDeliversToEveryMatchingTrigger(t *testing.T) {
	created, refunded, all := flowstest.NewRecorder(), flowstest.NewRecorder(), flowstest.NewRecorder()
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Name: "created", Filter: ofType("order.created"), Subscriber: created},
		{Name: "refunded", Filter: ofType("order.refunded"), Subscriber: refunded},
		{Name: "all", Subscriber: all},
	}})
	ctx := context.Background()
	e1 := flowstest.NewEvent("1", "order.created", "/shop", `{"sku":"A1"}`, flowstest.WithExtension("tenant", "eu"),
		flowstest.WithSubject("orders/1"), flowstest.WithTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	e2 := flowstest.NewEvent("2", "order.refunded", "/shop", `{"sku":"B2"}`)
	e3 := flowstest.NewEvent("3", "order.shipped", "/shop", nil)
	for _, e := range []event.Event{e1, e2, e3} {
		if _, err := f.Handle(ctx, e); err != nil {
			t.Fatalf("Handle(%s) = %v", e.ID(), err)
		}
	}
	// Handle returned: every delivery is made.
	if got := ids(created.Events()); !slices.Equal(got, []string{"1"}) {
		t.Errorf("trigger created got %v, want [1]", got)
	}
	if got := ids(refunded.Events()); !slices.Equal(got, []string{"2"}) {
		t.Errorf("trigger refunded got %v, want [2]", got)
	}
	if got := ids(all.Events()); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("the trigger without a filter got %v, want [1 2 3]", got)
	}
	// The event as it was sent, minus the TTL, plus the arrival time.
	got := created.Events()[0]
	if _, ok := got.Extensions()[flows.ExtensionBrokerTTL]; ok {
		t.Errorf("the subscriber sees %s: %v", flows.ExtensionBrokerTTL, got)
	}
	arrival, ok := got.Extensions()[flows.ExtensionArrivalTime].(string)
	if _, err := time.Parse(time.RFC3339Nano, arrival); !ok || err != nil {
		t.Errorf("%s = %v, want an RFC 3339 time", flows.ExtensionArrivalTime, got.Extensions()[flows.ExtensionArrivalTime])
	}
	got.SetExtension(flows.ExtensionArrivalTime, nil)
	if d := flowstest.Diff(e1, got); d != "" {
		t.Errorf("delivered event differs from the one sent:\n%s", d)
	}
}

// knativearrivaltime is the instant the event entered, as time.Format
// writes it in RFC3339Nano (UTC, nanoseconds without trailing zeros, no
// fraction at a whole second), on each entry: the first, and a reply's,
// which gets the time of its own entry, over the events of one second and
// across seconds.
func TestBrokerArrivalTimeIsTheEntryInstant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var replies []string // the arrival time each reply entered with
		first, reply := flowstest.NewRecorder(), flowstest.NewRecorder()
		f := start(t, &flows.Broker{Triggers: []flows.Trigger{
			{Filter: ofType("first"), Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
				first.Handle(context.Background(), e)
				time.Sleep(250 * time.Microsecond) // the reply enters later
				mu.Lock()
				replies = append(replies, time.Now().UTC().Format(time.RFC3339Nano))
				mu.Unlock()
				r := flowstest.NewEvent(e.ID()+"-reply", "reply", "/s", nil)
				return &r, nil
			})},
			{Filter: ofType("reply"), Subscriber: reply},
		}})
		ctx := context.Background()
		steps := []time.Duration{0, 1, 9, 90, 100 * time.Millisecond, 120 * time.Microsecond, 999_999_000, time.Second, 1_234_567_891, time.Hour + 7}
		var want []string
		for i, d := range steps {
			time.Sleep(d)
			want = append(want, time.Now().UTC().Format(time.RFC3339Nano))
			if _, err := f.Handle(ctx, flowstest.NewEvent(strconv.Itoa(i), "first", "/s", nil)); err != nil {
				t.Fatalf("Handle(%d) = %v", i, err)
			}
		}
		arrivals := func(r *flowstest.Recorder) []string {
			var out []string
			for _, e := range r.Events() {
				v, _ := e.Extensions()[flows.ExtensionArrivalTime].(string)
				out = append(out, v)
			}
			return out
		}
		if got := arrivals(first); !slices.Equal(got, want) {
			t.Errorf("%s of the events sent = %q, want %q", flows.ExtensionArrivalTime, got, want)
		}
		if got := arrivals(reply); !slices.Equal(got, replies) {
			t.Errorf("%s of the replies = %q, want %q", flows.ExtensionArrivalTime, got, replies)
		}
	})
}

// The filters of one entry read the source, the time and the dataschema
// once for all of them (see filter.go): each Trigger still sees the
// attribute it names, in every dialect, whichever filter read it first.
func TestBrokerFiltersShareTheAttributesTheyRead(t *testing.T) {
	at := time.Date(2026, 12, 1, 14, 4, 20, 500, time.UTC)
	names := []string{"source", "source-prefix", "time", "time-cesql", "schema", "schemaurl", "source-cesql", "not-source", "all", "wrong"}
	subs := map[string]*flowstest.Recorder{}
	filters := map[string]flows.Filter{
		"source":        flows.Exact("source", "/shop/eu"),
		"source-prefix": flows.Prefix("source", "/shop/"),
		"time":          flows.Exact("time", "2026-12-01T14:04:20.0000005Z"),
		"time-cesql":    flows.CESQL("time = '2026-12-01T14:04:20.0000005Z'"),
		"schema":        flows.Suffix("dataschema", "/order.json"),
		"schemaurl":     flows.Attributes(map[string]string{"schemaurl": "https://example.com/order.json"}),
		"source-cesql":  flows.CESQL("source = '/shop/eu' AND region = 'EU'"),
		"not-source":    flows.Not(flows.Exact("source", "/shop/us")),
		"all":           flows.All(flows.Exact("source", "/shop/eu"), flows.Prefix("time", "2026-12-01T"), flows.Exact("dataschema", "https://example.com/order.json")),
		"wrong":         flows.Any(flows.Exact("source", "/shop"), flows.Exact("time", "2026-12-01T14:04:20Z"), flows.Exact("dataschema", "/order.json")),
	}
	var triggers []flows.Trigger
	for _, n := range names {
		subs[n] = flowstest.NewRecorder()
		triggers = append(triggers, flows.Trigger{Name: n, Filter: filters[n], Subscriber: subs[n]})
	}
	f := start(t, &flows.Broker{Triggers: triggers})
	e := flowstest.NewEvent("1", "order.created", "/shop/eu", nil, flowstest.WithTime(at), flowstest.WithExtension("region", "EU"))
	e.SetDataSchema("https://example.com/order.json")
	other := flowstest.NewEvent("2", "order.created", "/shop/us", nil)
	for _, ev := range []event.Event{e, other} {
		if _, err := f.Handle(context.Background(), ev); err != nil {
			t.Fatalf("Handle(%s) = %v", ev.ID(), err)
		}
	}
	want := map[string][]string{"source": {"1"}, "source-prefix": {"1", "2"}, "time": {"1"}, "time-cesql": {"1"}, "schema": {"1"},
		"schemaurl": {"1"}, "source-cesql": {"1"}, "not-source": {"1"}, "all": {"1"}, "wrong": nil}
	for _, n := range names {
		if got := ids(subs[n].Events()); !slices.Equal(got, want[n]) {
			t.Errorf("trigger %s (%v) got %v, want %v", n, filters[n], got, want[n])
		}
	}
}

// A broker evaluates only the filters that may match an event's type (see
// brokerRun.index): each Trigger still gets exactly the events its filter
// matches, whether its filter requires a type (attributes, exact, an all
// holding one) or not (an empty attributes value, prefix, any, not,
// CESQL, none), with several Triggers on one type.
func TestBrokerDeliversWhatEachFilterMatches(t *testing.T) {
	filters := []struct {
		name string
		f    flows.Filter
		fs   []flows.Filter
		want []string
	}{
		{"created", ofType("order.created"), nil, []string{"1", "4"}},
		{"created-eu", flows.Attributes(map[string]string{"type": "order.created", "source": "/eu"}), nil, []string{"1"}},
		{"exact-refunded", flows.Exact("type", "order.refunded"), nil, []string{"2"}},
		{"all-created-us", flows.All(flows.Prefix("source", "/u"), flows.Exact("type", "order.created")), nil, []string{"4"}},
		{"filters-created", flows.Filter{}, []flows.Filter{flows.Exact("source", "/eu"), flows.Exact("type", "order.created")}, []string{"1"}},
		{"any-type", flows.Attributes(map[string]string{"type": ""}), nil, []string{"1", "2", "3", "4"}},
		{"prefix-order", flows.Prefix("type", "order."), nil, []string{"1", "2", "4"}},
		{"any", flows.Any(flows.Exact("type", "order.refunded"), flows.Exact("type", "user.created")), nil, []string{"2", "3"}},
		{"not-created", flows.Not(flows.Exact("type", "order.created")), nil, []string{"2", "3"}},
		{"cesql", flows.CESQL("type = 'user.created'"), nil, []string{"3"}},
		{"everything", flows.Filter{}, nil, []string{"1", "2", "3", "4"}},
		{"created-again", flows.Exact("type", "order.created"), nil, []string{"1", "4"}},
		{"nothing-of-this-type", flows.Exact("type", "order.shipped"), nil, nil},
	}
	var triggers []flows.Trigger
	subs := make([]*flowstest.Recorder, len(filters))
	for i, tf := range filters {
		subs[i] = flowstest.NewRecorder()
		triggers = append(triggers, flows.Trigger{Name: tf.name, Filter: tf.f, Filters: tf.fs, Subscriber: subs[i]})
	}
	f := start(t, &flows.Broker{Triggers: triggers})
	for _, e := range []event.Event{
		flowstest.NewEvent("1", "order.created", "/eu", nil),
		flowstest.NewEvent("2", "order.refunded", "/eu", nil),
		flowstest.NewEvent("3", "user.created", "/us", nil),
		flowstest.NewEvent("4", "order.created", "/us", nil),
	} {
		if _, err := f.Handle(context.Background(), e); err != nil {
			t.Fatalf("Handle(%s) = %v", e.ID(), err)
		}
	}
	for i, tf := range filters {
		if got := ids(subs[i].Events()); !slices.Equal(got, tf.want) {
			t.Errorf("trigger %s got %v, want %v", tf.name, got, tf.want)
		}
	}
}

func TestBrokerTwoMatchingTriggersDeliverTwice(t *testing.T) {
	sub := flowstest.NewRecorder()
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Filter: ofType("a"), Subscriber: sub},
		{Filters: []flows.Filter{flows.Prefix("type", "a")}, Subscriber: sub},
	}})
	if _, err := f.Handle(context.Background(), flowstest.NewEvent("1", "a", "/s", nil)); err != nil {
		t.Fatal(err)
	}
	if got := sub.Attempts("1"); got != 2 {
		t.Errorf("the subscriber of two matching triggers got the event %d times, want 2", got)
	}
}

func TestBrokerReplyReentersAndEveryTriggerSeesIt(t *testing.T) {
	first := flowstest.NewRecorder(retype("order.enriched", "")) // replies with a new type
	enriched, all := flowstest.NewRecorder(), flowstest.NewRecorder()
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Name: "first", Filter: ofType("order.created"), Subscriber: first},
		{Name: "enriched", Filter: ofType("order.enriched"), Subscriber: enriched},
		{Name: "all", Subscriber: all},
	}})
	if _, err := f.Handle(context.Background(), flowstest.NewEvent("1", "order.created", "/shop", `{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	// Handle waits for the reply's deliveries too.
	if got := typesOf(first.Events()); !slices.Equal(got, []string{"order.created"}) {
		t.Errorf("the replying trigger got %v, want only the original", got)
	}
	if got := typesOf(enriched.Events()); !slices.Equal(got, []string{"order.enriched"}) {
		t.Errorf("the trigger on the reply's type got %v", got)
	}
	got := typesOf(all.Events())
	slices.Sort(got)
	if !slices.Equal(got, []string{"order.created", "order.enriched"}) {
		t.Errorf("the trigger without a filter got %v, want the original and the reply", got)
	}
	if r := enriched.Events()[0]; string(r.Data()) != `{"n":1}` || r.Extensions()[flows.ExtensionBrokerTTL] != nil {
		t.Errorf("reply delivered as %v", r)
	}
}

// A reply gets the TTL of the event it answers: counting down from 255, a
// subscriber that always answers with an event its own trigger matches is
// called exactly 255 times; the 255th reply is refused, reported to the
// logger and the observer, and the delivery fails (no dead-letter sink).
func TestBrokerTTLEndsALoopAfter255Deliveries(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	var refusedReplies atomic.Int32
	var outcomes sync.Map
	obs := &flows.Observer{
		Attempt: func(ctx context.Context, a *flows.AttemptInfo) (context.Context, func()) {
			return ctx, func() {
				if a.Role == flows.RoleReply && errors.Is(a.Err, flows.ErrTTLExhausted) {
					refusedReplies.Add(1)
				}
			}
		},
		Deliver: func(ctx context.Context, d *flows.DeliveryInfo) (context.Context, func()) {
			return ctx, func() {
				if errors.Is(d.Err, flows.ErrTTLExhausted) {
					outcomes.Store(d.Outcome, true)
				}
			}
		},
	}
	loop := flowstest.NewRecorder(flowstest.Echo())
	f := start(t, &flows.Broker{Name: "loopy", Triggers: []flows.Trigger{{Name: "echo", Subscriber: loop}}},
		flows.WithLogger(logger), flows.WithObserver(obs))
	_, err := f.Handle(context.Background(), flowstest.NewEvent("1", "ping", "/s", nil))
	if !errors.Is(err, flows.ErrTTLExhausted) {
		t.Errorf("Handle = %v, want an error wrapping ErrTTLExhausted", err)
	}
	var de *flows.DeliveryError
	if !errors.As(err, &de) || de.Destination != "loopy" {
		t.Errorf("Handle = %v, want a DeliveryError naming the broker", err)
	}
	if got := loop.Len(); got != flows.DefaultBrokerTTL {
		t.Errorf("the looping subscriber was called %d times, want %d", got, flows.DefaultBrokerTTL)
	}
	if got := refusedReplies.Load(); got != 1 {
		t.Errorf("observer saw %d refused replies, want 1", got)
	}
	if _, ok := outcomes.Load(flows.OutcomeFailed); !ok {
		t.Error("observer saw no failed delivery for the exhausted TTL")
	}
	if n := strings.Count(logs.String(), "broker TTL exhausted"); n < 1 || !strings.Contains(logs.String(), "trigger=echo") {
		t.Errorf("log = %s\nwant the exhausted TTL logged, naming the trigger", logs.String())
	}
}

func TestBrokerTTLLoopWithDeadLetterSink(t *testing.T) {
	loop, dead := flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder()
	f := start(t, &flows.Broker{Name: "loopy", Triggers: []flows.Trigger{{Subscriber: loop}},
		Delivery: &flows.Delivery{Retry: 3, DeadLetter: dead}})
	if _, err := f.Handle(context.Background(), flowstest.NewEvent("1", "ping", "/s", nil)); err != nil {
		t.Fatalf("Handle = %v, want nil: the dead-letter sink took the event", err)
	}
	if got := loop.Len(); got != flows.DefaultBrokerTTL {
		t.Errorf("the looping subscriber was called %d times, want %d (a refused reply is not retried)", got, flows.DefaultBrokerTTL)
	}
	dl := dead.Events()
	if len(dl) != 1 {
		t.Fatalf("dead letters = %d, want exactly 1", len(dl))
	}
	if got := dl[0].Extensions()[flows.ExtensionErrorDest]; got != "loopy" {
		t.Errorf("knativeerrordest = %v, want the broker", got)
	}
	if got := dl[0].Extensions()[flows.ExtensionErrorCode]; got != int32(400) {
		t.Errorf("knativeerrorcode = %v (%T), want 400", got, got)
	}
	if got, ok := dl[0].Extensions()[flows.ExtensionErrorData]; ok {
		t.Errorf("knativeerrordata = %v, want none (Knative's ingress answers 400 with no body)", got)
	}
	// The dead letter is the event whose reply was refused, as the broker
	// held it: TTL 1.
	if got := dl[0].Extensions()[flows.ExtensionBrokerTTL]; got != int32(1) {
		t.Errorf("dead letter's knativebrokerttl = %v, want 1", got)
	}
}

func TestBrokerTTLSetBySender(t *testing.T) {
	for _, tc := range []struct {
		ttl  any
		want int // deliveries of the loop; 0: refused
	}{
		{5, 4}, {"5", 4}, {2, 1}, {1, 0}, {0, 0}, {-3, 0}, {"abc", flows.DefaultBrokerTTL},
		{1000, 999}, // no upper cap
	} {
		t.Run(fmt.Sprint(tc.ttl), func(t *testing.T) {
			loop := flowstest.NewRecorder(flowstest.Echo())
			f := start(t, &flows.Broker{Triggers: []flows.Trigger{{Subscriber: loop}}})
			e := flowstest.NewEvent("1", "ping", "/s", nil, flowstest.WithExtension(flows.ExtensionBrokerTTL, tc.ttl))
			_, err := f.Handle(context.Background(), e)
			if tc.want == 0 {
				if !errors.Is(err, flows.ErrTTLExhausted) || !errors.Is(err, flows.ErrInvalidEvent) {
					t.Errorf("Handle = %v, want ErrTTLExhausted and ErrInvalidEvent (Knative answers 400)", err)
				}
				if err := f.Send(context.Background(), e); !errors.Is(err, flows.ErrTTLExhausted) {
					t.Errorf("Send = %v, want ErrTTLExhausted", err)
				}
			} else if !errors.Is(err, flows.ErrTTLExhausted) {
				t.Errorf("Handle = %v, want the loop to end on ErrTTLExhausted", err)
			}
			if got := loop.Len(); got != tc.want {
				t.Errorf("deliveries = %d, want %d", got, tc.want)
			}
		})
	}
}

// A subscriber cannot extend a loop by setting the TTL of its reply.
func TestBrokerReplyTTLIsTheBrokers(t *testing.T) {
	loop := flowstest.NewRecorder(flowstest.Delegate(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		e.SetExtension(flows.ExtensionBrokerTTL, 255)
		return &e, nil
	})))
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{{Subscriber: loop}}})
	e := flowstest.NewEvent("1", "ping", "/s", nil, flowstest.WithExtension(flows.ExtensionBrokerTTL, 5))
	f.Handle(context.Background(), e)
	if got := loop.Len(); got != 4 {
		t.Errorf("deliveries = %d, want 4: the reply's own TTL is replaced", got)
	}
}

// A filter never sees the TTL: it cannot match on it.
func TestBrokerFilterDoesNotSeeTheTTL(t *testing.T) {
	byTTL, noTTL, arrival := flowstest.NewRecorder(), flowstest.NewRecorder(), flowstest.NewRecorder()
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Filter: flows.Attributes(map[string]string{flows.ExtensionBrokerTTL: ""}), Subscriber: byTTL},
		{Filters: []flows.Filter{flows.CESQL("EXISTS knativebrokerttl")}, Subscriber: byTTL},
		{Filters: []flows.Filter{flows.Exact(flows.ExtensionBrokerTTL, "254")}, Subscriber: byTTL},
		{Filters: []flows.Filter{flows.CESQL("NOT EXISTS knativebrokerttl")}, Subscriber: noTTL},
		{Filters: []flows.Filter{flows.CESQL("EXISTS knativearrivaltime")}, Subscriber: arrival},
	}})
	f.Handle(context.Background(), flowstest.NewEvent("1", "a", "/s", nil, flowstest.WithExtension(flows.ExtensionBrokerTTL, 255)))
	if byTTL.Len() != 0 || noTTL.Len() != 1 || arrival.Len() != 1 {
		t.Errorf("filters on the TTL matched %d times, NOT EXISTS %d, EXISTS knativearrivaltime %d; want 0, 1, 1",
			byTTL.Len(), noTTL.Len(), arrival.Len())
	}
}

// The effective delivery of a Trigger is its own, or else the Broker's,
// whole: a Trigger with delivery {retry: 1} under a Broker with
// {retry: 3, deadLetterSink: X} retries once and has no dead-letter sink.
func TestTriggerDeliveryReplacesTheBrokersWhole(t *testing.T) {
	boom := errors.New("unavailable")
	own, inherited, dead := failN(100, boom), failN(100, boom), flowstest.NewRecorder()
	f := start(t, &flows.Broker{Name: "shop",
		Delivery: &flows.Delivery{Retry: 3, DeadLetter: dead},
		Triggers: []flows.Trigger{
			{Name: "own", Filter: ofType("a"), Subscriber: own, Delivery: &flows.Delivery{Retry: 1}},
			{Name: "inherited", Filter: ofType("b"), Subscriber: inherited},
		}})
	_, err := f.Handle(context.Background(), flowstest.NewEvent("1", "a", "/s", nil))
	var de *flows.DeliveryError
	if !errors.As(err, &de) || de.Attempts != 2 || de.Destination != "shop/triggers[0]" {
		t.Errorf("Handle = %v, want a DeliveryError after 2 attempts on shop/triggers[0]", err)
	}
	if own.Len() != 2 || dead.Len() != 0 {
		t.Errorf("own delivery: %d attempts, %d dead letters; want 2 and none", own.Len(), dead.Len())
	}
	if _, err := f.Handle(context.Background(), flowstest.NewEvent("2", "b", "/s", nil)); err != nil {
		t.Errorf("Handle = %v, want the broker's dead-letter sink to take it", err)
	}
	if inherited.Len() != 4 {
		t.Errorf("inherited delivery: %d attempts, want 4", inherited.Len())
	}
	dl := dead.MustWait(t, 1)[0]
	if dl.ID() != "2" || dl.Extensions()[flows.ExtensionErrorDest] != "shop/triggers[1]" || dl.Extensions()[flows.ExtensionErrorCode] != int32(500) {
		t.Errorf("dead letter = %v, want event 2 with knativeerrordest shop/triggers[1] and code 500", dl)
	}
	if _, ok := dl.Extensions()[flows.ExtensionErrorData]; !ok {
		t.Errorf("dead letter without knativeerrordata: %v", dl)
	}
}

func TestTriggerRetriesBackoffTimeoutAndRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := 100 * time.Millisecond
		flaky := flowstest.NewRecorder(flowstest.Fail(errors.New("unavailable")).Times(2), flowstest.NoReply())
		limited := flowstest.NewRecorder(flowstest.Fail(&flows.HTTPError{URL: "http://x", StatusCode: 429, RetryAfter: 3 * time.Second}), flowstest.NoReply())
		slow, dead := flowstest.NewRecorder(flowstest.Block()), flowstest.NewRecorder()
		f := start(t, &flows.Broker{Triggers: []flows.Trigger{
			{Filter: ofType("flaky"), Subscriber: flaky, Delivery: &flows.Delivery{Retry: 2, BackoffDelay: d}},
			{Filter: ofType("limited"), Subscriber: limited, Delivery: &flows.Delivery{Retry: 1, BackoffDelay: d, RetryAfterMax: time.Minute}},
			{Filter: ofType("slow"), Subscriber: slow, Delivery: &flows.Delivery{Retry: 1, Timeout: time.Second, DeadLetter: dead}},
		}})
		ctx := context.Background()
		for _, typ := range []string{"flaky", "limited", "slow"} {
			if _, err := f.Handle(ctx, flowstest.NewEvent(typ, typ, "/s", nil)); err != nil {
				t.Errorf("Handle(%s) = %v", typ, err)
			}
		}
		if got := gaps(attemptTimes(flaky)); !equalDurations(got, []time.Duration{d, 2 * d}) {
			t.Errorf("retries of a failing subscriber %v apart, want [100ms 200ms]", got)
		}
		if got := gaps(attemptTimes(limited)); !equalDurations(got, []time.Duration{3 * time.Second}) {
			t.Errorf("retry after a 429 with Retry-After: 3s came %v later, want 3s", got)
		}
		if slow.Len() != 2 || dead.Len() != 1 {
			t.Errorf("a subscriber that times out: %d attempts, %d dead letters; want 2 and 1", slow.Len(), dead.Len())
		}
	})
}

// Replies do not wait for room in the broker's channels: the delivery that
// makes a reply holds its place until the reply is in, so waiting would
// deadlock a Trigger that replies to itself once senders fill its channel.
func TestBrokerRepliesDoNotDeadlockAFullChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loop, other := flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder(flowstest.Echo())
		f := start(t, &flows.Broker{Triggers: []flows.Trigger{
			{Subscriber: loop}, {Filter: ofType("a"), Subscriber: other},
		}}, flows.WithCapacity(2))
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				// Each event loops 3 times through both triggers: TTL 4, 3, 2.
				e := flowstest.NewEvent(strconv.Itoa(i), "a", "/s", nil, flowstest.WithExtension(flows.ExtensionBrokerTTL, 5))
				if _, err := f.Handle(context.Background(), e); !errors.Is(err, flows.ErrTTLExhausted) {
					t.Errorf("Handle = %v, want the loops to end on the TTL", err)
				}
			})
		}
		wg.Wait()
		// Each delivery of each trigger replies, and every reply reaches
		// both: 1, 2, 4, 8 deliveries per trigger and level.
		if want := 50 * (1 + 2 + 4 + 8); loop.Len() != want || other.Len() != want {
			t.Errorf("deliveries %d and %d, want %d each", loop.Len(), other.Len(), want)
		}
	})
}

// Shutdown delivers everything accepted, the replies it causes included,
// before it closes the channels.
func TestBrokerShutdownDrainsReplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loop := flowstest.NewRecorder(flowstest.Echo())
		dead := flowstest.NewRecorder()
		f, err := (&flows.Broker{Triggers: []flows.Trigger{{Subscriber: loop,
			Delivery: &flows.Delivery{Retry: 3, BackoffDelay: time.Second, DeadLetter: dead}}}}).Start(context.Background(), flows.WithCapacity(4))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			e := flowstest.NewEvent(strconv.Itoa(i), "a", "/s", nil, flowstest.WithExtension(flows.ExtensionBrokerTTL, 4))
			if err := f.Send(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		// TTL 3, 2, 1: three deliveries each, and the last reply refused.
		if loop.Len() != 60 || dead.Len() != 20 {
			t.Errorf("after Shutdown: %d deliveries and %d dead letters, want 60 and 20", loop.Len(), dead.Len())
		}
		if err := f.Send(context.Background(), flowstest.NewEvent("late", "a", "/s", nil)); !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Send after Shutdown = %v, want ErrClosed", err)
		}
	})
}

// A hard stop with a loop running ends: Close cancels it and reports
// what was left.
func TestBrokerCloseStopsALoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loop := flowstest.NewRecorder(flowstest.Echo())
		f, err := (&flows.Broker{Triggers: []flows.Trigger{{Subscriber: loop,
			Delivery: &flows.Delivery{Timeout: time.Second}}}}).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		f.Send(context.Background(), flowstest.NewEvent("1", "a", "/s", nil))
		loop.MustWait(t, 10)
		f.Close()
		<-f.Done()
		if n := loop.Len(); n > flows.DefaultBrokerTTL {
			t.Errorf("%d deliveries", n)
		}
	})
}

func TestBrokerUnderConcurrentLoad(t *testing.T) {
	even, odd, all := flowstest.NewRecorder(), flowstest.NewRecorder(), flowstest.NewRecorder()
	parity := func(want string) flows.Filter { return flows.Exact("parity", want) }
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Filters: []flows.Filter{parity("even")}, Subscriber: even},
		{Filters: []flows.Filter{parity("odd")}, Subscriber: odd},
		{Subscriber: all},
	}}, flows.WithConcurrency(4), flows.WithCapacity(16))
	const senders, each = 8, 250
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				n := s*each + i
				p := "even"
				if n%2 == 1 {
					p = "odd"
				}
				e := flowstest.NewEvent(strconv.Itoa(n), "n", "/s", nil, flowstest.WithExtension("parity", p))
				if err := f.Send(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	all.MustWait(t, senders*each)
	even.MustWait(t, senders*each/2)
	odd.MustWait(t, senders*each/2)
	for _, r := range []*flowstest.Recorder{even, odd, all} {
		seen := map[string]int{}
		for _, e := range r.Events() {
			seen[e.ID()]++
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("event %s delivered %d times to one trigger", id, n)
			}
		}
	}
	if even.Len() != senders*each/2 || odd.Len() != senders*each/2 || all.Len() != senders*each {
		t.Errorf("even=%d odd=%d all=%d", even.Len(), odd.Len(), all.Len())
	}
}

// Knative's "Sequence with Broker and Trigger": a ping into the broker, a
// trigger on the ping's type feeds a Sequence whose reply goes back to the
// broker, and a trigger on the Sequence's new type feeds event-display.
func TestBrokerWithSequenceLikeKnativeDocs(t *testing.T) {
	type payload struct {
		ID      int    `json:"id"`
		Message string `json:"message"`
	}
	display := flowstest.NewRecorder()
	var seq *flows.Flow
	toSequence := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) { return seq.Handle(ctx, e) })
	broker := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Name: "sequence-trigger", Filter: ofType("dev.knative.sources.ping"), Subscriber: toSequence},
		{Name: "display-trigger", Filter: ofType("samples.http.mod3"), Subscriber: display},
	}})
	third := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		r, err := appender(" - Handled by 2").Handle(ctx, e)
		if r != nil {
			r.SetType("samples.http.mod3")
		}
		return r, err
	})
	seq = start(t, &flows.Sequence{Name: "sequence", Steps: []flows.Step{
		{Subscriber: appender(" - Handled by 0")}, {Subscriber: appender(" - Handled by 1")}, {Subscriber: third},
	}, Reply: broker})
	ping := flowstest.NewEvent("ping-1", "dev.knative.sources.ping", "/apis/v1/namespaces/default/pingsources/ping-source",
		`{"message":"Hello world!"}`)
	if _, err := broker.Handle(context.Background(), ping); err != nil {
		t.Fatal(err)
	}
	got := display.MustWait(t, 1)
	var p payload
	if err := json.Unmarshal(got[0].Data(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Message != "Hello world! - Handled by 0 - Handled by 1 - Handled by 2" || got[0].ID() != "ping-1" ||
		got[0].Source() != ping.Source() || got[0].Type() != "samples.http.mod3" {
		t.Errorf("event-display got %v", got[0])
	}
	if display.Len() != 1 {
		t.Errorf("event-display got %d events, want exactly 1", display.Len())
	}
}

func TestBrokerValidate(t *testing.T) {
	b := &flows.Broker{Name: "shop", Delivery: &flows.Delivery{Retry: -1}, Triggers: []flows.Trigger{
		{Name: "x", Subscriber: flows.Discard},
		{Name: "x", Subscriber: nil, Delivery: &flows.Delivery{Timeout: -time.Second}},
	}}
	err := b.Validate()
	for _, want := range []string{
		`flows: invalid broker "shop": triggers[1].name: "x" is also the name of triggers[0]`,
		`triggers[1].subscriber: missing`,
		`triggers[1].delivery.timeout: must be >= 0`,
		`delivery.retry: must be >= 0`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v\nwant it to contain %q", err, want)
		}
	}
	if _, err := b.Start(context.Background()); !errors.Is(err, flows.ErrInvalid) {
		t.Errorf("Start = %v, want ErrInvalid", err)
	}
	if err := (&flows.Broker{}).Validate(); err != nil {
		t.Errorf("a broker without triggers: Validate = %v, want nil", err)
	}
}

// The broker is a Flow: Run drains it, and it can be the reply of another
// flow.
func TestBrokerRunAndAsAReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := flowstest.NewRecorder()
		ctx, cancel := context.WithCancel(context.Background())
		b := &flows.Broker{Triggers: []flows.Trigger{{Filter: ofType("done"), Subscriber: out}}}
		broker, err := b.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seq := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(retype("done", ""))}}, Reply: broker})
		if _, err := seq.Handle(ctx, flowstest.NewEvent("1", "start", "/s", nil)); err != nil {
			t.Fatal(err)
		}
		if out.Len() != 1 {
			t.Errorf("the broker as a reply delivered %d events, want 1", out.Len())
		}
		broker.Close()

		done := make(chan error)
		go func() { done <- b.Run(ctx) }()
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// Over HTTP, a reply hop carries the pass-through headers of the
// subscriber's response: a Knative-* header that the replying subscriber
// answered with reaches the subscriber of the Trigger the reply matches,
// and the sender's pass-through headers reach the first subscriber.
func TestBrokerReplyCarriesResponseHeaders(t *testing.T) {
	replier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Prefer") != "reply" {
			t.Errorf("request to the subscriber without Prefer: reply: %v", r.Header)
		}
		w.Header().Set("Knative-Marker", "from-the-replier")
		w.Header().Set("Foo", "not passed")
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Id", "reply-1")
		w.Header().Set("Ce-Source", "/replier")
		w.Header().Set("Ce-Type", "order.enriched")
		w.WriteHeader(http.StatusOK)
	}))
	defer replier.Close()
	var mu sync.Mutex
	var seen []http.Header
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer receiver.Close()
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Filter: ofType("order.created"), Subscriber: flows.HTTP(replier.URL)},
		{Filter: ofType("order.enriched"), Subscriber: flows.HTTP(receiver.URL)},
	}})
	if _, err := f.Handle(context.Background(), flowstest.NewEvent("1", "order.created", "/s", nil)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("the reply's trigger got %d requests, want 1", len(seen))
	}
	if got := seen[0].Get("Knative-Marker"); got != "from-the-replier" {
		t.Errorf("Knative-Marker = %q, want the replier's response header", got)
	}
	if got := seen[0].Get("Foo"); got != "" {
		t.Errorf("Foo = %q, want only pass-through headers", got)
	}
	if got := seen[0].Get("Ce-Knativebrokerttl"); got != "" {
		t.Errorf("the subscriber got the TTL: %q", got)
	}
}

// Senders racing a Shutdown: every event that Send accepted is delivered,
// with the replies it causes, and the others get ErrClosed.
func TestBrokerShutdownUnderLoad(t *testing.T) {
	echo := flowstest.NewRecorder(retype("b", ""))
	out := flowstest.NewRecorder()
	f, err := (&flows.Broker{Triggers: []flows.Trigger{
		{Filter: ofType("a"), Subscriber: echo},
		{Filter: ofType("b"), Subscriber: out},
	}}).Start(context.Background(), flows.WithCapacity(8), flows.WithConcurrency(2))
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for s := range 8 {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				err := f.Send(context.Background(), flowstest.NewEvent(fmt.Sprintf("%d-%d", s, i), "a", "/s", nil))
				if errors.Is(err, flows.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				accepted.Add(1)
			}
		})
	}
	echo.MustWait(t, 100) // the senders are going
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	wg.Wait()
	if n := accepted.Load(); int64(echo.Len()) != n || int64(out.Len()) != n {
		t.Errorf("accepted %d events; first trigger got %d, the replies' trigger %d", n, echo.Len(), out.Len())
	}
}

// A Trigger feeding a Sequence that replies to the broker with an event the
// same Trigger matches: Knative loses the TTL in the Sequence and loops for
// ever; here the Sequence's events carry it on, so the loop ends after 255
// rounds as a direct reply loop does, with one dead letter of the refused
// reply (code 400), and a fresh event starts its own count again.
func TestBrokerTTLCarriedThroughASequence(t *testing.T) {
	step, dead := flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder()
	var seq, broker *flows.Flow
	toSeq := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) { return nil, seq.Send(ctx, e) })
	toBroker := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		return nil, broker.Send(ctx, e)
	})
	broker = start(t, &flows.Broker{Name: "loopy", Triggers: []flows.Trigger{{Name: "again", Subscriber: toSeq}}})
	seq = start(t, &flows.Sequence{Name: "echo", Steps: []flows.Step{{Subscriber: step}}, Reply: toBroker,
		Delivery: &flows.Delivery{DeadLetter: dead}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for round, id := range []string{"1", "2"} {
		if err := broker.Send(ctx, flowstest.NewEvent(id, "ping", "/s", nil)); err != nil {
			t.Fatal(err)
		}
		dl, err := dead.Wait(ctx, round+1)
		if err != nil {
			t.Fatalf("no dead letter after %d steps: the loop did not end (%v)", step.Len(), err)
		}
		if got := step.Len(); got != (round+1)*flows.DefaultBrokerTTL {
			t.Errorf("the Sequence's step was called %d times, want %d", got, (round+1)*flows.DefaultBrokerTTL)
		}
		if got := dl[round].Extensions()[flows.ExtensionErrorCode]; got != int32(400) {
			t.Errorf("knativeerrorcode = %v, want 400 (the refused reply)", got)
		}
		if got, ok := step.Events()[step.Len()-1].Extensions()[flows.ExtensionBrokerTTL]; ok {
			t.Errorf("the step saw knativebrokerttl = %v", got)
		}
	}
}

// The same for two brokers whose Triggers feed each other: the TTL goes
// across, so the ping-pong ends.
func TestBrokerTTLCarriedAcrossBrokers(t *testing.T) {
	var a, b *flows.Flow
	var rounds atomic.Int32
	sendTo := func(f **flows.Flow) flows.Handler {
		return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			rounds.Add(1)
			return nil, (*f).Send(ctx, e)
		})
	}
	dead := flowstest.NewRecorder()
	a = start(t, &flows.Broker{Name: "a", Triggers: []flows.Trigger{{Subscriber: sendTo(&b)}}, Delivery: &flows.Delivery{DeadLetter: dead}})
	b = start(t, &flows.Broker{Name: "b", Triggers: []flows.Trigger{{Subscriber: sendTo(&a)}}, Delivery: &flows.Delivery{DeadLetter: dead}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Send(ctx, flowstest.NewEvent("1", "ping", "/s", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Wait(ctx, 1); err != nil {
		t.Fatalf("no dead letter after %d rounds: the ping-pong did not end (%v)", rounds.Load(), err)
	}
	if got := rounds.Load(); got != flows.DefaultBrokerTTL {
		t.Errorf("%d Trigger deliveries, want %d", got, flows.DefaultBrokerTTL)
	}
}
