package flows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// The benchmarks do the seed demo's work: three appender steps that decode
// {"message": ...}, append " - Handled by i" and encode. The Go-channel
// pipeline and the direct calls are the baselines to compare with, in the
// same run:
//
//	go test -run '^$' -bench . -benchmem

var suffixes = []string{" - Handled by 0", " - Handled by 1", " - Handled by 2"}

// appendStep is the appender's work on a bare event, for the baselines.
func appendStep(e *event.Event, suffix string) {
	var m msg
	if err := json.Unmarshal(e.Data(), &m); err != nil {
		panic(err)
	}
	m.Message += suffix
	if err := e.SetData(event.ApplicationJSON, m); err != nil {
		panic(err)
	}
}

func benchEvent() event.Event { return newEvent("1", msg{Message: "hello, world!"}) }

// counter is a reply that signals when n events arrived.
type counter struct {
	n, want atomic.Int64
	done    chan struct{}
}

func newCounter(want int) *counter {
	c := &counter{done: make(chan struct{})}
	c.want.Store(int64(want))
	return c
}

func (c *counter) Handle(context.Context, event.Event) (*event.Event, error) {
	if c.n.Add(1) == c.want.Load() {
		close(c.done)
	}
	return nil, nil
}

func report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkBaselineDirectCalls(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		e := benchEvent()
		for _, s := range suffixes {
			appendStep(&e, s)
		}
	}
	report(b)
}

func BenchmarkBaselineGoChannels(b *testing.B) {
	b.ReportAllocs()
	stages := make([]chan *event.Event, len(suffixes)+1)
	for i := range stages {
		stages[i] = make(chan *event.Event, 128)
	}
	for i, s := range suffixes {
		go func() {
			for e := range stages[i] {
				appendStep(e, s)
				stages[i+1] <- e
			}
			close(stages[i+1])
		}()
	}
	done := make(chan struct{})
	go func() {
		for range stages[len(suffixes)] {
		}
		close(done)
	}()
	b.ResetTimer()
	for range b.N {
		e := benchEvent()
		stages[0] <- &e
	}
	close(stages[0])
	<-done
	report(b)
}

func runFlow(b *testing.B, f *flows.Flow, c *counter) {
	b.Helper()
	b.ResetTimer()
	for range b.N {
		if err := f.Send(context.Background(), benchEvent()); err != nil {
			b.Fatal(err)
		}
	}
	<-c.done
	b.StopTimer()
	report(b)
	f.Shutdown(context.Background())
}

func BenchmarkSequence3Steps(b *testing.B) {
	b.ReportAllocs()
	c := newCounter(b.N)
	f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: appender(suffixes[0])}, {Subscriber: appender(suffixes[1])}, {Subscriber: appender(suffixes[2])}}, Reply: c}).Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	runFlow(b, f, c)
}

func BenchmarkBaselineTwoBranchesSequentially(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		e := benchEvent()
		for _, s := range suffixes[:2] {
			c := e.Clone()
			appendStep(&c, s)
		}
	}
	report(b)
}

func BenchmarkParallel2Branches(b *testing.B) {
	b.ReportAllocs()
	c := newCounter(2 * b.N)
	pass := flows.Match(func(event.Event) bool { return true })
	f, err := (&flows.Parallel{Branches: []flows.Branch{
		{Filter: pass, Subscriber: appender(suffixes[0])},
		{Filter: pass, Subscriber: appender(suffixes[1])},
	}, Reply: c}).Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	runFlow(b, f, c)
}

func BenchmarkHTTPSequence3Steps(b *testing.B) {
	b.ReportAllocs()
	var steps []flows.Step
	for _, s := range suffixes {
		srv := httptest.NewServer(flows.NewHTTPHandler(appender(s)))
		defer srv.Close()
		steps = append(steps, flows.Step{Subscriber: flows.HTTP(srv.URL)})
	}
	c := newCounter(b.N)
	f, err := (&flows.Sequence{Steps: steps, Reply: c}).Start(context.Background(), flows.WithConcurrency(8))
	if err != nil {
		b.Fatal(err)
	}
	runFlow(b, f, c)
}

// appenderServer serves the appender step on 127.0.0.1 and counts new connections.
func appenderServer(b *testing.B, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	b.Cleanup(srv.Close)
	return srv, &conns
}

// rawAppender is the appender written against net/http alone: the same
// binary-mode bytes in and out, without the CloudEvents SDK.
var rawAppender = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	var m msg
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	m.Message += suffixes[0]
	for k, v := range r.Header {
		if strings.HasPrefix(k, "Ce-") {
			w.Header()[k] = v
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(m)
})

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 1024}}

func rawPost(b *testing.B, url string) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"message":"hello, world!"}`))
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", "1")
	req.Header.Set("Ce-Source", "/test")
	req.Header.Set("Ce-Type", "test.event")
	req.Header.Set("Content-Type", "application/json")
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func benchClients(b *testing.B, clients int, post func()) {
	b.SetParallelism(max(clients/runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			post()
		}
	})
}

// BenchmarkBaselineRawHTTPHop is one POST with net/http to a net/http appender.
func BenchmarkBaselineRawHTTPHop(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			b.ReportAllocs()
			srv, conns := appenderServer(b, rawAppender)
			b.ResetTimer()
			benchClients(b, clients, func() { rawPost(b, srv.URL) })
			report(b)
			b.ReportMetric(float64(conns.Load())/float64(b.N), "conns/event")
		})
	}
}

// BenchmarkIngressHop is a client POST to a flow's synchronous ingress,
// which delivers to the same HTTP subscriber: two HTTP exchanges per event.
// (The bench module measures the hop from a flow alone, against more limits.)
func BenchmarkIngressHop(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			b.ReportAllocs()
			srv, conns := appenderServer(b, rawAppender)
			f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(srv.URL)}}, Reply: flows.Discard}).
				Start(context.Background(), flows.WithConcurrency(clients))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Shutdown(context.Background())
			ingress, ingressConns := appenderServer(b, flows.NewIngress(f, flows.IngressSynchronous()))
			b.ResetTimer()
			benchClients(b, clients, func() { rawPost(b, ingress.URL) })
			report(b)
			b.ReportMetric(float64(conns.Load()+ingressConns.Load())/float64(b.N), "conns/event")
		})
	}
}
