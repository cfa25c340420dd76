package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// Ours: the same work as flows handlers in flows.

// appender is the seed demo's appender written with flows.Typed.
func appender(suffix string) flows.Handler {
	return flows.Typed(func(_ context.Context, in msg) (msg, error) {
		in.Message += suffix
		return in, nil
	})
}

// arrive is a reply destination that counts into out.
func arrive(out *sink) flows.Handler {
	return flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		out.arrive()
		return nil, nil
	})
}

func sequence(steps ...flows.Handler) *flows.Sequence {
	s := &flows.Sequence{Name: "bench"}
	for _, h := range steps {
		s.Steps = append(s.Steps, flows.Step{Subscriber: h})
	}
	return s
}

// benchFlow sends b.N events through f and then measures the latency of
// one event in flight; each event gives perEvent events at out.
func benchFlow(b *testing.B, f *flows.Flow, out *sink, perEvent int) {
	b.Helper()
	defer func() {
		if err := f.Shutdown(context.Background()); err != nil {
			b.Error(err)
		}
	}()
	ctx := context.Background()
	b.ResetTimer()
	cpu := cpuTime()
	out.expect(b.N * perEvent)
	for range b.N {
		if err := f.Send(ctx, newEvent()); err != nil {
			b.Fatal(err)
		}
	}
	out.wait()
	reportThroughput(b, b.N, cpu)
	measureLatency(b, func() {
		out.expect(perEvent)
		if err := f.Send(ctx, newEvent()); err != nil {
			b.Fatal(err)
		}
		out.wait()
	})
}

// BenchmarkSequence3Steps is the seed demo's Sequence of three appenders.
func BenchmarkSequence3Steps(b *testing.B) {
	b.ReportAllocs()
	out := newSink()
	s := sequence(appender(suffix(0)), appender(suffix(1)), appender(suffix(2)))
	s.Reply = arrive(out)
	f, err := s.Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	benchFlow(b, f, out, 1)
}

func branchesName(n int) string { return fmt.Sprintf("branches=%d", n) }

func parallel(n int, out *sink) *flows.Parallel {
	p := &flows.Parallel{Name: "bench", Reply: arrive(out)}
	for i := range n {
		p.Branches = append(p.Branches, flows.Branch{Filter: flows.Match(pass), Subscriber: appender(suffix(i))})
	}
	return p
}

// BenchmarkParallel has branches with a filter and an appender each; every
// event passes every filter.
func BenchmarkParallel(b *testing.B) {
	for _, n := range []int{2, 10} {
		b.Run(branchesName(n), func(b *testing.B) {
			b.ReportAllocs()
			out := newSink()
			f, err := parallel(n, out).Start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			benchFlow(b, f, out, n)
		})
	}
}

// handleCallers is how many goroutines call Flow.Handle at once in the
// Handle benchmarks, and call the branches in turn in their limit.
const handleCallers = 16

// BenchmarkParallelHandle is BenchmarkParallel fed with Flow.Handle from
// handleCallers goroutines at once, each waiting for its event to have
// passed every branch and reached the reply; the flow runs with the default
// options (one worker per subscription).
func BenchmarkParallelHandle(b *testing.B) {
	for _, n := range []int{2, 10} {
		b.Run(branchesName(n), func(b *testing.B) {
			b.ReportAllocs()
			p := parallel(n, nil)
			p.Reply = flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, nil })
			f, err := p.Start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := f.Shutdown(context.Background()); err != nil {
					b.Error(err)
				}
			}()
			ctx := context.Background()
			once := func() {
				if _, err := f.Handle(ctx, newEvent()); err != nil {
					b.Error(err)
				}
			}
			benchCallers(b, handleCallers, once)
		})
	}
}
