package flows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// newServer starts an httptest server on 127.0.0.1 that counts new connections.
func newServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func TestHTTPTargetSendsBinaryModeAndReadsTheReply(t *testing.T) {
	var got http.Header
	var body string
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Id", "reply-1")
		w.Header().Set("Ce-Source", "/server")
		w.Header().Set("Ce-Type", "replied")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	e := newEvent("1", map[string]string{"message": "hi"})
	e.SetExtension("tenant", "acme")
	reply, err := flows.HTTP(srv.URL).Handle(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if got.Get("Ce-Id") != "1" || got.Get("Ce-Type") != "test.event" || got.Get("Ce-Tenant") != "acme" || got.Get("Content-Type") != "application/json" {
		t.Errorf("request headers are not binary mode: %v", got)
	}
	if got.Get("Prefer") != "reply" {
		t.Errorf("Prefer = %q, want reply", got.Get("Prefer"))
	}
	if body != `{"message":"hi"}` {
		t.Errorf("body = %q", body)
	}
	if reply == nil || reply.ID() != "reply-1" || reply.Type() != "replied" || string(reply.Data()) != `{"ok":true}` {
		t.Errorf("reply = %v", reply)
	}
}

func TestHTTPTargetStructuredMode(t *testing.T) {
	var ct string
	var payload map[string]any
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct = r.Header.Get("Content-Type")
		json.NewDecoder(r.Body).Decode(&payload)
		w.WriteHeader(http.StatusAccepted)
	}))
	target := &flows.HTTPTarget{URL: srv.URL, Structured: true}
	reply, err := target.Handle(context.Background(), newEvent("7", map[string]int{"n": 1}))
	if err != nil || reply != nil {
		t.Fatalf("Handle = %v, %v; want no event and no error for a 202 without event", reply, err)
	}
	if ct != "application/cloudevents+json" || payload["id"] != "7" || payload["specversion"] != "1.0" {
		t.Errorf("structured request: content type %q, payload %v", ct, payload)
	}
}

func TestHTTPStatusesFollowKnative(t *testing.T) {
	cases := []struct {
		status    int
		retryable bool
	}{
		{500, true}, {502, true}, {503, true}, {504, true}, {404, true}, {408, true}, {409, true}, {429, true},
		{400, false}, {401, false}, {403, false}, {410, false}, {422, false}, {301, false}, {302, false}, {307, false},
	}
	for _, tc := range cases {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			var calls atomic.Int32
			srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if tc.status >= 300 && tc.status < 400 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, "details")
			}))
			dls := flowstest.NewRecorder()
			f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(srv.URL)}},
				Delivery: &flows.Delivery{Retry: 2, DeadLetter: dls}})
			f.Handle(context.Background(), newEvent("1", nil))
			want := int32(1)
			if tc.retryable {
				want = 3
			}
			// A redirect is not followed: the server saw only our POSTs.
			if calls.Load() != want {
				t.Errorf("server called %d times, want %d", calls.Load(), want)
			}
			dl := dls.MustWait(t, 1)[0]
			if dl.Extensions()[flows.ExtensionErrorDest] != srv.URL {
				t.Errorf("knativeerrordest = %v, want the URL", dl.Extensions()[flows.ExtensionErrorDest])
			}
			if dl.Extensions()[flows.ExtensionErrorData] != "ZGV0YWlscw==" {
				t.Errorf("knativeerrordata = %v, want base64 of the body", dl.Extensions()[flows.ExtensionErrorData])
			}
		})
	}
}

func TestHTTPErrorCarriesStatusBodyAndRetryAfter(t *testing.T) {
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	_, err := flows.HTTP(srv.URL).Handle(context.Background(), newEvent("1", nil))
	var he *flows.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want *HTTPError", err)
	}
	if he.StatusCode != 429 || strings.TrimSpace(string(he.Body)) != "slow down" || he.RetryAfter != 7*time.Second || !he.Retryable() {
		t.Errorf("HTTPError = %+v", he)
	}
	if !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "slow down") {
		t.Errorf("message %q should name the status and body", err)
	}
}

func TestHTTPTransportErrorsAreRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more
	dls := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(url)}}, Delivery: &flows.Delivery{Retry: 1, DeadLetter: dls}})
	f.Handle(context.Background(), newEvent("1", nil))
	dl := dls.MustWait(t, 1)[0]
	if code := dl.Extensions()[flows.ExtensionErrorCode]; code != int32(500) {
		t.Errorf("knativeerrorcode = %v, want 500 for a transport error", code)
	}
}

func TestHTTPSequenceReusesConnections(t *testing.T) {
	var servers []*httptest.Server
	var conns []*atomic.Int64
	for range 3 {
		s, c := newServer(t, flows.NewHTTPHandler(appender(" +")))
		servers, conns = append(servers, s), append(conns, c)
	}
	out := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Steps: []flows.Step{
		{Subscriber: flows.HTTP(servers[0].URL)}, {Subscriber: flows.HTTP(servers[1].URL)}, {Subscriber: flows.HTTP(servers[2].URL)},
	}, Reply: out}, flows.WithConcurrency(4))
	const n = 200
	for i := range n {
		if err := f.Send(context.Background(), newEvent(string(rune('a'+i%26))+string(rune('0'+i/26)), msg{Message: "x"})); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range out.MustWait(t, n) {
		if m := message(t, e); m != "x + + +" {
			t.Fatalf("message %q", m)
		}
	}
	for i, c := range conns {
		// About one connection per worker (the transport may dial one spare
		// while a busy one frees up): bodies are drained, so each is reused.
		if c.Load() > 8 {
			t.Errorf("server %d saw %d connections for %d events", i, c.Load(), n)
		}
	}
}

func TestNewHTTPHandlerSpeaksTheSubscriberContract(t *testing.T) {
	h := flows.NewHTTPHandler(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		switch e.ID() {
		case "none":
			return nil, nil
		case "fail":
			return nil, errors.New("broken")
		case "bad":
			return nil, flows.Permanent(errors.New("cannot process"))
		case "panic":
			panic("oops")
		}
		e.SetType("answered")
		return &e, nil
	}))
	srv, _ := newServer(t, h)
	post := func(e event.Event) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
		if err := cehttp.WriteRequest(binding.WithForceBinary(context.Background()), binding.ToMessage(&e), req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := post(newEvent("ok", nil)); r.StatusCode != 200 || r.Header.Get("Ce-Type") != "answered" {
		t.Errorf("reply: %d %v", r.StatusCode, r.Header)
	}
	for id, want := range map[string]int{"none": 202, "fail": 500, "bad": 400, "panic": 500} {
		if r := post(newEvent(id, nil)); r.StatusCode != want {
			t.Errorf("%s: status %d, want %d", id, r.StatusCode, want)
		}
	}
	resp, _ := http.Post(srv.URL, "text/plain", strings.NewReader("hello"))
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("non-CloudEvent: status %d, want 400", resp.StatusCode)
	}
	resp, _ = http.Post(srv.URL, "application/cloudevents+xml", strings.NewReader("<event/>"))
	resp.Body.Close()
	if resp.StatusCode != 415 {
		t.Errorf("unsupported CloudEvents format: status %d, want 415", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL)
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
}

func TestHTTPTargetConcurrentUse(t *testing.T) {
	srv, _ := newServer(t, flows.NewHTTPHandler(flows.Discard))
	target := &flows.HTTPTarget{URL: srv.URL, Client: &http.Client{Timeout: 5 * time.Second}}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := target.Handle(context.Background(), newEvent(string(rune('a'+i)), nil)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestNewHTTPHandlerKeepsRetryAfter(t *testing.T) {
	srv, _ := newServer(t, flows.NewHTTPHandler(flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		return nil, &flows.HTTPError{StatusCode: 503, RetryAfter: 2 * time.Second}
	})))
	_, err := flows.HTTP(srv.URL).Handle(context.Background(), newEvent("1", nil))
	var he *flows.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 503 || he.RetryAfter != 2*time.Second {
		t.Errorf("err = %v, want a 503 with Retry-After 2s", err)
	}
}

func TestNewHTTPHandlerOfAStoppedFlowAsksForARetry(t *testing.T) {
	// A flow served as a subscriber that is shutting down (a process being
	// replaced, say) is unavailable for now: its callers should retry, not
	// dead-letter the event.
	f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}}).Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.Shutdown(context.Background())
	srv, _ := newServer(t, flows.NewHTTPHandler(f))
	_, err = flows.HTTP(srv.URL).Handle(context.Background(), newEvent("1", nil))
	var he *flows.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || !he.Retryable() {
		t.Errorf("err = %v, want a retryable 503", err)
	}
}

func TestNewHTTPHandlerOfAFlowWhoseStepIsStoppedRefusesTheEvent(t *testing.T) {
	// Retrying would run the outer flow again for nothing: the inner flow
	// is gone for good, as far as the outer one knows.
	inner, _ := (&flows.Sequence{Name: "inner", Steps: []flows.Step{{Subscriber: flows.Discard}}}).Start(context.Background())
	inner.Shutdown(context.Background())
	outer := start(t, &flows.Sequence{Name: "outer", Steps: []flows.Step{{Subscriber: inner}}})
	srv, _ := newServer(t, flows.NewHTTPHandler(outer))
	_, err := flows.HTTP(srv.URL).Handle(context.Background(), newEvent("1", nil))
	var he *flows.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Errorf("err = %v, want a 400", err)
	}
}

func TestNewHTTPHandlerOfAFullFlowAsksForARetry(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})}}}, flows.WithCapacity(1))
	if err := f.TrySend(newEvent("busy", nil)); err != nil {
		t.Fatal(err)
	}
	// The request is held while the flow is full, until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", strings.NewReader("{}"))
	for k, v := range binaryHeaders {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	flows.NewHTTPHandler(f).ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("a full flow answered %d (Retry-After %q), want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

// TestHTTPTargetFollowsAChangedURL checks that a target whose URL is set
// again between uses delivers to the URL it has at each call, and that a
// URL that does not parse fails each call for good, naming the problem.
func TestHTTPTargetFollowsAChangedURL(t *testing.T) {
	var hits [2]atomic.Int64
	var srvs [2]*httptest.Server
	for i := range srvs {
		srvs[i], _ = newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			w.WriteHeader(http.StatusAccepted)
		}))
	}
	target := flows.HTTP(srvs[0].URL)
	for i, u := range []string{srvs[0].URL, srvs[1].URL + "/b", "http://%zz", srvs[0].URL, "http://%zz", srvs[1].URL} {
		target.URL = u
		_, err := target.Handle(context.Background(), newEvent("1", nil))
		if u == "http://%zz" {
			if err == nil || !flows.IsPermanent(err) || !strings.Contains(err.Error(), `parse "http://%zz"`) {
				t.Errorf("call %d to %s: error %v, want a permanent one naming the URL", i, u, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("call %d to %s: %v", i, u, err)
		}
	}
	if a, b := hits[0].Load(), hits[1].Load(); a != 2 || b != 2 {
		t.Errorf("the servers got %d and %d requests, want 2 and 2", a, b)
	}
}

// memTransport answers every request from memory with a binary-mode reply,
// reading the request's body first, as a server would: the benchmarks
// below measure the client's own work, without the network's noise.
type memTransport struct{}

var memReplyHeader = http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/bench"},
	"Ce-Type": {"dev.knative.sources.ping"}, "Content-Type": {"application/json"}, "Content-Length": {"44"}}

var memReplyBody = []byte(`{"id":1,"message":"hello from the benchmark"}`)

func (memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Header: memReplyHeader.Clone(), ContentLength: int64(len(memReplyBody)),
		Body: io.NopCloser(bytes.NewReader(memReplyBody)), Request: r}, nil
}

// BenchmarkHTTPTargetInMemory is HTTPTarget.Handle through an http.Client
// whose transport answers from memory: building the request from the
// event, and reading and checking the reply as a CloudEvent.
func BenchmarkHTTPTargetInMemory(b *testing.B) {
	target := &flows.HTTPTarget{URL: "http://127.0.0.1:1/", Client: &http.Client{Transport: memTransport{}}}
	e := flowstest.NewEvent("1", "dev.knative.sources.ping", "/bench", map[string]any{"id": 1, "message": "hello"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if reply, err := target.Handle(ctx, e); err != nil || reply == nil {
			b.Fatal(reply, err)
		}
	}
}

// BenchmarkLimitRawInMemory is the reference of BenchmarkHTTPTargetInMemory:
// the same POST with net/http by hand (the binary-mode headers and body
// given), the reply's body read as bytes.
func BenchmarkLimitRawInMemory(b *testing.B) {
	c := &http.Client{Transport: memTransport{}}
	h := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/bench"},
		"Ce-Type": {"dev.knative.sources.ping"}, "Content-Type": {"application/json"}}
	data := []byte(`{"id":1,"message":"hello"}`)
	b.ReportAllocs()
	for b.Loop() {
		req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
