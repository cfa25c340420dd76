package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// The broker: Triggers of which one matches the demo's event, against a
// loop written by hand that evaluates the same filters and calls the one
// subscriber; the cost of each filter kind; and brokers of growing size.

// triggerTypes are the types the Triggers of the broker benchmarks filter
// on: the last is the demo's, the others differ from it.
func triggerTypes(n int) []string {
	types := make([]string, n)
	for i := range n - 1 {
		types[i] = fmt.Sprintf("dev.knative.sources.ping.%d", i)
	}
	types[n-1] = "dev.knative.sources.ping"
	return types
}

// subscribe is the work of the matching Trigger's subscriber: the
// appender's, then counted into out. It replies with no event.
func subscribe(out *sink) func(*event.Event) {
	return func(e *event.Event) {
		appendStep(e, suffix(0))
		out.arrive()
	}
}

// BenchmarkBroker sends the demo's event to brokers whose Triggers each
// filter on one type (Knative's filter.attributes), of which one matches.
// ns/trigger is the cost per event divided by the number of Triggers.
func BenchmarkBroker(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("triggers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			out := newSink()
			work := subscribe(out)
			sub := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
				work(&e)
				return nil, nil
			})
			br := &flows.Broker{Name: "bench"}
			for i, typ := range triggerTypes(n) {
				br.Triggers = append(br.Triggers, flows.Trigger{
					Name: fmt.Sprint("t", i), Filter: flows.Attributes(map[string]string{"type": typ}), Subscriber: sub,
				})
			}
			f, err := br.Start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			benchFlow(b, f, out, 1)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/trigger")
		})
	}
}

// BenchmarkBrokerReply is BenchmarkBroker/triggers=10 where the matching
// Trigger's subscriber replies, with the event retyped, and the reply
// enters the broker again to reach an eleventh Trigger: the cost of a
// reply's re-entry (the TTL carried over, the arrival time, the filters
// again) on top of a second delivery.
func BenchmarkBrokerReply(b *testing.B) {
	b.ReportAllocs()
	out := newSink()
	work := subscribe(out)
	replier := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		appendStep(&e, suffix(0))
		e.SetType("dev.knative.sources.ping.reply")
		return &e, nil
	})
	sub := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		work(&e)
		return nil, nil
	})
	br := &flows.Broker{Name: "bench"}
	for i, typ := range triggerTypes(10) {
		tr := flows.Trigger{Name: fmt.Sprint("t", i), Filter: flows.Attributes(map[string]string{"type": typ}), Subscriber: sub}
		if i == 9 {
			tr.Subscriber = replier
		}
		br.Triggers = append(br.Triggers, tr)
	}
	br.Triggers = append(br.Triggers, flows.Trigger{Name: "reply",
		Filter: flows.Attributes(map[string]string{"type": "dev.knative.sources.ping.reply"}), Subscriber: sub})
	f, err := br.Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	benchFlow(b, f, out, 1)
}

// BenchmarkLimitBrokerLoop is BenchmarkBroker/triggers=10 by hand: for each
// event, the ten filters compared in turn, and the one subscriber called.
func BenchmarkLimitBrokerLoop(b *testing.B) {
	b.Run("triggers=10", func(b *testing.B) {
		b.ReportAllocs()
		out := newSink()
		work := subscribe(out)
		types := triggerTypes(10)
		once := func() {
			e := newEvent()
			for _, typ := range types {
				if e.Type() == typ {
					work(&e)
				}
			}
		}
		cpu := cpuTime()
		out.expect(b.N)
		for b.Loop() {
			once()
		}
		out.wait()
		reportThroughput(b, b.N, cpu)
		measureLatency(b, func() {
			out.expect(1)
			once()
			out.wait()
		})
	})
}

// BenchmarkBrokerRefSequence1Step is the same subscriber as the one step
// of a Sequence: the hop through a channel that a Trigger's delivery makes
// too, without the broker's filters, arrival time and TTL.
func BenchmarkBrokerRefSequence1Step(b *testing.B) {
	b.ReportAllocs()
	out := newSink()
	work := subscribe(out)
	sub := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		work(&e)
		return nil, nil
	})
	f, err := sequence(sub).Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	benchFlow(b, f, out, 1)
}

// filterTriggers is how many Triggers of one kind BenchmarkFilter gives a
// broker.
const filterTriggers = 100

// BenchmarkFilter measures what each kind of filter costs per event: a
// broker with 100 Triggers of that kind, none of which matches the event
// (so nothing is delivered and Send returns once every filter was
// evaluated), against the same broker without Triggers ("baseline").
// benchtable reports (kind - baseline) / 100 as the cost of one filter.
// "exact" is on an extension; "exact-type" is on the type, which is not
// evaluated at all on an event of another type (the broker indexes
// Triggers by the type their filter requires), so it measures that index,
// ~0 per Trigger. Each filter reads as far as it can before it fails: the
// prefix is the event type's own up to its last character, the source
// filter reads the source (a URI reference, which the SDK formats on every
// read), and the three clauses of the CESQL expression are all evaluated,
// the last one false.
func BenchmarkFilter(b *testing.B) {
	kinds := []struct {
		name   string
		filter func(i int) flows.Filter
	}{
		{"baseline", nil},
		{"exact", func(i int) flows.Filter { return flows.Exact("tenant", fmt.Sprintf("t%d", i)) }},
		{"exact-type", func(i int) flows.Filter { return flows.Exact("type", fmt.Sprintf("dev.knative.sources.ping.%d", i)) }},
		{"prefix", func(i int) flows.Filter { return flows.Prefix("type", fmt.Sprintf("dev.knative.sources.ping.%d", i)) }},
		{"source", func(i int) flows.Filter { return flows.Exact("source", fmt.Sprintf("/bench/%d", i)) }},
		{"cesql", func(i int) flows.Filter {
			return flows.CESQL(fmt.Sprintf("type LIKE 'dev.knative.%%' AND source = '/bench' AND tenant = 't%d'", i))
		}},
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			br := &flows.Broker{Name: "bench"}
			if k.filter != nil {
				for i := range filterTriggers {
					br.Triggers = append(br.Triggers, flows.Trigger{Name: fmt.Sprint("t", i), Filter: k.filter(i), Subscriber: flows.Discard})
				}
			}
			f, err := br.Start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer f.Shutdown(context.Background())
			ctx := context.Background()
			e := newEvent()
			e.SetExtension("tenant", "eu")
			cpu := cpuTime()
			for b.Loop() {
				if err := f.Send(ctx, e); err != nil {
					b.Fatal(err)
				}
			}
			reportThroughput(b, b.N, cpu)
		})
	}
}
