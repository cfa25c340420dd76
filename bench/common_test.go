package bench

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Every benchmark does the work of the seed demo's appender step: decode
// {"message": ...}, append " - Handled by i", encode.

type msg struct {
	ID      int    `json:"id"`
	Message string `json:"message"`
}

// suffix returns what step i appends.
func suffix(i int) string { return suffixes[i] }

var suffixes = func() []string {
	s := make([]string, 64)
	for i := range s {
		s[i] = fmt.Sprintf(" - Handled by %d", i)
	}
	return s
}()

const firstMessage = "hello, world!"

// appendMessage is the step's work on the data bytes, the cheapest way it
// can be written: the limits call it directly.
func appendMessage(data []byte, suffix string) ([]byte, error) {
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	m.Message += suffix
	return json.Marshal(m)
}

// appendStep applies appendMessage to an event.
func appendStep(e *event.Event, suffix string) {
	data, err := appendMessage(e.Data(), suffix)
	if err != nil {
		panic(err)
	}
	e.DataEncoded = data
}

var inputData = []byte(`{"id":1,"message":"` + firstMessage + `"}`)

// newEvent is the input of every benchmark: a binary-mode JSON event as a
// client would build it.
func newEvent() event.Event {
	e := event.New()
	e.SetID("1")
	e.SetSource("/bench")
	e.SetType("dev.knative.sources.ping")
	e.SetDataContentType(event.ApplicationJSON)
	e.DataEncoded = inputData
	return e
}

// sink counts the events that come out of a pipeline and tells the
// benchmark when the number it expects has arrived.
type sink struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func newSink() *sink { return &sink{done: make(chan struct{}, 1)} }

// expect must be called before the k events it waits for are sent.
func (s *sink) expect(k int) { s.target.Store(s.n.Load() + int64(k)) }

func (s *sink) arrive() {
	if s.n.Add(1) == s.target.Load() {
		s.done <- struct{}{}
	}
}

func (s *sink) wait() { <-s.done }

// reportThroughput reports events/s, and the CPU time the process spent
// per event since cpu was read: on a shared machine it moves less than the
// elapsed time, as it does not count the time other processes had the CPU.
func reportThroughput(b *testing.B, events int, cpu time.Duration) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(events), "cpu-ns/event")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// latencySamples is how many events the latency phase sends, one at a time.
func latencySamples(b *testing.B) int { return min(b.N, 5000) }

// measureLatency sends events one at a time through once, outside the
// timer, and reports the median and 99th percentile of their latency.
func measureLatency(b *testing.B, once func()) {
	b.Helper()
	b.StopTimer()
	n := latencySamples(b)
	lat := make([]time.Duration, n)
	for i := range lat {
		start := time.Now()
		once()
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[n/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[min(n*99/100, n-1)].Nanoseconds()), "p99-ns")
}

// benchCallers calls once b.N times in all from callers goroutines, and
// then measures the latency of one call at a time.
func benchCallers(b *testing.B, callers int, once func()) {
	b.Helper()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((callers + procs - 1) / procs)
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			once()
		}
	})
	reportThroughput(b, b.N, cpu)
	measureLatency(b, once)
}
