package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	ce "github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/eventflows/flows"
)

// The HTTP benchmarks send the same binary-mode bytes to appender servers
// on 127.0.0.1, from 1 client and from 32 concurrent clients. The subscribers
// are plain net/http servers in every case, so that the comparison is
// between clients: raw net/http, the CloudEvents SDK, and flows.

var clientCounts = []int{1, 32}

func clientsName(n int) string { return fmt.Sprintf("clients=%d", n) }

// server serves h on 127.0.0.1 and counts the connections it accepts.
type server struct {
	*httptest.Server
	conns atomic.Int64
}

func newServer(b *testing.B, h http.Handler) *server {
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	b.Cleanup(s.Close)
	return s
}

// rawAppender is the appender written with net/http alone: it answers the
// binary-mode event with the event, its data appended to.
func rawAppender(suffix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m msg
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.Message += suffix
		for k, v := range r.Header {
			if strings.HasPrefix(k, "Ce-") {
				w.Header()[k] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m)
	})
}

func rawAppenders(b *testing.B, n int) []*server {
	s := make([]*server, n)
	for i := range s {
		s[i] = newServer(b, rawAppender(suffix(i)))
	}
	return s
}

// A counter counts the connections a server accepted.
type counter interface{ connections() *atomic.Int64 }

func (s *server) connections() *atomic.Int64 { return &s.conns }

func conns[C counter](servers []C) int64 {
	var n int64
	for _, s := range servers {
		n += s.connections().Load()
	}
	return n
}

// rawTransport keeps as many idle connections as flows' default client.
func rawTransport() *http.Transport {
	return &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}
}

var ceHeaders = http.Header{
	"Ce-Specversion": {"1.0"},
	"Ce-Id":          {"1"},
	"Ce-Source":      {"/bench"},
	"Ce-Type":        {"dev.knative.sources.ping"},
	"Content-Type":   {"application/json"},
}

// rawEventServer does with net/http and the SDK's event type alone what
// NewHTTPHandler does serving the Typed appender (and, without reply, what
// a synchronous Ingress in front of a one-step Sequence of it does): it
// decodes the binary-mode event (its attributes from the headers, with the
// SDK's setters, checking those a CloudEvent must have; its data from the
// body), decodes the data, appends, encodes, and answers with the event in
// binary mode (without reply: 202 once the work is done). It is written
// to be cheap: no media type parsing, no full validation, no byte budget,
// the body read into one buffer of its declared length, the reply's
// header values in one allocation.
func rawEventServer(suffix string, reply bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "only POST", http.StatusMethodNotAllowed)
			return
		}
		if sv := r.Header["Ce-Specversion"]; len(sv) == 0 || sv[0] != event.CloudEventsVersionV1 {
			http.Error(w, "not a binary-mode CloudEvents 1.0 event", http.StatusBadRequest)
			return
		}
		e := event.New()
		var err error
		for k, v := range r.Header {
			switch k {
			case "Ce-Specversion":
			case "Ce-Id":
				err = e.Context.SetID(v[0])
			case "Ce-Source":
				err = e.Context.SetSource(v[0])
			case "Ce-Type":
				err = e.Context.SetType(v[0])
			case "Content-Type":
				err = e.Context.SetDataContentType(v[0])
			default:
				if strings.HasPrefix(k, "Ce-") && len(k) > 3 {
					err = e.Context.SetExtension(strings.ToLower(k[3:]), v[0])
				}
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		if e.ID() == "" || e.Source() == "" || e.Type() == "" {
			http.Error(w, "missing attribute", http.StatusBadRequest)
			return
		}
		if r.ContentLength > flows.DefaultMaxBodyBytes {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		data := make([]byte, 0, max(r.ContentLength, 0)+1)
		for err == nil && len(data) <= flows.DefaultMaxBodyBytes {
			if len(data) == cap(data) {
				data = slices.Grow(data, 512)
			}
			var n int
			n, err = r.Body.Read(data[len(data):cap(data)])
			data = data[:len(data)+n]
		}
		if err != io.EOF {
			if err == nil {
				err = errors.New("too large")
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if data, err = appendMessage(data, suffix); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.DataEncoded = data
		if !reply {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		h := w.Header()
		vals := []string{event.CloudEventsVersionV1, e.ID(), e.Source(), e.Type(), e.DataContentType(), strconv.Itoa(len(e.Data()))}
		for i, k := range []string{"Ce-Specversion", "Ce-Id", "Ce-Source", "Ce-Type", "Content-Type", "Content-Length"} {
			h[k] = vals[i : i+1 : i+1]
		}
		for name, v := range e.Extensions() {
			h["Ce-"+strings.ToUpper(name[:1])+name[1:]] = []string{fmt.Sprint(v)}
		}
		w.WriteHeader(http.StatusOK)
		w.Write(e.Data())
	})
}

// rawPost posts a binary-mode event and returns the reply's headers and body.
func rawPost(c *http.Client, url string, header http.Header, body []byte) (http.Header, []byte, error) {
	return rawPostWant(c, url, header, body, http.StatusOK)
}

// rawPostWant is rawPost expecting the status want.
func rawPostWant(c *http.Client, url string, header http.Header, body []byte, want int) (http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		if k == "Content-Type" || strings.HasPrefix(k, "Ce-") {
			req.Header[k] = v
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != want {
		err = fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return resp.Header, data, err
}

// rawChain posts the event to each server in turn, each reply being the
// next request, as a Sequence's dispatcher does.
func rawChain(c *http.Client, servers []*server) error {
	header, body := ceHeaders, inputData
	for _, s := range servers {
		var err error
		if header, body, err = rawPost(c, s.URL, header, body); err != nil {
			return err
		}
	}
	return nil
}

// runClients calls once b.N times from the given number of goroutines.
func runClients(b *testing.B, clients int, once func() error) {
	b.Helper()
	if clients == 1 {
		for range b.N {
			if err := once(); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := once(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchHTTP runs once from each number of clients, and reports the
// latency of one event in flight for a single client.
func benchHTTP[C counter](b *testing.B, clients int, servers []C, once func() error) {
	b.ReportAllocs()
	warmUp(b, clients, once)
	for _, s := range servers {
		s.connections().Store(0)
	}
	b.ResetTimer()
	cpu := cpuTime()
	runClients(b, clients, once)
	b.StopTimer()
	reportThroughput(b, b.N, cpu)
	b.ReportMetric(float64(conns(servers))/float64(b.N), "conns/event")
	if clients == 1 {
		measureLatency(b, func() {
			if err := once(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// warmUp opens the connections that clients concurrent calls need, so
// that conns/event counts only the connections opened in steady state.
func warmUp(b *testing.B, clients int, once func() error) {
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			if err := once(); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

// BenchmarkLimitHTTPHop is one POST with net/http to the appender.
func BenchmarkLimitHTTPHop(b *testing.B) { benchRawChain(b, 1) }

// BenchmarkLimitHTTPChain3 is three POSTs with net/http, each reply being
// posted to the next appender.
func BenchmarkLimitHTTPChain3(b *testing.B) { benchRawChain(b, 3) }

func benchRawChain(b *testing.B, hops int) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			servers := rawAppenders(b, hops)
			c := &http.Client{Transport: rawTransport()}
			benchHTTP(b, clients, servers, func() error { return rawChain(c, servers) })
		})
	}
}

// BenchmarkLimitSDKRequest is the CloudEvents SDK's client.Request to an
// SDK receiver (client.StartReceiver) doing the appender's work.
//
// The receiver is the SDK's own server, not client.NewHTTPReceiveHandler:
// that handler can leave a request unanswered under concurrent requests (a
// request's goroutine may take another request's message, then give up
// when its own request ends, stranding a later message).
func BenchmarkLimitSDKRequest(b *testing.B) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			counted := &countingListener{Listener: ln}
			p, err := cehttp.New(cehttp.WithListener(counted))
			if err != nil {
				b.Fatal(err)
			}
			receiver, err := ce.New(p)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan error, 1)
			go func() {
				stopped <- receiver.StartReceiver(ctx, func(_ context.Context, e event.Event) (*event.Event, protocol.Result) {
					appendStep(&e, suffix(0))
					return &e, nil
				})
			}()
			b.Cleanup(func() {
				cancel()
				if err := <-stopped; err != nil {
					b.Error(err)
				}
			})
			url := "http://" + ln.Addr().String()
			c, err := ce.NewHTTP(cehttp.WithTarget(url), cehttp.WithClient(http.Client{Transport: rawTransport()}))
			if err != nil {
				b.Fatal(err)
			}
			benchHTTP(b, clients, []counter{counted}, func() error {
				reply, res := c.Request(context.Background(), newEvent())
				if !protocol.IsACK(res) {
					return res
				}
				if reply == nil {
					return errors.New("no reply")
				}
				return nil
			})
		})
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	conns atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.conns.Add(1)
	}
	return c, err
}

func (l *countingListener) connections() *atomic.Int64 { return &l.conns }

// benchHTTPFlow delivers events synchronously (Flow.Handle) through a flow
// whose steps are the servers, from each number of clients.
func benchHTTPFlow(b *testing.B, clients int, servers []*server) {
	var steps []flows.Handler
	for _, s := range servers {
		steps = append(steps, flows.HTTP(s.URL))
	}
	seq := sequence(steps...)
	seq.Reply = flows.Discard
	f, err := seq.Start(context.Background(), flows.WithConcurrency(clients))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Shutdown(context.Background())
	ctx := context.Background()
	benchHTTP(b, clients, servers, func() error {
		_, err := f.Handle(ctx, newEvent())
		return err
	})
}

// BenchmarkHTTPHop is a one-step Sequence whose step is the appender server.
func BenchmarkHTTPHop(b *testing.B) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			benchHTTPFlow(b, clients, rawAppenders(b, 1))
		})
	}
}

// BenchmarkHTTPTarget calls the HTTPTarget of BenchmarkHTTPHop directly,
// without a flow around it: the part of the hop that is the HTTP client's,
// apart from the flow's hand-off to a worker and its tracking of the event.
func BenchmarkHTTPTarget(b *testing.B) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			servers := rawAppenders(b, 1)
			t := flows.HTTP(servers[0].URL)
			ctx := context.Background()
			benchHTTP(b, clients, servers, func() error {
				reply, err := t.Handle(ctx, newEvent())
				if err == nil && reply == nil {
					err = errors.New("no reply")
				}
				return err
			})
		})
	}
}

// BenchmarkHTTPSequence3Steps is the seed demo's Sequence with its three
// appenders behind HTTP.
func BenchmarkHTTPSequence3Steps(b *testing.B) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			benchHTTPFlow(b, clients, rawAppenders(b, 3))
		})
	}
}

// BenchmarkLimitHTTPServe is a raw net/http client posting to
// rawEventServer: the reference of BenchmarkHTTPServe.
func BenchmarkLimitHTTPServe(b *testing.B) {
	benchServe(b, rawEventServer(suffix(0), true), http.StatusOK)
}

// BenchmarkLimitIngressServe is a raw net/http client posting to
// rawEventServer without reply: the reference of BenchmarkIngressServe.
func BenchmarkLimitIngressServe(b *testing.B) {
	benchServe(b, rawEventServer(suffix(0), false), http.StatusAccepted)
}

// BenchmarkIngressServe is a raw net/http client posting to a synchronous
// Ingress (202 means the flow is done with the event) in front of a
// one-step Sequence of the Typed appender.
func BenchmarkIngressServe(b *testing.B) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			seq := sequence(appender(suffix(0)))
			seq.Reply = flows.Discard
			f, err := seq.Start(context.Background(), flows.WithConcurrency(clients))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Shutdown(context.Background())
			servers := []*server{newServer(b, flows.NewIngress(f, flows.IngressSynchronous()))}
			c := &http.Client{Transport: rawTransport()}
			benchHTTP(b, clients, servers, func() error {
				_, _, err := rawPostWant(c, servers[0].URL, ceHeaders, inputData, http.StatusAccepted)
				return err
			})
		})
	}
}

// benchServe posts the event to h from each number of clients, expecting want.
func benchServe(b *testing.B, h http.Handler, want int) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			servers := []*server{newServer(b, h)}
			c := &http.Client{Transport: rawTransport()}
			benchHTTP(b, clients, servers, func() error {
				_, _, err := rawPostWant(c, servers[0].URL, ceHeaders, inputData, want)
				return err
			})
		})
	}
}

// BenchmarkHTTPServe is the other side: a raw net/http client posting to
// the Typed appender served by flows.NewHTTPHandler.
func BenchmarkHTTPServe(b *testing.B) {
	for _, clients := range clientCounts {
		b.Run(clientsName(clients), func(b *testing.B) {
			servers := []*server{newServer(b, flows.NewHTTPHandler(appender(suffix(0))))}
			c := &http.Client{Transport: rawTransport()}
			benchHTTP(b, clients, servers, func() error { return rawChain(c, servers) })
		})
	}
}
