package otelflows

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The CloudEvents distributed-tracing extension is W3C Trace Context in the
// extensions traceparent and tracestate.
var eventPropagator propagation.TextMapPropagator = propagation.TraceContext{}

const (
	extTraceParent = "traceparent"
	extTraceState  = "tracestate"
)

// eventCarrier reads and writes the trace context in an event's extensions.
type eventCarrier struct{ e *event.Event }

func (c eventCarrier) Get(key string) string {
	v, ok := c.e.Extensions()[key]
	if !ok {
		return ""
	}
	s, err := types.Format(v)
	if err != nil {
		return ""
	}
	return s
}

func (c eventCarrier) Set(key, value string) { c.e.SetExtension(key, value) }

func (c eventCarrier) Keys() []string {
	keys := make([]string, 0, len(c.e.Extensions()))
	for k := range c.e.Extensions() {
		keys = append(keys, k)
	}
	return keys
}

// inject writes ctx's trace context to e's extensions, replacing any
// older one.
func inject(ctx context.Context, e *event.Event) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || e == nil || e.Context == nil {
		return
	}
	if sc.TraceState().Len() == 0 {
		if _, ok := e.Extensions()[extTraceState]; ok {
			e.SetExtension(extTraceState, nil)
		}
	}
	eventPropagator.Inject(ctx, eventCarrier{e})
}

// TraceContext returns the span context that an event carries in its
// distributed-tracing extension, as a remote span context, or an invalid
// one. A handler can use it to link its own spans to the event's trace.
func TraceContext(e event.Event) trace.SpanContext {
	if e.Context == nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(eventPropagator.Extract(context.Background(), eventCarrier{&e}))
}
