package otelflows_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/otelflows"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// harness is one process's telemetry: spans in memory, metrics on demand.
type harness struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	obs    *flows.Observer
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(h.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		tp.Shutdown(context.Background())
		mp.Shutdown(context.Background())
	})
	h.obs = otelflows.New(otelflows.WithTracerProvider(tp), otelflows.WithMeterProvider(mp))
	return h
}

func (h *harness) ended() tracetest.SpanStubs { return h.spans.GetSpans() }

// span returns the one span named name, failing the test otherwise.
func (h *harness) span(t testing.TB, name string, attempt int) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range h.ended() {
		if s.Name == name && (attempt == 0 || intAttr(s, otelflows.AttemptKey) == attempt) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one span %q (attempt %d), found %d in:\n%s", name, attempt, len(found), tree(h.ended()))
	}
	return found[0]
}

func attr(s tracetest.SpanStub, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func strAttr(s tracetest.SpanStub, k attribute.Key) string {
	v, _ := attr(s, k)
	return v.AsString()
}

func intAttr(s tracetest.SpanStub, k attribute.Key) int {
	v, _ := attr(s, k)
	return int(v.AsInt64())
}

// tree renders spans as an indented tree, children in the order of their
// names and attempts, each line "name #attempt outcome [error]": what a
// test asserts about parents, names and the main attributes at once.
func tree(spans tracetest.SpanStubs) string {
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext.SpanID()] = true
	}
	children := map[trace.SpanID][]tracetest.SpanStub{}
	var roots []tracetest.SpanStub
	for _, s := range spans {
		if p := s.Parent.SpanID(); s.Parent.IsValid() && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	order := func(list []tracetest.SpanStub) {
		slices.SortStableFunc(list, func(a, b tracetest.SpanStub) int {
			if c := strings.Compare(a.Name, b.Name); c != 0 {
				return c
			}
			return intAttr(a, otelflows.AttemptKey) - intAttr(b, otelflows.AttemptKey)
		})
	}
	var b strings.Builder
	var walk func(s tracetest.SpanStub, depth int)
	walk = func(s tracetest.SpanStub, depth int) {
		b.WriteString(strings.Repeat("  ", depth))
		b.WriteString(s.Name)
		if n := intAttr(s, otelflows.AttemptKey); n > 0 {
			fmt.Fprintf(&b, " #%d", n)
		}
		if o := strAttr(s, otelflows.OutcomeKey); o != "" {
			b.WriteString(" " + o)
		}
		if s.Status.Code == codes.Error {
			b.WriteString(" [error]")
		}
		b.WriteString("\n")
		kids := children[s.SpanContext.SpanID()]
		order(kids)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	order(roots)
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

func assertTree(t testing.TB, spans tracetest.SpanStubs, want string) {
	t.Helper()
	want = strings.TrimLeft(want, "\n")
	if got := tree(spans); got != want {
		t.Errorf("span tree:\n%s\nwant:\n%s", got, want)
	}
}

func assertOneTrace(t testing.TB, spans tracetest.SpanStubs) trace.TraceID {
	t.Helper()
	if len(spans) == 0 {
		t.Fatal("no spans")
	}
	id := spans[0].SpanContext.TraceID()
	for _, s := range spans {
		if s.SpanContext.TraceID() != id {
			t.Errorf("span %q is in trace %s, want %s", s.Name, s.SpanContext.TraceID(), id)
		}
	}
	return id
}

// metrics collects the metrics once.
func (h *harness) metrics(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// value returns the sum (counters, gauges) or the count (histograms) of the
// data points of metric name whose attributes include attrs, and whether
// there was one.
func value(rm metricdata.ResourceMetrics, name string, attrs ...attribute.KeyValue) (int64, bool) {
	var total int64
	found := false
	match := func(set attribute.Set) bool {
		for _, a := range attrs {
			if v, ok := set.Value(a.Key); !ok || v != a.Value {
				return false
			}
		}
		return true
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						total, found = total+p.Value, true
					}
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						total, found = total+p.Value, true
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						total, found = total+int64(p.Count), true
					}
				}
			}
		}
	}
	return total, found
}
