package otelflows_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"github.com/eventflows/flows/otelflows"
	"go.opentelemetry.io/otel/trace"
)

// headerRecorder serves h and keeps the traceparent header of each request.
type headerRecorder struct {
	mu      sync.Mutex
	headers []string
	h       http.Handler
}

func (r *headerRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Get("Traceparent"))
	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

// One trace crosses two HTTP hops: an HTTP subscriber, and a flow in
// "another process" (its own tracer provider) behind a synchronous ingress.
func TestTraceContinuesAcrossHTTP(t *testing.T) {
	front, back := newHarness(t), newHarness(t)

	remote := flowstest.NewRecorder(flowstest.Echo())
	hr := &headerRecorder{h: flows.NewHTTPHandler(remote)}
	subscriber := httptest.NewServer(hr)
	defer subscriber.Close()

	backReply := flowstest.NewRecorder()
	backFlow, err := (&flows.Sequence{Name: "back", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Echo())}}, Reply: backReply}).
		Start(t.Context(), flows.WithObserver(back.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer backFlow.Close()
	ingress := httptest.NewServer(flows.NewIngress(backFlow, flows.IngressSynchronous()))
	defer ingress.Close()

	f, err := (&flows.Sequence{Name: "front", Steps: []flows.Step{
		{Subscriber: &flows.HTTPTarget{URL: subscriber.URL, Client: subscriber.Client()}},
		{Subscriber: &flows.HTTPTarget{URL: ingress.URL + "/back", Client: ingress.Client()}},
	}}).Start(t.Context(), flows.WithObserver(front.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle(t, f, flowstest.NewEvent("1", "t", "/test", `{"n": 1}`))

	assertTree(t, front.ended(), `
send front
  front steps[0] #1 delivered
    front steps[1] #1 delivered
`)
	traceID := assertOneTrace(t, front.ended())
	step0 := front.span(t, "front steps[0]", 1).SpanContext
	step1 := front.span(t, "front steps[1]", 1).SpanContext

	// The HTTP subscriber sees the trace of its delivery, in the W3C header
	// and in the event's extension alike.
	want := "00-" + traceID.String() + "-" + step0.SpanID().String() + "-01"
	if got := hr.headers; len(got) != 1 || got[0] != want {
		t.Errorf("traceparent headers %q, want [%s]", got, want)
	}
	if got := otelflows.TraceContext(remote.Events()[0]); got.TraceID() != traceID || got.SpanID() != step0.SpanID() {
		t.Errorf("event traceparent %s/%s, want %s/%s", got.TraceID(), got.SpanID(), traceID, step0.SpanID())
	}

	// The other process goes on with the same trace, under front's step 1.
	assertTree(t, back.ended(), `
ingress
  back steps[0] #1 delivered
    back steps[0] reply #1
`)
	in := back.span(t, "ingress", 0)
	if in.SpanContext.TraceID() != traceID || in.Parent.SpanID() != step1.SpanID() || !in.Parent.IsRemote() {
		t.Errorf("ingress span in trace %s under %s (remote %v), want trace %s under %s", in.SpanContext.TraceID(), in.Parent.SpanID(), in.Parent.IsRemote(), traceID, step1.SpanID())
	}
	if in.SpanKind != trace.SpanKindServer || intAttr(in, "http.response.status_code") != http.StatusAccepted {
		t.Errorf("ingress span kind %v status %d", in.SpanKind, intAttr(in, "http.response.status_code"))
	}
	assertOneTrace(t, append(back.ended(), front.ended()...))
	if got := otelflows.TraceContext(backReply.Events()[0]).TraceID(); got != traceID {
		t.Errorf("back's reply in trace %s, want %s", got, traceID)
	}
}

// A client that only sends the W3C header (an instrumented HTTP client,
// say) starts the flow's trace too.
func TestIngressReadsTheW3CHeader(t *testing.T) {
	h := newHarness(t)
	f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder()}}}).Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mux := http.NewServeMux()
	mux.Handle("POST /events", flows.NewIngress(f, flows.IngressSynchronous()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	e := flowstest.NewEvent("1", "t", "/test", nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/events", nil)
	if err := cehttp.WriteRequest(binding.WithForceBinary(t.Context()), binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req.Header.Set("Traceparent", "00-"+tid+"-"+sid+"-01")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", resp.StatusCode)
	}
	assertTree(t, h.ended(), `
ingress POST /events
  seq steps[0] #1 delivered
`)
	in := h.span(t, "ingress POST /events", 0)
	if in.SpanContext.TraceID().String() != tid || in.Parent.SpanID().String() != sid {
		t.Errorf("ingress span %s under %s, want trace %s under %s", in.SpanContext.TraceID(), in.Parent.SpanID(), tid, sid)
	}
	if got := strAttr(in, "http.request.method"); !strings.EqualFold(got, "POST") {
		t.Errorf("method %q", got)
	}
}

// A flow served with flows.NewHTTPHandler (as an HTTP subscriber of another
// flow, say) continues the trace of the W3C header it is called with.
func TestFlowServedAsSubscriberContinuesTheTrace(t *testing.T) {
	h := newHarness(t)
	f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder()}}}).Start(t.Context(), flows.WithObserver(h.obs))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv := flowstest.NewServer(f)
	defer srv.Close()

	e := flowstest.NewEvent("1", "t", "/test", nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, nil)
	if err := cehttp.WriteRequest(binding.WithForceBinary(t.Context()), binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req.Header.Set("Traceparent", "00-"+tid+"-"+sid+"-01")
	resp, err := srv.Target().Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", resp.StatusCode)
	}
	assertTree(t, h.ended(), `
send seq
  seq steps[0] #1 delivered
`)
	send := h.span(t, "send seq", 0)
	if send.SpanContext.TraceID().String() != tid || send.Parent.SpanID().String() != sid || !send.Parent.IsRemote() {
		t.Errorf("send span %s under %s, want trace %s under the remote %s", send.SpanContext.TraceID(), send.Parent.SpanID(), tid, sid)
	}
}
