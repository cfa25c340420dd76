package bench

import (
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

// The limits: the same work with nothing between the steps.

// BenchmarkLimitDirectCalls calls the three steps one after the other.
func BenchmarkLimitDirectCalls(b *testing.B) {
	b.ReportAllocs()
	once := func() {
		e := newEvent()
		for i := range 3 {
			appendStep(&e, suffix(i))
		}
	}
	cpu := cpuTime()
	for b.Loop() {
		once()
	}
	reportThroughput(b, b.N, cpu)
	measureLatency(b, once)
}

// BenchmarkLimitGoChannels is a pipeline of three goroutines joined by Go
// channels with a buffer of 128, passing the event.
func BenchmarkLimitGoChannels(b *testing.B) {
	b.ReportAllocs()
	out := newSink()
	in := goPipeline(3, out)
	defer close(in)
	b.ResetTimer()
	cpu := cpuTime()
	out.expect(b.N)
	for range b.N {
		e := newEvent()
		in <- &e
	}
	out.wait()
	reportThroughput(b, b.N, cpu)
	measureLatency(b, func() {
		out.expect(1)
		e := newEvent()
		in <- &e
		out.wait()
	})
}

// goPipeline starts n appender stages; the last one hands events to out.
// Closing the returned channel stops them.
func goPipeline(n int, out *sink) chan<- *event.Event {
	stages := make([]chan *event.Event, n+1)
	for i := range stages {
		stages[i] = make(chan *event.Event, 128)
	}
	for i := range n {
		go func() {
			for e := range stages[i] {
				appendStep(e, suffix(i))
				stages[i+1] <- e
			}
			close(stages[i+1])
		}()
	}
	go func() {
		for range stages[n] {
			out.arrive()
		}
	}()
	return stages[0]
}

// BenchmarkLimitBranchesSequentially calls the branches of a Parallel one
// after the other, each on its own copy of the event, after its filter.
func BenchmarkLimitBranchesSequentially(b *testing.B) {
	for _, n := range []int{2, 10} {
		b.Run(branchesName(n), func(b *testing.B) {
			b.ReportAllocs()
			once := func() { branchesInTurn(n) }
			cpu := cpuTime()
			for b.Loop() {
				once()
			}
			reportThroughput(b, b.N, cpu)
			measureLatency(b, once)
		})
	}
}

// pass is the filter of every branch: it lets the demo's events in.
func pass(e event.Event) bool { return e.Type() == "dev.knative.sources.ping" }

// BenchmarkLimitBranchesSequentiallyHandle is the limit of
// BenchmarkParallelHandle: the same handleCallers goroutines, each calling
// the branches of its event in turn (as BenchmarkLimitBranchesSequentially
// does) where the Parallel's callers call Handle. Both then keep every core
// busy with as many events in flight, and both return to their caller only
// once every branch has finished with its event.
func BenchmarkLimitBranchesSequentiallyHandle(b *testing.B) {
	for _, n := range []int{2, 10} {
		b.Run(branchesName(n), func(b *testing.B) {
			b.ReportAllocs()
			benchCallers(b, handleCallers, func() { branchesInTurn(n) })
		})
	}
}

// branchesInTurn calls n branches' filters and appenders on one event,
// each branch on its own copy.
func branchesInTurn(n int) {
	e := newEvent()
	for i := range n {
		if pass(e) {
			c := e
			appendStep(&c, suffix(i))
		}
	}
}
