package bench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/eventflows/flows"
)

// For the scale runs each step replaces the previous step's suffix with its
// own instead of appending to it, so that every step handles the same bytes
// and the cost per event measures the flow, not a growing message.
func relabel(suffix string) flows.Handler {
	return flows.Typed(func(_ context.Context, in msg) (msg, error) {
		in.Message = firstMessage + suffix
		return in, nil
	})
}

var scaleSizes = []int{1, 4, 16, 64}

// BenchmarkScaleSequence measures the cost per event of Sequences of
// growing length; ns/step must stay flat.
func BenchmarkScaleSequence(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("steps=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			out := newSink()
			s := &flows.Sequence{Name: "scale", Reply: arrive(out)}
			for i := range n {
				s.Steps = append(s.Steps, flows.Step{Subscriber: relabel(suffix(i))})
			}
			f, err := s.Start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			benchFlow(b, f, out, 1)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/step")
		})
	}
}

// BenchmarkScaleParallel measures the cost per event of Parallels of
// growing width (every filter passes); ns/branch must stay flat.
func BenchmarkScaleParallel(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("branches=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			out := newSink()
			p := &flows.Parallel{Name: "scale", Reply: arrive(out)}
			for i := range n {
				p.Branches = append(p.Branches, flows.Branch{Filter: flows.Match(pass), Subscriber: relabel(suffix(i))})
			}
			f, err := p.Start(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			benchFlow(b, f, out, n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/branch")
		})
	}
}

// idleWindow is how long the idle flows are watched for CPU use.
const idleWindow = 500 * time.Millisecond

// BenchmarkIdleSequences starts 10,000 three-step Sequences and measures
// what they hold while no event flows: heap, goroutine stacks (and both
// together, mem-MiB), goroutines, and the process's CPU time over half a
// second, in percent of one core. One op is the whole experiment.
func BenchmarkIdleSequences(b *testing.B) { benchIdle(b, 10_000) }

// BenchmarkIdleSequences100k is BenchmarkIdleSequences with 100,000 flows.
func BenchmarkIdleSequences100k(b *testing.B) { benchIdle(b, 100_000) }

func benchIdle(b *testing.B, idleFlows int) {
	ctx := context.Background()
	for range b.N {
		before := memStats()
		goroutines := runtime.NumGoroutine()
		running := make([]*flows.Flow, 0, idleFlows)
		for i := range idleFlows {
			s := sequence(appender(suffix(0)), appender(suffix(1)), appender(suffix(2)))
			s.Name = fmt.Sprintf("idle-%d", i)
			s.Reply = flows.Discard
			f, err := s.Start(ctx)
			if err != nil {
				b.Fatal(err)
			}
			running = append(running, f)
		}
		after := memStats()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/(1<<20), "stack-MiB")
		b.ReportMetric(float64(after.HeapAlloc+after.StackInuse-before.HeapAlloc-before.StackInuse)/(1<<20), "mem-MiB")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines), "goroutines")

		// Return the memory that building the flows freed first, so that
		// the runtime's scavenger does not do it inside the window and
		// count as the idle flows' CPU.
		debug.FreeOSMemory()
		cpu := cpuTime()
		start := time.Now()
		time.Sleep(idleWindow) // a measurement window, not synchronisation
		b.ReportMetric(100*float64(cpuTime()-cpu)/float64(time.Since(start)), "idle-cpu-%")

		for _, f := range running {
			if err := f.Shutdown(ctx); err != nil {
				b.Fatal(err)
			}
		}
		runtime.KeepAlive(running)
	}
}

func memStats() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}
