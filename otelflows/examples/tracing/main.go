// Command tracing runs the seed's Sequence demo with OpenTelemetry: a ping
// source sends {"message": "hello, world!"} to a Sequence of three appender
// steps whose reply is an event-display. The second step fails the first
// attempt of each event, so it is retried. The spans go to an in-memory
// exporter, and the command prints each event's trace as an indented tree
// (ping → sink → step 0 → step 1 → step 2 → event-display, with durations,
// attempts and outcomes), then the flow's metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/otelflows"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func main() {
	schedule := flag.String("schedule", "* * * * * *", "cron schedule of the ping source (with a seconds field: every second)")
	events := flag.Int("events", 1, "exit after this many events were displayed")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *schedule, *events); err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

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

// flaky fails the first attempt of each event, then behaves as h.
func flaky(h flows.Handler) flows.Handler {
	var mu sync.Mutex
	seen := map[string]bool{}
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		mu.Lock()
		first := !seen[e.ID()]
		seen[e.ID()] = true
		mu.Unlock()
		if first {
			return nil, errors.New("flaky: first attempt fails")
		}
		return h.Handle(ctx, e)
	})
}

// lockedWriter serializes the writes of the logger and the display.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func run(ctx context.Context, w io.Writer, schedule string, events int) error {
	out := &lockedWriter{w: w}
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	obs := otelflows.New(otelflows.WithTracerProvider(tp), otelflows.WithMeterProvider(mp))
	logger := slog.New(otelflows.LogHandler(slog.NewTextHandler(out, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	displayed := 0
	display := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "☁️  cloudevents.Event\n%s", e.String())
		if displayed++; displayed == events {
			cancel()
		}
		return nil, nil
	})

	opts := []flows.Option{flows.WithObserver(obs), flows.WithLogger(logger)}
	seq, err := (&flows.Sequence{
		Name: "sequence",
		Steps: []flows.Step{
			{Subscriber: appender(" - Handled by 0")},
			{Subscriber: flaky(appender(" - Handled by 1")), Delivery: &flows.Delivery{Retry: 2, BackoffDelay: 50 * time.Millisecond}},
			{Subscriber: appender(" - Handled by 2")},
		},
		Reply: display,
	}).Start(ctx, opts...)
	if err != nil {
		return err
	}
	ping, err := (&flows.Ping{
		Name:        "ping-source",
		Schedule:    schedule,
		ContentType: "application/json",
		Data:        `{"message": "hello, world!"}`,
		Sink:        seq,
	}).Start(ctx, opts...)
	if err != nil {
		seq.Close()
		return err
	}

	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	// The ping's spans end when its sends do: stop it first.
	if err := errors.Join(ping.Shutdown(sctx), seq.Shutdown(sctx)); err != nil {
		return err
	}
	fmt.Fprintln(out)
	printTraces(out, spans.GetSpans())
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		return err
	}
	fmt.Fprintln(out)
	printMetrics(out, rm)
	return nil
}

// printTraces prints each trace as a tree of spans, children in the order
// they started.
func printTraces(w io.Writer, spans tracetest.SpanStubs) {
	children := map[string][]tracetest.SpanStub{}
	var roots []tracetest.SpanStub
	for _, s := range spans {
		if s.Parent.IsValid() {
			k := s.Parent.SpanID().String()
			children[k] = append(children[k], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) }
	slices.SortFunc(roots, byStart)
	for _, root := range roots {
		fmt.Fprintf(w, "trace %s\n", root.SpanContext.TraceID())
		type line struct{ tree, info string }
		var lines []line
		var walk func(s tracetest.SpanStub, prefix, branch string)
		walk = func(s tracetest.SpanStub, prefix, branch string) {
			lines = append(lines, line{prefix + branch + label(s), info(s)})
			kids := children[s.SpanContext.SpanID().String()]
			slices.SortFunc(kids, byStart)
			switch branch {
			case "├─ ":
				prefix += "│  "
			case "└─ ":
				prefix += "   "
			}
			for i, k := range kids {
				b := "├─ "
				if i == len(kids)-1 {
					b = "└─ "
				}
				walk(k, prefix, b)
			}
		}
		walk(root, "", "")
		width := 0
		for _, l := range lines {
			width = max(width, len([]rune(l.tree)))
		}
		for _, l := range lines {
			fmt.Fprintf(w, "%s%s  %s\n", l.tree, strings.Repeat(" ", width-len([]rune(l.tree))), l.info)
		}
	}
}

func label(s tracetest.SpanStub) string {
	name := s.Name
	if n, ok := attr(s, otelflows.AttemptKey); ok {
		name += fmt.Sprintf(" #%d", n.AsInt64())
	}
	return name
}

// info is the span's duration and what happened.
func info(s tracetest.SpanStub) string {
	parts := []string{fmt.Sprintf("%9s", s.EndTime.Sub(s.StartTime).Round(time.Microsecond))}
	if o, ok := attr(s, otelflows.OutcomeKey); ok {
		parts = append(parts, o.AsString())
	}
	if role, ok := attr(s, otelflows.RoleKey); ok {
		d, _ := attr(s, otelflows.DestinationKey)
		parts = append(parts, string(role.AsString())+" → "+d.AsString())
	}
	if s.Status.Code == codes.Error {
		parts = append(parts, "error: "+s.Status.Description)
	}
	if wait, ok := attr(s, otelflows.RetryWaitKey); ok {
		parts = append(parts, fmt.Sprintf("retry in %s", time.Duration(wait.AsFloat64()*float64(time.Second))))
	}
	return strings.Join(parts, "  ")
}

func attr(s tracetest.SpanStub, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// printMetrics prints the counters and the counts of the histograms.
func printMetrics(w io.Writer, rm metricdata.ResourceMetrics) {
	var lines []string
	point := func(name string, attrs attribute.Set, v string) {
		var kv []string
		for _, a := range attrs.ToSlice() {
			kv = append(kv, strings.TrimPrefix(string(a.Key), "flows.")+"="+a.Value.Emit())
		}
		lines = append(lines, fmt.Sprintf("%s{%s} %s", name, strings.Join(kv, ","), v))
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					point(m.Name, p.Attributes, fmt.Sprint(p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					point(m.Name, p.Attributes, fmt.Sprintf("count=%d sum=%s", p.Count, time.Duration(p.Sum*float64(time.Second)).Round(time.Microsecond)))
				}
			}
		}
	}
	slices.Sort(lines)
	fmt.Fprintln(w, "metrics")
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
}
