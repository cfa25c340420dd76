// Package otelflows observes flows with OpenTelemetry: one trace per event
// across every hop, metrics per flow and step, and trace ids on the flows'
// log records.
//
// Install it on flows, sources and ingresses with [flows.WithObserver]:
//
//	obs := otelflows.New(otelflows.WithTracerProvider(tp), otelflows.WithMeterProvider(mp))
//	f, err := seq.Start(ctx, flows.WithObserver(obs), flows.WithLogger(slog.New(otelflows.LogHandler(h))))
//	ingress := flows.NewIngress(f) // uses the flow's observer
//
// Until a tracer or meter provider is configured, it is off and costs
// nothing; see [New].
//
// # Traces
//
// An event's trace starts where the event enters the first flow: a [flows.Ping]
// tick ("ping <name>"), an [flows.Ingress] request ("ingress", followed by
// the route of its http.ServeMux if any), or a
// Send or Handle with no span in its context ("send <flow>"). A context that
// already holds a span (a caller's, or the hop of another flow) continues its
// trace instead. Then each attempt of each subscription is a span
// "<flow> <step>" (such as "orders steps[1]" or "orders branches[0].filter"),
// a child of the span that published the event to its channel, so that a
// Sequence reads as a chain and retries are sibling spans; the reply and
// dead-letter hops and a Ping's sink are child spans "<flow> <step> reply",
// "... dead-letter" and "<ping> sink", one per attempt.
//
// The trace context travels with the event in the CloudEvents
// distributed-tracing extension (traceparent and tracestate): each handler
// receives the event with the context of its own delivery. Over HTTP it is
// also sent in W3C headers (see [WithPropagator]); an ingress or a
// [flows.NewHTTPHandler] serving an observed flow picks it up, so the trace
// continues across processes, and across durable channels too.
//
// Spans carry the flow, step, subscription, destination, attempt and outcome
// as "flows.*" attributes, the event's id, type and source as
// "cloudevents.*" attributes, and an error status with the error for failed
// attempts.
//
// # Metrics
//
//   - flows.accepted (counter, {event}): events accepted into a flow.
//   - flows.deliveries (counter, {attempt}): attempts of subscriptions by
//     flows.outcome: delivered, filtered, retried, dead-lettered, failed,
//     stopped (and the same outcomes for a Ping's ticks, step "sink").
//   - flows.delivery.duration (histogram, s): duration of each handler call,
//     by flows.role (subscriber, reply, dead-letter, sink) and error.type.
//   - flows.event.duration (histogram, s): end-to-end latency, from the
//     moment the flow accepted an event to the moment the event left the flow
//     on a path (its last reply delivered, filtered out, dead-lettered or
//     failed).
//   - flows.in_flight (up-down counter, {attempt}): attempts in progress.
//   - flows.queue.depth (gauge, {event}): events held by each subscription
//     of an in-memory channel (see [flows.Flow.Queues]).
//
// All carry flows.flow, and flows.step where it applies. The end-to-end
// latency reads the accept time from the trace context's tracestate (key
// "flows"), so it also measures flows whose hops cross HTTP or a durable
// channel. The observer writes that member only while the histogram is
// enabled, and only into a real trace context: without tracing, the
// histogram stays empty.
//
// # Logs
//
// The flows log through the caller's *slog.Logger ([flows.WithLogger]) with
// the context of the delivery; [LogHandler] adds trace_id and span_id to
// each record whose context holds a span.
package otelflows

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/eventflows/flows/otelflows"

// Attribute keys of spans and metrics.
const (
	FlowKey         = attribute.Key("flows.flow")
	StepKey         = attribute.Key("flows.step")
	SubscriptionKey = attribute.Key("flows.subscription")
	DestinationKey  = attribute.Key("flows.destination")
	AttemptKey      = attribute.Key("flows.attempt")
	AttemptsKey     = attribute.Key("flows.attempts") // of a Ping's tick, in all
	MaxAttemptsKey  = attribute.Key("flows.max_attempts")
	OutcomeKey      = attribute.Key("flows.outcome")
	RoleKey         = attribute.Key("flows.role")
	RetryWaitKey    = attribute.Key("flows.retry.wait") // seconds
)

// TraceStateKey is the tracestate member that carries the time (Unix
// microseconds) at which the current flow accepted the event.
const TraceStateKey = "flows"

// An Option configures [New].
type Option func(*config)

type config struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	prop propagation.TextMapPropagator
}

// WithTracerProvider sets where spans go. The default is the global
// provider (otel.GetTracerProvider).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets where metrics go. The default is the global
// provider (otel.GetMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithPropagator sets how the trace context is written to and read from HTTP
// headers. The default is W3C Trace Context (traceparent, tracestate), what
// Knative uses. The CloudEvents extension always uses W3C Trace Context, as
// its specification says.
func WithPropagator(p propagation.TextMapPropagator) Option { return func(c *config) { c.prop = p } }

// New returns an observer that traces and measures what flows do, to
// install with [flows.WithObserver] and [flows.IngressObserver]. One
// observer may serve any number of flows, sources and ingresses.
//
// It costs (next to) nothing while it has nowhere to report: with the
// no-op providers of go.opentelemetry.io/otel/trace/noop and
// go.opentelemetry.io/otel/metric/noop, or with the global providers while
// the application has not set them, the flows skip its hooks (see
// [flows.Observer.Enabled]): no span, no measure, and no trace context
// written to events or requests; an event's own traceparent and tracestate
// pass through untouched. With the global providers, tracing and metrics
// start with the first event that the flows accept or deliver after the
// application calls otel.SetTracerProvider or otel.SetMeterProvider, even
// if that is after New (that event's earlier hops are not traced). Other
// providers are taken as configured; one that is a no-op of another kind
// works, at the cost of the full instrumentation.
//
// Instruments that cannot be created are reported to otel.Handle and left
// out.
func New(opts ...Option) *flows.Observer {
	c := config{prop: propagation.TraceContext{}}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	o := &observer{
		tracer: c.tp.Tracer(ScopeName),
		prop:   c.prop,
		flows:  make(map[*flows.Flow]struct{}),
	}
	_, noTraces := c.tp.(nooptrace.TracerProvider)
	o.traces = newSwitch(c.tp, noTraces, otel.GetTracerProvider)
	_, noMetrics := c.mp.(noopmetric.MeterProvider)
	o.metrics = newSwitch(c.mp, noMetrics, otel.GetMeterProvider)
	o.instruments(c.mp.Meter(ScopeName))
	return &flows.Observer{
		Enabled: o.enabled,
		Accept:  o.accept,
		Deliver: o.deliver,
		Attempt: o.attempt,
		Publish: o.publish,
		Request: o.request,
		Ingress: o.ingress,
		Tick:    o.tick,
		Start:   o.start,
	}
}

type observer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	traces  onSwitch[trace.TracerProvider]
	metrics onSwitch[metric.MeterProvider]

	accepted  metric.Int64Counter
	outcomes  metric.Int64Counter
	callTime  metric.Float64Histogram
	eventTime metric.Float64Histogram
	inFlight  metric.Int64UpDownCounter

	mu    sync.Mutex
	flows map[*flows.Flow]struct{} // running flows, for the queue depth
}

// instruments creates the instruments; one that cannot be created is
// replaced by a no-op one, so that none is nil.
func (o *observer) instruments(m metric.Meter) {
	var err error
	note := func(e error) { err = errors.Join(err, e) }
	defer func() {
		var none noopmetric.Meter
		if o.accepted == nil {
			o.accepted, _ = none.Int64Counter("")
		}
		if o.outcomes == nil {
			o.outcomes, _ = none.Int64Counter("")
		}
		if o.callTime == nil {
			o.callTime, _ = none.Float64Histogram("")
		}
		if o.eventTime == nil {
			o.eventTime, _ = none.Float64Histogram("")
		}
		if o.inFlight == nil {
			o.inFlight, _ = none.Int64UpDownCounter("")
		}
	}()
	var e error
	o.accepted, e = m.Int64Counter("flows.accepted", metric.WithUnit("{event}"),
		metric.WithDescription("Events accepted into a flow."))
	note(e)
	o.outcomes, e = m.Int64Counter("flows.deliveries", metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts of subscriptions, by outcome: delivered, filtered, retried, dead-lettered, failed, stopped."))
	note(e)
	o.callTime, e = m.Float64Histogram("flows.delivery.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of each call of a subscriber, reply, dead-letter sink or sink."))
	note(e)
	o.eventTime, e = m.Float64Histogram("flows.event.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a flow accepting an event to the event leaving the flow."))
	note(e)
	o.inFlight, e = m.Int64UpDownCounter("flows.in_flight", metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts of subscriptions in progress."))
	note(e)
	depth, e := m.Int64ObservableGauge("flows.queue.depth", metric.WithUnit("{event}"),
		metric.WithDescription("Events held by each subscription of an in-memory channel: queued, being delivered or waiting for a retry."))
	note(e)
	if e == nil {
		_, e = m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
			o.mu.Lock()
			defer o.mu.Unlock()
			for f := range o.flows {
				for _, q := range f.Queues() {
					obs.ObserveInt64(depth, int64(q.Len), metric.WithAttributes(
						FlowKey.String(f.Name()), StepKey.String(q.Step), SubscriptionKey.String(q.Subscription)))
				}
			}
			return nil
		}, depth)
		note(e)
	}
	if err != nil {
		otel.Handle(err)
	}
}

// onSwitch tells whether a provider has somewhere to report: always for a
// provider given or set before New, never for a no-op one, and for the
// global provider while unset (the API's delegate), once the application
// has set one, which the delegate then forwards to. While the global is
// unset, asking costs an atomic load and a comparison.
type onSwitch[P comparable] struct {
	on       bool
	unset    P // the global delegate given to New, if any
	watching bool
	set      atomic.Bool
	global   func() P
}

// globalPkg is where the API's global delegates are.
const globalPkg = "go.opentelemetry.io/otel/internal/global"

func newSwitch[P comparable](p P, noop bool, global func() P) onSwitch[P] {
	t := reflect.TypeOf(p)
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case noop:
		return onSwitch[P]{}
	case t != nil && t.PkgPath() == globalPkg && global() == p:
		return onSwitch[P]{unset: p, watching: true, global: global}
	}
	return onSwitch[P]{on: true}
}

func (s *onSwitch[P]) isOn() bool {
	if s.on || s.set.Load() {
		return true
	}
	if s.watching && s.global() != s.unset {
		s.set.Store(true)
		return true
	}
	return false
}

// enabled is the observer's Enabled: it is off while no provider is.
func (o *observer) enabled(context.Context) bool { return o.traces.isOn() || o.metrics.isOn() }

func (o *observer) start(f *flows.Flow) func() {
	o.mu.Lock()
	o.flows[f] = struct{}{}
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		delete(o.flows, f)
		o.mu.Unlock()
	}
}

// accept continues the trace of the caller's span, or of the event's HTTP
// request, or of the event itself, and stamps the accept time.
func (o *observer) accept(ctx context.Context, a *flows.AcceptInfo) (context.Context, func(error)) {
	if o.accepted.Enabled(ctx) {
		o.accepted.Add(ctx, 1, metric.WithAttributes(FlowKey.String(a.Flow)))
	}
	if !o.traces.isOn() {
		return ctx, nil
	}
	var span trace.Span
	if !trace.SpanContextFromContext(ctx).IsValid() {
		pctx := ctx
		if a.Header != nil {
			pctx = o.prop.Extract(ctx, propagation.HeaderCarrier(a.Header))
		}
		if !trace.SpanContextFromContext(pctx).IsValid() {
			pctx = eventPropagator.Extract(ctx, eventCarrier{a.Event})
		}
		ctx, span = o.tracer.Start(pctx, "send "+a.Flow, trace.WithSpanKind(trace.SpanKindProducer))
		if span.IsRecording() {
			span.SetAttributes(append(eventAttrs(a.Event), FlowKey.String(a.Flow))...)
		}
	}
	if o.eventTime.Enabled(ctx) {
		ctx = stamp(ctx, time.Now())
	}
	inject(ctx, a.Event)
	if span == nil {
		return ctx, nil
	}
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// deliver starts the span of one attempt of a subscription, a child of the
// span that published the event.
func (o *observer) deliver(ctx context.Context, d *flows.DeliveryInfo) (context.Context, func()) {
	var span trace.Span
	recording := false
	if o.traces.isOn() {
		pctx := eventPropagator.Extract(ctx, eventCarrier{d.Event})
		ctx, span = o.tracer.Start(pctx, d.Flow+" "+d.Step, trace.WithSpanKind(trace.SpanKindConsumer))
		if recording = span.IsRecording(); recording {
			span.SetAttributes(append(eventAttrs(d.Event),
				FlowKey.String(d.Flow), StepKey.String(d.Step), SubscriptionKey.String(d.Subscription),
				DestinationKey.String(d.Destination), AttemptKey.Int(d.Attempt), MaxAttemptsKey.Int(d.MaxAttempts))...)
		}
		if !span.SpanContext().IsValid() && trace.SpanContextFromContext(pctx).IsValid() {
			// A tracer that makes no spans: keep the event's trace id for the
			// logs and the hops.
			ctx = trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(pctx))
		}
	}
	var step metric.MeasurementOption
	if o.inFlight.Enabled(ctx) {
		step = metric.WithAttributeSet(attribute.NewSet(FlowKey.String(d.Flow), StepKey.String(d.Step)))
		o.inFlight.Add(ctx, 1, step)
	}
	return ctx, func() {
		if recording {
			span.SetAttributes(OutcomeKey.String(string(d.Outcome)))
			switch d.Outcome {
			case flows.OutcomeDelivered, flows.OutcomeFiltered:
			case flows.OutcomeRetried:
				span.SetAttributes(RetryWaitKey.Float64(d.Wait.Seconds()))
				fallthrough
			default:
				if d.Err != nil {
					span.RecordError(d.Err)
					span.SetStatus(codes.Error, d.Err.Error())
				} else {
					span.SetStatus(codes.Error, string(d.Outcome))
				}
			}
		}
		if step != nil {
			o.inFlight.Add(ctx, -1, step)
		}
		if o.outcomes.Enabled(ctx) {
			o.outcomes.Add(ctx, 1, metric.WithAttributes(FlowKey.String(d.Flow), StepKey.String(d.Step), OutcomeKey.String(string(d.Outcome))))
		}
		if left := d.Outcome != flows.OutcomeRetried && d.Outcome != flows.OutcomeStopped && !d.Forwarded; left && o.eventTime.Enabled(ctx) {
			if t, ok := stamped(ctx); ok {
				o.eventTime.Record(ctx, time.Since(t).Seconds(), metric.WithAttributes(FlowKey.String(d.Flow)))
			}
		}
		if span != nil {
			span.End()
		}
	}
}

// attempt measures each handler call and traces the hops after a delivery:
// the subscriber's call is the delivery's own span.
func (o *observer) attempt(ctx context.Context, a *flows.AttemptInfo) (context.Context, func()) {
	var span trace.Span
	tracing := o.traces.isOn()
	if tracing && a.Role != flows.RoleSubscriber {
		name := a.Flow + " " + a.Step + " " + string(a.Role)
		if a.Role == flows.RoleSink {
			name = a.Flow + " sink"
		}
		ctx, span = o.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer))
		if span.IsRecording() {
			span.SetAttributes(FlowKey.String(a.Flow), StepKey.String(a.Step), RoleKey.String(string(a.Role)),
				DestinationKey.String(a.Destination), AttemptKey.Int(a.Attempt), MaxAttemptsKey.Int(a.MaxAttempts))
		}
	}
	if tracing {
		inject(ctx, a.Event)
	}
	timed := o.callTime.Enabled(ctx)
	if !timed && span == nil {
		return ctx, nil
	}
	var start time.Time
	if timed {
		start = time.Now()
	}
	return ctx, func() {
		if timed {
			attrs := []attribute.KeyValue{FlowKey.String(a.Flow), StepKey.String(a.Step), RoleKey.String(string(a.Role))}
			if a.Err != nil {
				attrs = append(attrs, semconv.ErrorTypeKey.String(errorType(a.Err)))
			}
			o.callTime.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs...))
		}
		if span == nil {
			return
		}
		if a.Err != nil {
			span.RecordError(a.Err)
			span.SetStatus(codes.Error, a.Err.Error())
		}
		span.End()
	}
}

// publish hands the delivery's trace context to the next channel.
func (o *observer) publish(ctx context.Context, _ string, e *event.Event) {
	if o.traces.isOn() {
		inject(ctx, e)
	}
}

// request sends the trace context over HTTP, in the headers and in the event.
func (o *observer) request(ctx context.Context, e *event.Event, h http.Header) {
	if !o.traces.isOn() {
		return
	}
	o.prop.Inject(ctx, propagation.HeaderCarrier(h))
	inject(ctx, e)
}

func (o *observer) ingress(ctx context.Context, r *http.Request, e *event.Event) (context.Context, func(int)) {
	if !o.traces.isOn() {
		return ctx, nil
	}
	pctx := o.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	if !trace.SpanContextFromContext(pctx).IsValid() {
		pctx = eventPropagator.Extract(ctx, eventCarrier{e})
	}
	name := "ingress"
	if r.Pattern != "" {
		// The route, as HTTP servers name their spans; a path could be unbounded.
		name += " " + r.Pattern
	}
	ctx, span := o.tracer.Start(pctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(append(eventAttrs(e), semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path))...)
	}
	return ctx, func(status int) {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
}

func (o *observer) tick(ctx context.Context, t *flows.TickInfo) (context.Context, func()) {
	var span trace.Span
	if o.traces.isOn() {
		ctx, span = o.tracer.Start(ctx, "ping "+t.Source, trace.WithSpanKind(trace.SpanKindProducer), trace.WithNewRoot())
		if span.IsRecording() {
			span.SetAttributes(append(eventAttrs(t.Event), FlowKey.String(t.Source))...)
		}
	}
	return ctx, func() {
		if o.outcomes.Enabled(ctx) {
			o.outcomes.Add(ctx, 1, metric.WithAttributes(FlowKey.String(t.Source), StepKey.String("sink"), OutcomeKey.String(string(t.Outcome))))
		}
		if span == nil {
			return
		}
		span.SetAttributes(OutcomeKey.String(string(t.Outcome)), AttemptsKey.Int(t.Attempts))
		if t.Err != nil {
			span.RecordError(t.Err)
			span.SetStatus(codes.Error, t.Err.Error())
		}
		span.End()
	}
}

func eventAttrs(e *event.Event) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.CloudEventsEventID(e.ID()),
		semconv.CloudEventsEventType(e.Type()),
		semconv.CloudEventsEventSource(e.Source()),
	}
}

// errorType is the error.type of a failed call: the HTTP status, or a
// category of Go error.
func errorType(err error) string {
	var he *flows.HTTPError
	switch {
	case errors.As(err, &he):
		return strconv.Itoa(he.StatusCode)
	case errors.Is(err, flows.ErrTimeout):
		return "timeout"
	case errors.As(err, new(*flows.PanicError)):
		return "panic"
	case flows.IsPermanent(err):
		return "permanent"
	}
	return "_OTHER"
}

// stamp records in ctx's trace state that the current flow accepted the
// event at t. Without a valid span context there is nowhere to record it.
func stamp(ctx context.Context, t time.Time) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ctx
	}
	ts, err := sc.TraceState().Insert(TraceStateKey, strconv.FormatInt(t.UnixMicro(), 10))
	if err != nil {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, sc.WithTraceState(ts))
}

// stamped returns the accept time that stamp recorded in ctx's trace state.
func stamped(ctx context.Context) (time.Time, bool) {
	v := trace.SpanContextFromContext(ctx).TraceState().Get(TraceStateKey)
	if v == "" {
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}
