package otelflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"github.com/eventflows/flows/otelflows"
	"go.opentelemetry.io/otel/attribute"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
)

var errBoom = errors.New("boom")

func flowAttr(name string) attribute.KeyValue { return otelflows.FlowKey.String(name) }
func stepAttr(step string) attribute.KeyValue { return otelflows.StepKey.String(step) }
func outcomeAttr(o flows.Outcome) attribute.KeyValue {
	return otelflows.OutcomeKey.String(string(o))
}

func handle(t *testing.T, f *flows.Flow, e event.Event) {
	t.Helper()
	if _, err := f.Handle(t.Context(), e); err != nil {
		t.Fatal(err)
	}
}

func TestSequenceIsOneTraceOfNestedSteps(t *testing.T) {
	h := newHarness(t)
	steps := []*flowstest.Recorder{flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder(flowstest.Echo())}
	reply := flowstest.NewRecorder()
	f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: steps[0]}, {Subscriber: steps[1]}, {Subscriber: steps[2]}}, Reply: reply}).
		Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle(t, f, flowstest.NewEvent("1", "t", "/test", nil))

	assertTree(t, h.ended(), `
send seq
  seq steps[0] #1 delivered
    seq steps[1] #1 delivered
      seq steps[2] #1 delivered
        seq steps[2] reply #1
`)
	assertOneTrace(t, h.ended())

	s1 := h.span(t, "seq steps[1]", 1)
	if s1.SpanKind != trace.SpanKindConsumer {
		t.Errorf("step span kind %v, want consumer", s1.SpanKind)
	}
	for k, want := range map[attribute.Key]string{
		otelflows.FlowKey:                 "seq",
		otelflows.StepKey:                 "steps[1]",
		otelflows.SubscriptionKey:         "seq-kn-sequence-1",
		otelflows.DestinationKey:          "seq/steps[1]",
		semconv.CloudEventsEventIDKey:     "1",
		semconv.CloudEventsEventTypeKey:   "t",
		semconv.CloudEventsEventSourceKey: "/test",
	} {
		if got := strAttr(s1, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// Each handler gets the event with the trace context of its own delivery.
	for i, step := range steps {
		got := otelflows.TraceContext(step.Events()[0])
		want := h.span(t, "seq steps["+string(rune('0'+i))+"]", 1).SpanContext
		if got.TraceID() != want.TraceID() || got.SpanID() != want.SpanID() {
			t.Errorf("step %d got traceparent %s/%s, want its delivery span %s/%s", i, got.TraceID(), got.SpanID(), want.TraceID(), want.SpanID())
		}
	}
	if got, want := otelflows.TraceContext(reply.Events()[0]).SpanID(), h.span(t, "seq steps[2] reply", 1).SpanContext.SpanID(); got != want {
		t.Errorf("reply got span %s, want the reply span %s", got, want)
	}
}

func TestParallelBranchesAreChildrenOfTheirFilters(t *testing.T) {
	h := newHarness(t)
	reply := flowstest.NewRecorder()
	pass := flows.Match(func(event.Event) bool { return true })
	block := flows.Match(func(event.Event) bool { return false })
	f, err := (&flows.Parallel{Name: "par", Branches: []flows.Branch{
		{Filter: pass, Subscriber: flowstest.NewRecorder(flowstest.Echo())},
		{Filter: block, Subscriber: flowstest.NewRecorder(flowstest.Echo())},
		{Subscriber: flowstest.NewRecorder(flowstest.Echo())},
	}, Reply: reply}).Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle(t, f, flowstest.NewEvent("1", "t", "/test", nil))

	assertTree(t, h.ended(), `
send par
  par branches[0].filter #1 delivered
    par branches[0] #1 delivered
      par branches[0] reply #1
  par branches[1].filter #1 filtered
  par branches[2] #1 delivered
    par branches[2] reply #1
`)
	assertOneTrace(t, h.ended())

	rm := h.metrics(t)
	for _, c := range []struct {
		step    string
		outcome flows.Outcome
		want    int64
	}{
		{"branches[0].filter", flows.OutcomeDelivered, 1},
		{"branches[0]", flows.OutcomeDelivered, 1},
		{"branches[1].filter", flows.OutcomeFiltered, 1},
		{"branches[1]", flows.OutcomeDelivered, 0},
		{"branches[2]", flows.OutcomeDelivered, 1},
	} {
		if got, _ := value(rm, "flows.deliveries", flowAttr("par"), stepAttr(c.step), outcomeAttr(c.outcome)); got != c.want {
			t.Errorf("flows.deliveries{%s, %s} = %d, want %d", c.step, c.outcome, got, c.want)
		}
	}
	// Three paths end: two replies and one filtered out.
	if got, _ := value(rm, "flows.event.duration", flowAttr("par")); got != 3 {
		t.Errorf("flows.event.duration has %d measures, want 3", got)
	}
}

func TestRetriesAreSiblingAttemptSpans(t *testing.T) {
	h := newHarness(t)
	step := flowstest.NewRecorder(flowstest.Fail(errBoom).Times(2), flowstest.Echo())
	f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: step, Delivery: &flows.Delivery{Retry: 3}}},
		Reply: flowstest.NewRecorder()}).Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle(t, f, flowstest.NewEvent("1", "t", "/test", nil))

	assertTree(t, h.ended(), `
send seq
  seq steps[0] #1 retried [error]
  seq steps[0] #2 retried [error]
  seq steps[0] #3 delivered
    seq steps[0] reply #1
`)
	first := h.span(t, "seq steps[0]", 1)
	if first.Status.Description != "boom" || len(first.Events) != 1 || first.Events[0].Name != "exception" {
		t.Errorf("failed attempt: status %q, events %v; want status boom and one exception event", first.Status.Description, first.Events)
	}
	if got := intAttr(first, otelflows.MaxAttemptsKey); got != 4 {
		t.Errorf("max attempts %d, want 4", got)
	}

	rm := h.metrics(t)
	for o, want := range map[flows.Outcome]int64{flows.OutcomeRetried: 2, flows.OutcomeDelivered: 1} {
		if got, _ := value(rm, "flows.deliveries", flowAttr("seq"), stepAttr("steps[0]"), outcomeAttr(o)); got != want {
			t.Errorf("flows.deliveries{%s} = %d, want %d", o, got, want)
		}
	}
	role := otelflows.RoleKey.String("subscriber")
	if got, _ := value(rm, "flows.delivery.duration", flowAttr("seq"), role); got != 3 {
		t.Errorf("subscriber calls measured: %d, want 3", got)
	}
	if got, _ := value(rm, "flows.delivery.duration", flowAttr("seq"), role, semconv.ErrorTypeKey.String("_OTHER")); got != 2 {
		t.Errorf("failed subscriber calls measured: %d, want 2", got)
	}
}

func TestDeadLetterIsTracedAndLoggedWithTraceIDs(t *testing.T) {
	h := newHarness(t)
	var logs bytes.Buffer
	logger := slog.New(otelflows.LogHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	dead := flowstest.NewRecorder()
	f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Fail(errBoom)),
		Delivery: &flows.Delivery{Retry: 1, DeadLetter: dead}}}}).
		Start(t.Context(), flows.WithObserver(h.obs), flows.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle(t, f, flowstest.NewEvent("1", "t", "/test", nil))

	assertTree(t, h.ended(), `
send seq
  seq steps[0] #1 retried [error]
  seq steps[0] #2 dead-lettered [error]
    seq steps[0] dead-letter #1
`)
	traceID := assertOneTrace(t, h.ended())
	dlSpan := h.span(t, "seq steps[0] dead-letter", 1)
	if got := strAttr(dlSpan, otelflows.DestinationKey); got != "seq/steps[0].delivery.deadLetter" {
		t.Errorf("dead-letter destination %q", got)
	}
	if got := otelflows.TraceContext(dead.Events()[0]); got.SpanID() != dlSpan.SpanContext.SpanID() {
		t.Errorf("dead letter carries span %s, want the dead-letter span %s", got.SpanID(), dlSpan.SpanContext.SpanID())
	}

	// The flow's log records point at the attempt they are about.
	want := map[string]string{
		"flows: attempt failed, will retry":         h.span(t, "seq steps[0]", 1).SpanContext.SpanID().String(),
		"flows: event sent to the dead-letter sink": h.span(t, "seq steps[0]", 2).SpanContext.SpanID().String(),
	}
	dec := json.NewDecoder(&logs)
	for dec.More() {
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		msg, _ := rec["msg"].(string)
		span, ok := want[msg]
		if !ok {
			t.Errorf("unexpected record %v", rec)
			continue
		}
		delete(want, msg)
		if rec["trace_id"] != traceID.String() || rec["span_id"] != span {
			t.Errorf("%q: trace_id %v span_id %v, want %s %s", msg, rec["trace_id"], rec["span_id"], traceID, span)
		}
	}
	for msg := range want {
		t.Errorf("no record %q", msg)
	}

	rm := h.metrics(t)
	if got, _ := value(rm, "flows.deliveries", flowAttr("seq"), outcomeAttr(flows.OutcomeDeadLettered)); got != 1 {
		t.Errorf("dead-lettered: %d, want 1", got)
	}
	if got, _ := value(rm, "flows.delivery.duration", flowAttr("seq"), otelflows.RoleKey.String("dead-letter")); got != 1 {
		t.Errorf("dead-letter calls measured: %d, want 1", got)
	}
}

func TestFailedDeliveryIsCounted(t *testing.T) {
	h := newHarness(t)
	f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Fail(flows.Permanent(errBoom)))}}}).
		Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Handle(t.Context(), flowstest.NewEvent("1", "t", "/test", nil)); err == nil {
		t.Fatal("Handle succeeded, want the delivery error")
	}
	assertTree(t, h.ended(), `
send seq
  seq steps[0] #1 failed [error]
`)
	rm := h.metrics(t)
	if got, _ := value(rm, "flows.deliveries", flowAttr("seq"), outcomeAttr(flows.OutcomeFailed)); got != 1 {
		t.Errorf("failed: %d, want 1", got)
	}
	if got, _ := value(rm, "flows.delivery.duration", flowAttr("seq"), semconv.ErrorTypeKey.String("permanent")); got != 1 {
		t.Errorf("permanent failures measured: %d, want 1", got)
	}
}

func TestMetricsAfterAKnownRun(t *testing.T) {
	h := newHarness(t)
	// Every event fails once at step 1, then goes through.
	f, err := (&flows.Sequence{Name: "m", Steps: []flows.Step{
		{Subscriber: flowstest.NewRecorder(flowstest.Echo())},
		{Subscriber: flowstest.NewRecorder(flowstest.Fail(errBoom), flowstest.Echo()), Delivery: &flows.Delivery{Retry: 1}},
	}, Reply: flowstest.NewRecorder()}).Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, id := range []string{"1", "2", "3"} {
		handle(t, f, flowstest.NewEvent(id, "t", "/test", nil))
	}

	rm := h.metrics(t)
	for _, c := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{"flows.accepted", []attribute.KeyValue{flowAttr("m")}, 3},
		{"flows.deliveries", []attribute.KeyValue{flowAttr("m"), stepAttr("steps[0]"), outcomeAttr(flows.OutcomeDelivered)}, 3},
		{"flows.deliveries", []attribute.KeyValue{flowAttr("m"), stepAttr("steps[1]"), outcomeAttr(flows.OutcomeRetried)}, 3},
		{"flows.deliveries", []attribute.KeyValue{flowAttr("m"), stepAttr("steps[1]"), outcomeAttr(flows.OutcomeDelivered)}, 3},
		{"flows.deliveries", []attribute.KeyValue{flowAttr("m"), outcomeAttr(flows.OutcomeDeadLettered)}, 0},
		{"flows.delivery.duration", []attribute.KeyValue{flowAttr("m"), stepAttr("steps[1]"), otelflows.RoleKey.String("subscriber")}, 6},
		{"flows.delivery.duration", []attribute.KeyValue{flowAttr("m"), stepAttr("steps[1]"), otelflows.RoleKey.String("reply")}, 3},
		{"flows.event.duration", []attribute.KeyValue{flowAttr("m")}, 3},
		{"flows.in_flight", []attribute.KeyValue{flowAttr("m")}, 0},
	} {
		got, found := value(rm, c.name, c.attrs...)
		if got != c.want || (!found && c.want != 0) {
			t.Errorf("%s%v = %d (found %v), want %d", c.name, c.attrs, got, found, c.want)
		}
	}
	// The depth itself may lag by an instant: a channel frees the slot of
	// an event just after Handle learns that it is done.
	if _, found := value(rm, "flows.queue.depth", flowAttr("m"), stepAttr("steps[1]"), otelflows.SubscriptionKey.String("m-kn-sequence-1")); !found {
		t.Error("no queue depth for steps[1]")
	}
}

func TestGaugesShowHeldAndInFlightEvents(t *testing.T) {
	h := newHarness(t)
	step := flowstest.NewRecorder(flowstest.Block())
	f, err := (&flows.Sequence{Name: "g", Steps: []flows.Step{{Subscriber: step}}}).Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"1", "2", "3"} {
		if err := f.Send(t.Context(), flowstest.NewEvent(id, "t", "/test", nil)); err != nil {
			t.Fatal(err)
		}
	}
	step.MustWait(t, 1) // the first event is being delivered; the others wait

	rm := h.metrics(t)
	if got, _ := value(rm, "flows.queue.depth", flowAttr("g"), stepAttr("steps[0]")); got != 3 {
		t.Errorf("queue depth %d, want 3", got)
	}
	if got, _ := value(rm, "flows.in_flight", flowAttr("g"), stepAttr("steps[0]")); got != 1 {
		t.Errorf("in flight %d, want 1", got)
	}

	f.Close()
	rm = h.metrics(t)
	if _, found := value(rm, "flows.queue.depth", flowAttr("g")); found {
		t.Error("a stopped flow still reports its queue depth")
	}
	if got, _ := value(rm, "flows.deliveries", flowAttr("g"), outcomeAttr(flows.OutcomeStopped)); got != 1 {
		t.Errorf("stopped attempts %d, want 1", got)
	}
}

func TestPingTraceStartsAtTheTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		reply := flowstest.NewRecorder()
		f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Echo())}}, Reply: reply}).
			Start(t.Context(), flows.WithObserver(h.obs))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		src, err := (&flows.Ping{Name: "tick", Schedule: "* * * * * *", Timezone: "UTC", Sink: f}).Start(t.Context(), flows.WithObserver(h.obs))
		if err != nil {
			t.Fatal(err)
		}
		reply.MustWait(t, 1)
		if err := src.Shutdown(t.Context()); err != nil { // waits for the tick to end
			t.Fatal(err)
		}

		assertTree(t, h.ended(), `
ping tick delivered
  tick sink #1
    seq steps[0] #1 delivered
      seq steps[0] reply #1
`)
		assertOneTrace(t, h.ended())
		rm := h.metrics(t)
		if got, _ := value(rm, "flows.deliveries", flowAttr("tick"), stepAttr("sink"), outcomeAttr(flows.OutcomeDelivered)); got != 1 {
			t.Errorf("ping deliveries %d, want 1", got)
		}
		if got, _ := value(rm, "flows.accepted", flowAttr("seq")); got != 1 {
			t.Errorf("accepted %d, want 1", got)
		}
	})
}

// With nowhere to report, the observer is switched off: the flows skip it,
// and events keep the trace context they came with, or none.
func TestWithoutProvidersEventsAreLeftAlone(t *testing.T) {
	for name, obs := range map[string]*flows.Observer{
		"noop": otelflows.New(otelflows.WithTracerProvider(nooptrace.NewTracerProvider()), otelflows.WithMeterProvider(noopmetric.NewMeterProvider())),
		// No test of this process sets the global providers (see
		// TestGlobalProvidersSetAfterNew).
		"global-unset": otelflows.New(),
	} {
		t.Run(name, func(t *testing.T) {
			if obs.Enabled(t.Context()) {
				t.Error("Enabled, want the observer off")
			}
			steps := []*flowstest.Recorder{flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder(flowstest.Echo())}
			reply := flowstest.NewRecorder()
			f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: steps[0]}, {Subscriber: steps[1]}}, Reply: reply}).Start(t.Context(), flows.WithObserver(obs))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			const upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			traced := flowstest.NewEvent("2", "t", "/test", nil)
			traced.SetExtension("traceparent", upstream)
			handle(t, f, flowstest.NewEvent("1", "t", "/test", nil))
			handle(t, f, traced)
			for _, r := range []*flowstest.Recorder{steps[0], steps[1], reply} {
				for _, e := range r.Events() {
					want := map[string]string{"1": "", "2": upstream}[e.ID()]
					if got, _ := e.Extensions()["traceparent"].(string); got != want {
						t.Errorf("event %s has traceparent %q, want %q", e.ID(), got, want)
					}
					if ts, ok := e.Extensions()["tracestate"]; ok {
						t.Errorf("event %s has tracestate %v", e.ID(), ts)
					}
				}
			}
		})
	}
}

// Tracing without metrics: events carry their trace, but not the accept
// time that only the latency histogram reads.
func TestTraceStateOnlyForTheLatency(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	obs := otelflows.New(otelflows.WithTracerProvider(tp), otelflows.WithMeterProvider(noopmetric.NewMeterProvider()))
	step := flowstest.NewRecorder(flowstest.Echo())
	f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: step}}}).Start(t.Context(), flows.WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle(t, f, flowstest.NewEvent("1", "t", "/test", nil))
	e := step.Events()[0]
	if !otelflows.TraceContext(e).IsValid() {
		t.Error("the event carries no trace context")
	}
	if ts, ok := e.Extensions()["tracestate"]; ok {
		t.Errorf("the event carries tracestate %v", ts)
	}
}

func TestLogHandlerLeavesRecordsWithoutSpanAlone(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(otelflows.LogHandler(slog.NewTextHandler(&buf, nil))).With("k", "v")
	l.InfoContext(context.Background(), "plain")
	if bytes.Contains(buf.Bytes(), []byte("trace_id")) || !bytes.Contains(buf.Bytes(), []byte("k=v")) {
		t.Errorf("record %q", buf.String())
	}
}

// Accepting an event does not wait for its journey, even when observed.
func TestSendStaysAsynchronous(t *testing.T) {
	h := newHarness(t)
	step := flowstest.NewRecorder(flowstest.Block())
	f, err := (&flows.Sequence{Name: "a", Steps: []flows.Step{{Subscriber: step}}}).Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := f.Send(ctx, flowstest.NewEvent("1", "t", "/test", nil)); err != nil {
		t.Fatal(err)
	}
	step.MustWait(t, 1)
	f.Close()
	h.span(t, "send a", 0)
}
