package flows_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

func TestSequenceChainsStepsInOrder(t *testing.T) {
	out := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{
		Steps: []flows.Step{{Subscriber: appender(" - Handled by 0")}, {Subscriber: appender(" - Handled by 1")}, {Subscriber: appender(" - Handled by 2")}},
		Reply: out,
	})
	for i := range 50 {
		e := newEvent(strconv.Itoa(i), map[string]string{"message": "hello, world!"})
		e.SetExtension("trace", "t"+strconv.Itoa(i))
		if err := f.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	got := out.MustWait(t, 50)
	for i, e := range got {
		if e.ID() != strconv.Itoa(i) {
			t.Fatalf("event %d has id %s: want the order they were sent in (%v)", i, e.ID(), ids(got))
		}
		if m := message(t, e); m != "hello, world! - Handled by 0 - Handled by 1 - Handled by 2" {
			t.Errorf("message = %q", m)
		}
		// The appender keeps the attributes and extensions of its input.
		if e.Source() != "/test" || e.Type() != "test.event" || e.Extensions()["trace"] != "t"+strconv.Itoa(i) {
			t.Errorf("attributes changed: %s", e)
		}
		if e.DataContentType() != event.ApplicationJSON {
			t.Errorf("datacontenttype = %q", e.DataContentType())
		}
	}
}

func TestStepWithoutReplyStopsTheEventSilently(t *testing.T) {
	out, dls := flowstest.NewRecorder(), flowstest.NewRecorder()
	var third atomic.Int32
	f := start(t, &flows.Sequence{
		Steps: []flows.Step{
			{Subscriber: appender(" a")},
			{Subscriber: flows.Match(func(e event.Event) bool { return e.ID() != "drop" })},
			{Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
				third.Add(1)
				return &e, nil
			})},
		},
		Reply:    out,
		Delivery: &flows.Delivery{Retry: 2, DeadLetter: dls},
	})
	if _, err := f.Handle(context.Background(), newEvent("drop", msg{})); err != nil {
		t.Fatalf("Handle of a dropped event: %v, want nil: no event is not an error", err)
	}
	if _, err := f.Handle(context.Background(), newEvent("keep", msg{})); err != nil {
		t.Fatal(err)
	}
	if got := ids(out.Events()); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("reply got %v, want [keep]", got)
	}
	if third.Load() != 1 {
		t.Errorf("third step called %d times, want 1", third.Load())
	}
	if n := len(dls.Events()); n != 0 {
		t.Errorf("dead-letter sink got %d events, want none", n)
	}
}

func TestSequenceWithoutReplyDropsLastOutput(t *testing.T) {
	var calls atomic.Int32
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		calls.Add(1)
		return &e, nil
	})}}})
	if _, err := f.Handle(context.Background(), newEvent("1", nil)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("calls = %d", calls.Load())
	}
}

func TestParallelFansOutToEveryBranch(t *testing.T) {
	out := flowstest.NewRecorder()
	branch := func(tag string) flows.Handler {
		return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			e.SetExtension("branch", tag)
			return &e, nil
		})
	}
	f := start(t, &flows.Parallel{
		Branches: []flows.Branch{{Subscriber: branch("a")}, {Subscriber: branch("b")}, {Subscriber: branch("c")}},
		Reply:    out,
	})
	if _, err := f.Handle(context.Background(), newEvent("1", msg{Message: "x"})); err != nil {
		t.Fatal(err)
	}
	got := out.Events()
	var tags []string
	for _, e := range got {
		tags = append(tags, e.Extensions()["branch"].(string))
		if e.ID() != "1" {
			t.Errorf("id = %s", e.ID())
		}
	}
	slices.Sort(tags)
	// Each branch had its own copy: no branch saw another's extension.
	if !slices.Equal(tags, []string{"a", "b", "c"}) {
		t.Errorf("reply got branches %v, want one output per branch [a b c]", tags)
	}
}

func TestParallelFilters(t *testing.T) {
	even, odd, all := flowstest.NewRecorder(), flowstest.NewRecorder(), flowstest.NewRecorder()
	isEven := func(e event.Event) bool { n, _ := strconv.Atoi(e.ID()); return n%2 == 0 }
	transform := func(message string) flows.Handler {
		return flows.Typed(func(context.Context, msg) (msg, error) { return msg{Message: message}, nil })
	}
	f := start(t, &flows.Parallel{
		Branches: []flows.Branch{
			{Filter: flows.Match(isEven), Subscriber: transform("this is even!"), Reply: even},
			{Filter: flows.Match(func(e event.Event) bool { return !isEven(e) }), Subscriber: transform("this is odd!"), Reply: odd},
			// A filter's reply is what the branch sees: here it rewrites the type.
			{Filter: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
				e.SetType("filtered")
				return &e, nil
			}), Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) { return &e, nil })},
		},
		Reply: all,
	})
	for i := range 6 {
		if _, err := f.Handle(context.Background(), newEvent(strconv.Itoa(i), msg{Message: "Even or odd?"})); err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(even.Events()); !slices.Equal(got, []string{"0", "2", "4"}) {
		t.Errorf("even branch replied %v", got)
	}
	if got := ids(odd.Events()); !slices.Equal(got, []string{"1", "3", "5"}) {
		t.Errorf("odd branch replied %v", got)
	}
	for _, e := range even.Events() {
		if m := message(t, e); m != "this is even!" {
			t.Errorf("even message %q", m)
		}
	}
	// The branch reply overrides the global reply: only the third branch reached it.
	if got := all.Events(); len(got) != 6 {
		t.Fatalf("global reply got %d events, want 6 (from the third branch only)", len(got))
	}
	for _, e := range all.Events() {
		if e.Type() != "filtered" {
			t.Errorf("type %q: the subscriber must receive the filter's reply", e.Type())
		}
	}
}

func TestParallelFilterHopIsNotRetried(t *testing.T) {
	filter := failN(100, errors.New("filter down"))
	dls, out := flowstest.NewRecorder(), flowstest.NewRecorder()
	f := start(t, &flows.Parallel{
		Branches: []flows.Branch{{Filter: filter, Subscriber: flows.Match(func(event.Event) bool { return true })}},
		Reply:    out,
		Delivery: &flows.Delivery{Retry: 3, DeadLetter: dls},
	})
	_, err := f.Handle(context.Background(), newEvent("1", nil))
	var de *flows.DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("Handle = %v, want a DeliveryError for the failed filter", err)
	}
	if filter.Len() != 1 {
		t.Errorf("filter called %d times, want 1: the filter hop has no retries", filter.Len())
	}
	if len(dls.Events()) != 0 || len(out.Events()) != 0 {
		t.Errorf("dead letters %d, replies %d: want none", len(dls.Events()), len(out.Events()))
	}
}

func TestFlowsNest(t *testing.T) {
	out := flowstest.NewRecorder()
	// A Parallel as a step of a Sequence: its branches reply to the rest of
	// the chain, as a Knative Parallel's reply would point to it.
	tail := start(t, &flows.Sequence{Name: "tail", Steps: []flows.Step{{Subscriber: appender(" !")}}, Reply: out})
	par := start(t, &flows.Parallel{
		Name:     "fan",
		Branches: []flows.Branch{{Subscriber: appender(" left")}, {Subscriber: appender(" right")}},
		Reply:    tail,
	})
	head := start(t, &flows.Sequence{Name: "head", Steps: []flows.Step{{Subscriber: appender("go")}, {Subscriber: par}}})
	if _, err := head.Handle(context.Background(), newEvent("1", msg{})); err != nil {
		t.Fatal(err)
	}
	// Handle waited for the nested flows too.
	var got []string
	for _, e := range out.Events() {
		got = append(got, message(t, e))
	}
	slices.Sort(got)
	if want := []string{"go left !", "go right !"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestHandleReportsUndeliveredEvents(t *testing.T) {
	f := start(t, &flows.Sequence{Name: "orders", Steps: []flows.Step{
		{Subscriber: appender("")},
		{Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, errors.New("boom") })},
	}})
	_, err := f.Handle(context.Background(), newEvent("1", nil))
	var de *flows.DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("Handle = %v, want a *DeliveryError", err)
	}
	if de.Destination != "orders/steps[1]" || de.Attempts != 1 || de.Err.Error() != "boom" {
		t.Errorf("DeliveryError = %+v", de)
	}
}

func TestTypedHandler(t *testing.T) {
	type in struct{ N int }
	type out struct{ Double int }
	h := flows.Typed(func(_ context.Context, v in) (out, error) {
		if v.N < 0 {
			return out{}, flows.ErrNoReply
		}
		return out{v.N * 2}, nil
	}, flows.TypedReplyType("doubled"), flows.TypedReplySource("/doubler"))

	reply, err := h.Handle(context.Background(), newEvent("1", in{N: 21}))
	if err != nil || reply == nil {
		t.Fatalf("Handle = %v, %v", reply, err)
	}
	if string(reply.Data()) != `{"Double":42}` || reply.Type() != "doubled" || reply.Source() != "/doubler" || reply.ID() != "1" {
		t.Errorf("reply = %s", reply)
	}
	if reply, err := h.Handle(context.Background(), newEvent("2", in{N: -1})); reply != nil || err != nil {
		t.Errorf("ErrNoReply gave %v, %v; want no event and no error", reply, err)
	}
	// Empty data decodes to the zero value, as Knative's appender does.
	if reply, err := h.Handle(context.Background(), newEvent("3", nil)); err != nil || string(reply.Data()) != `{"Double":0}` {
		t.Errorf("empty data: %v, %v", reply, err)
	}
	bad := newEvent("4", nil)
	bad.SetData(event.ApplicationJSON, []byte(`{"N": "not a number"}`))
	if _, err := h.Handle(context.Background(), bad); !flows.IsPermanent(err) {
		t.Errorf("undecodable data: err = %v, want a permanent error", err)
	}
}

func TestSendRefusesInvalidEvents(t *testing.T) {
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}})
	e := event.New()
	e.SetType("t") // no id, no source
	if err := f.Send(context.Background(), e); !errors.Is(err, flows.ErrInvalidEvent) {
		t.Errorf("Send = %v, want ErrInvalidEvent", err)
	}
	if err := f.Send(context.Background(), event.Event{}); !errors.Is(err, flows.ErrInvalidEvent) {
		t.Errorf("Send(zero event) = %v, want ErrInvalidEvent", err)
	}
}

func TestSendCopiesTheCallersEvent(t *testing.T) {
	out := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Match(func(event.Event) bool { return true })}}, Reply: out})
	e := newEvent("0", nil)
	for i := range 10 {
		e.SetID(strconv.Itoa(i)) // reuse one event value for every send
		if err := f.Send(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(out.MustWait(t, 10)); !slices.Equal(got, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}) {
		t.Errorf("got %v", got)
	}
}

func TestValidation(t *testing.T) {
	h := flows.Discard
	cases := []struct {
		name string
		def  interface{ Validate() error }
		want []string
	}{
		{"no steps", &flows.Sequence{}, []string{`flows: invalid sequence "sequence": steps: a sequence needs at least one step`}},
		{"nil subscriber", &flows.Sequence{Name: "s", Steps: []flows.Step{{Subscriber: h}, {}}},
			[]string{`flows: invalid sequence "s": steps[1].subscriber: missing: every step needs a subscriber`}},
		{"nil func", &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(nil)}}}, []string{"steps[0].subscriber: missing"}},
		{"negative retry and bad policy", &flows.Sequence{Steps: []flows.Step{{Subscriber: h, Delivery: &flows.Delivery{Retry: -1, BackoffPolicy: "fibonacci"}}}},
			[]string{"steps[0].delivery.retry: must be >= 0, got -1", `steps[0].delivery.backoffPolicy: must be "exponential" or "linear", got "fibonacci"`}},
		{"negative durations", &flows.Sequence{Steps: []flows.Step{{Subscriber: h}}, Delivery: &flows.Delivery{Timeout: -time.Second, BackoffDelay: -1}},
			[]string{"delivery.backoffDelay: must be >= 0", "delivery.timeout: must be >= 0, got -1s"}},
		{"bad URL", &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP("localhost:8080")}}}, []string{`steps[0].subscriber: invalid URL "localhost:8080"`}},
		{"no branches", &flows.Parallel{}, []string{`flows: invalid parallel "parallel": branches: a parallel needs at least one branch`}},
		{"branch without subscriber", &flows.Parallel{Branches: []flows.Branch{{Subscriber: h}, {Filter: h}}}, []string{"branches[1].subscriber: missing"}},
		{"branch bad delivery", &flows.Parallel{Branches: []flows.Branch{{Subscriber: h, Delivery: &flows.Delivery{Retry: -2}}}}, []string{"branches[0].delivery.retry"}},
		// A nil value in an optional field would fail every event with a panic.
		{"nil reply func", &flows.Sequence{Steps: []flows.Step{{Subscriber: h}}, Reply: flows.HandlerFunc(nil)}, []string{"reply: missing: a nil flows.HandlerFunc"}},
		{"nil dead-letter target", &flows.Sequence{Steps: []flows.Step{{Subscriber: h, Delivery: &flows.Delivery{DeadLetter: (*flows.HTTPTarget)(nil)}}}},
			[]string{"steps[0].delivery.deadLetter: missing: a nil *flows.HTTPTarget"}},
		{"nil filter flow", &flows.Parallel{Branches: []flows.Branch{{Filter: (*flows.Flow)(nil), Subscriber: h}}}, []string{"branches[0].filter: missing: a nil *flows.Flow"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.def.Validate()
			if !errors.Is(err, flows.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			var de *flows.DefinitionError
			if !errors.As(err, &de) {
				t.Fatalf("Validate = %v, want a *DefinitionError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if s, ok := tc.def.(*flows.Sequence); ok {
				if _, err := s.Start(context.Background()); !errors.Is(err, flows.ErrInvalid) {
					t.Errorf("Start = %v, want the validation error", err)
				}
			}
		})
	}
}

func TestValidationReportsEveryProblemWithItsPath(t *testing.T) {
	err := (&flows.Sequence{Name: "s", Steps: []flows.Step{{}, {Subscriber: flows.Discard, Delivery: &flows.Delivery{Retry: -1}}, {}}}).Validate()
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var de *flows.DefinitionError
		if errors.As(e, &de) {
			paths = append(paths, de.Path)
		}
	}
	if want := []string{"steps[0].subscriber", "steps[1].delivery.retry", "steps[2].subscriber"}; !slices.Equal(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}
}

func TestAFailingInnerFlowIsNotRunTwice(t *testing.T) {
	first := flowstest.NewRecorder(flowstest.Echo())
	inner := start(t, &flows.Sequence{Name: "inner", Steps: []flows.Step{
		{Subscriber: first},
		{Subscriber: flowstest.NewRecorder(flowstest.Fail(errors.New("down")))},
	}})
	dls := flowstest.NewRecorder()
	outer := start(t, &flows.Sequence{Name: "outer", Steps: []flows.Step{{Subscriber: inner}},
		Delivery: &flows.Delivery{Retry: 3, DeadLetter: dls}})
	if _, err := outer.Handle(context.Background(), newEvent("1", nil)); err != nil {
		t.Fatal(err)
	}
	if n := first.Len(); n != 1 {
		t.Errorf("the inner flow's first step ran %d times, want once", n)
	}
	if got := dls.Events(); len(got) != 1 || got[0].Extensions()[flows.ExtensionErrorDest] != "inner" {
		t.Errorf("outer dead letters = %v, want the event, failed at the inner flow", flowstest.IDs(got))
	}
}
