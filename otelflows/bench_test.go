package otelflows_test

import (
	"context"
	"encoding/json"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"github.com/eventflows/flows/otelflows"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
)

// The cost of observing the root benchmark's 3-step Sequence, as ratios
// against the unobserved flow in the same run. -count repeats each
// sub-benchmark in a row; on a busy machine, alternate them instead:
//
//	go test -c -o otelflows.test ./otelflows
//	for i in $(seq 10); do ./otelflows.test -test.run '^$' -test.bench . -test.benchmem; done | benchstat -col /observer -

type benchMsg struct {
	Message string `json:"message"`
}

func benchAppender(suffix string) flows.Handler {
	return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		var m benchMsg
		if err := json.Unmarshal(e.Data(), &m); err != nil {
			return nil, err
		}
		m.Message += suffix
		if err := e.SetData(event.ApplicationJSON, m); err != nil {
			return nil, err
		}
		return &e, nil
	})
}

type benchCounter struct {
	n, want atomic.Int64
	done    chan struct{}
}

func (c *benchCounter) Handle(context.Context, event.Event) (*event.Event, error) {
	if c.n.Add(1) == c.want.Load() {
		close(c.done)
	}
	return nil, nil
}

func benchSequence(b *testing.B, opts ...flows.Option) {
	b.ReportAllocs()
	c := &benchCounter{done: make(chan struct{})}
	c.want.Store(int64(b.N))
	f, err := (&flows.Sequence{Steps: []flows.Step{
		{Subscriber: benchAppender(" - Handled by 0")},
		{Subscriber: benchAppender(" - Handled by 1")},
		{Subscriber: benchAppender(" - Handled by 2")},
	}, Reply: c}).Start(context.Background(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	e := flowstest.NewEvent("1", "t", "/bench", `{"message": "hello, world!"}`)
	runtime.GC() // not the garbage of the benchmark before
	b.ResetTimer()
	for range b.N {
		if err := f.Send(context.Background(), e); err != nil {
			b.Fatal(err)
		}
	}
	<-c.done
	b.StopTimer()
	f.Shutdown(context.Background())
}

// BenchmarkSequence3Steps observes the same flow four ways: not at all;
// with New and the global providers, never set in this process (the test
// that sets them runs in a child process); with the no-op providers; with
// the SDK. The first two of otelflows must cost nothing, the SDK is the
// price of telemetry.
func BenchmarkSequence3Steps(b *testing.B) {
	b.Run("observer=none", func(b *testing.B) { benchSequence(b) })
	b.Run("observer=global-unset", func(b *testing.B) { benchSequence(b, flows.WithObserver(otelflows.New())) })
	b.Run("observer=noop", func(b *testing.B) {
		obs := otelflows.New(otelflows.WithTracerProvider(nooptrace.NewTracerProvider()), otelflows.WithMeterProvider(noopmetric.NewMeterProvider()))
		benchSequence(b, flows.WithObserver(obs))
	})
	b.Run("observer=sdk", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		defer tp.Shutdown(context.Background())
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer mp.Shutdown(context.Background())
		benchSequence(b, flows.WithObserver(otelflows.New(otelflows.WithTracerProvider(tp), otelflows.WithMeterProvider(mp))))
	})
}
