package otelflows_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"github.com/eventflows/flows/otelflows"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

const globalChild = "OTELFLOWS_TEST_GLOBAL_CHILD"

// An observer made before the application sets the global providers starts
// reporting to them once they are set, each on its own.
func TestGlobalProvidersSetAfterNew(t *testing.T) {
	if os.Getenv(globalChild) == "" {
		// The global providers can be set once per process, and the other
		// tests and benchmarks need them unset: run in a child process.
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestGlobalProvidersSetAfterNew$", "-test.v")
		cmd.Env = append(os.Environ(), globalChild+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestGlobalProvidersSetAfterNew")) {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}

	obs := otelflows.New()
	step := flowstest.NewRecorder(flowstest.Echo())
	f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: step}}, Reply: flowstest.NewRecorder()}).
		Start(t.Context(), flows.WithObserver(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle(t, f, flowstest.NewEvent("1", "t", "/test", nil))

	h := &harness{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	defer mp.Shutdown(context.Background())
	otel.SetMeterProvider(mp)
	handle(t, f, flowstest.NewEvent("2", "t", "/test", nil))

	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(h.spans))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)
	handle(t, f, flowstest.NewEvent("3", "t", "/test", nil))

	// Only event 3 is traced, and only it can carry its accept time.
	for i, e := range step.Events() {
		if got, want := otelflows.TraceContext(e).IsValid(), i == 2; got != want {
			t.Errorf("event %s carries a trace context: %v, want %v", e.ID(), got, want)
		}
	}
	assertTree(t, h.ended(), `
send seq
  seq steps[0] #1 delivered
    seq steps[0] reply #1
`)
	rm := h.metrics(t)
	for name, want := range map[string]int64{"flows.accepted": 2, "flows.deliveries": 2, "flows.event.duration": 1} {
		if got, _ := value(rm, name, flowAttr("seq")); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}
