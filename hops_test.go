package flows_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// TestOnlyTheSubscriberIsAskedForAReply checks Knative's rule for Prefer:
// the subscriber gets "Prefer: reply"; the reply destination and the
// dead-letter sink do not, even when the same HTTPTarget is a subscriber
// elsewhere; and the reply hop carries the subscriber's pass-through
// response headers.
func TestOnlyTheSubscriberIsAskedForAReply(t *testing.T) {
	var mu sync.Mutex
	prefer := map[string][]string{} // path -> Prefer header of each request
	var replyHeader http.Header
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		prefer[r.URL.Path] = append(prefer[r.URL.Path], r.Header.Get("Prefer"))
		if r.URL.Path == "/reply" && replyHeader == nil { // f's reply hop
			replyHeader = r.Header.Clone()
		}
		mu.Unlock()
		switch r.URL.Path {
		case "/subscriber":
			w.Header().Set("Knative-Answer", "42")
			for _, k := range []string{"Ce-Specversion", "Ce-Id", "Ce-Source", "Ce-Type"} {
				w.Header().Set(k, r.Header.Get(k))
			}
			w.WriteHeader(200)
		case "/failing":
			w.WriteHeader(400)
		default:
			w.WriteHeader(202)
		}
	}))
	shared := flows.HTTP(srv.URL + "/reply") // the reply here, a subscriber below
	dls := flows.HTTP(srv.URL + "/dls")
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(srv.URL + "/subscriber")}}, Reply: shared})
	g := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: shared}}})
	h := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(srv.URL + "/failing"),
		Delivery: &flows.Delivery{DeadLetter: dls}}}})
	for _, fl := range []*flows.Flow{f, g, h} {
		if _, err := fl.Handle(context.Background(), newEvent("1", nil)); err != nil {
			t.Fatalf("%s: %v", fl.Name(), err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string][]string{
		"/subscriber": {"reply"},
		"/reply":      {"", "reply"}, // as f's reply, then as g's subscriber
		"/failing":    {"reply"},
		"/dls":        {""},
	}
	if fmt.Sprint(prefer) != fmt.Sprint(want) {
		t.Errorf("Prefer headers by path = %q, want %q", prefer, want)
	}
	if replyHeader.Get("Knative-Answer") != "42" {
		t.Errorf("reply hop headers = %v, want the subscriber's pass-through response headers", replyHeader)
	}
}

// closedURL is the URL of a port where nothing listens.
func closedURL(t *testing.T, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + path
}

// TestTransportErrorDeadLetterData checks knativeerrordata for a delivery
// that got no HTTP answer: "dispatch error: " and the client's error, as
// Knative writes it; a Go handler's error keeps its own text.
func TestTransportErrorDeadLetterData(t *testing.T) {
	url := closedURL(t, "/secret-path")
	dls := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(url), Delivery: &flows.Delivery{DeadLetter: dls}}}})
	if _, err := f.Handle(context.Background(), newEvent("1", nil)); err != nil {
		t.Fatal(err)
	}
	data := string(flowstest.ErrorData(dls.MustWait(t, 1)[0]))
	if want := fmt.Sprintf("dispatch error: Post %q: dial tcp", url); !strings.HasPrefix(data, want) || !strings.Contains(data, "connection refused") {
		t.Errorf("knativeerrordata = %q, want %q... connection refused", data, want)
	}

	goErr := flowstest.NewRecorder()
	g := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		return nil, errors.New("stock service down")
	}), Delivery: &flows.Delivery{DeadLetter: goErr}}}})
	g.Handle(context.Background(), newEvent("2", nil))
	if data := string(flowstest.ErrorData(goErr.MustWait(t, 1)[0])); data != "stock service down" {
		t.Errorf("knativeerrordata of a Go error = %q, want its text", data)
	}
}

// logBuffer is a *slog.Logger writing into a buffer, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// internals are what a failure's answer must not tell the client.
var internals = []string{"127.0.0.1", "secret-path", "dial", "refused", "10.0.0.7", "db password"}

func leaks(body string) []string {
	var out []string
	for _, s := range internals {
		if strings.Contains(body, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestSynchronousIngressDoesNotTellInternals checks that a synchronous
// ingress whose delivery failed answers 500 with a generic reason, while
// the logger gets the details.
func TestSynchronousIngressDoesNotTellInternals(t *testing.T) {
	var logs logBuffer
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(closedURL(t, "/secret-path"))}}})
	url := serveIngress(t, f, flows.IngressSynchronous(), flows.IngressLogger(logs.logger()))
	status, body, _ := request(t, "POST", url, binaryHeaders, "{}")
	if status != 500 || body != "the event could not be delivered" {
		t.Errorf("failed delivery: %d %q, want 500 \"the event could not be delivered\"", status, body)
	}
	if l := leaks(body); l != nil {
		t.Errorf("the answer tells the client %q", l)
	}
	if !strings.Contains(logs.String(), "secret-path") || !strings.Contains(logs.String(), "refused") {
		t.Errorf("the logger did not get the details: %s", logs.String())
	}
	// Bad input still gets its reason.
	if status, body, _ := request(t, "POST", url, with(binaryHeaders, "Ce-Id", ""), "{}"); status != 400 || !strings.Contains(body, "id") {
		t.Errorf("missing id: %d %q, want 400 naming the id", status, body)
	}
}

// TestNewHTTPHandlerDoesNotTellInternals checks the failures of
// NewHTTPHandler: their statuses stay, their bodies are generic, the
// logger gets the details; 400s for bad input keep their reason.
func TestNewHTTPHandlerDoesNotTellInternals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"error", errors.New("db password rejected by 10.0.0.7"), 500},
		{"permanent", flows.Permanent(errors.New("db password rejected by 10.0.0.7")), 400},
		{"HTTPError", &flows.HTTPError{URL: "http://10.0.0.7/secret-path", StatusCode: 502, Body: []byte("db password")}, 502},
		{"transport error", nil, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			var h flows.Handler = flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, tc.err })
			if tc.err == nil {
				h = flows.HTTP(closedURL(t, "/secret-path"))
			}
			w := httptest.NewRecorder()
			flows.NewHTTPHandler(h, flows.IngressLogger(logs.logger())).ServeHTTP(w, binaryRequest(nopBody("{}"), 2))
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			if l := leaks(w.Body.String()); l != nil || !strings.Contains(w.Body.String(), "could not be handled") {
				t.Errorf("answer %q: tells %q; want a generic reason", w.Body, l)
			}
			if l := leaks(logs.String()); l == nil {
				t.Errorf("the logger did not get the details: %s", logs.String())
			}
		})
	}
	w := httptest.NewRecorder()
	r := binaryRequest(nopBody("{}"), 2)
	r.Header.Del("Ce-Source")
	flows.NewHTTPHandler(flows.Discard).ServeHTTP(w, r)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "source") {
		t.Errorf("missing source: %d %q, want 400 naming the source", w.Code, w.Body)
	}
}

type stringBody struct{ *strings.Reader }

func (stringBody) Close() error { return nil }

func nopBody(s string) stringBody { return stringBody{strings.NewReader(s)} }

// roundTripFunc answers requests in process, so that HTTP targets can run
// inside a synctest bubble.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestPingDoesNotAskItsSinkForAReply checks that a Ping's sink and its
// dead-letter sink are not sent "Prefer: reply": Knative's ping adapter
// sends its events and ignores what comes back.
func TestPingDoesNotAskItsSinkForAReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		prefer := map[string][]string{}
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			prefer[r.URL.Path] = append(prefer[r.URL.Path], r.Header.Get("Prefer"))
			mu.Unlock()
			status := http.StatusAccepted
			if r.URL.Path == "/sink" {
				status = http.StatusBadRequest // not retried: on to the dead-letter sink
			}
			return &http.Response{StatusCode: status, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
		})}
		src, err := (&flows.Ping{
			Name:     "ping",
			Schedule: "* * * * *",
			Sink:     &flows.HTTPTarget{URL: "http://sink.test/sink", Client: client},
			Delivery: &flows.Delivery{DeadLetter: &flows.HTTPTarget{URL: "http://sink.test/dls", Client: client}},
		}).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(90 * time.Second)
		src.Shutdown(context.Background())
		mu.Lock()
		defer mu.Unlock()
		if len(prefer["/sink"]) != 1 || len(prefer["/dls"]) != 1 {
			t.Fatalf("requests: %v; want one to the sink and one to the dead-letter sink", prefer)
		}
		for path, p := range prefer {
			if p[0] != "" {
				t.Errorf("%s was sent Prefer: %q; want none", path, p[0])
			}
		}
	})
}
