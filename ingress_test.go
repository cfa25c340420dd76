package flows_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// serveIngress serves a flow's ingress on 127.0.0.1.
func serveIngress(t *testing.T, dst flows.Sender, opts ...flows.IngressOption) string {
	t.Helper()
	srv, err := flows.ListenAndServe("127.0.0.1:0", flows.NewIngress(dst, opts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.URL()
}

func request(t *testing.T, method, url string, header map[string]string, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
}

var binaryHeaders = map[string]string{
	"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/curl", "Ce-Type": "greeting", "Content-Type": "application/json",
}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}

func TestIngressAcceptsBinaryAndStructuredEvents(t *testing.T) {
	out := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: appender(" - Handled by 0")}}, Reply: out})
	url := serveIngress(t, f)

	if status, body, _ := request(t, "POST", url, binaryHeaders, `{"message":"binary"}`); status != 202 || body != "" {
		t.Errorf("binary: %d %q, want 202 with no body", status, body)
	}
	structured := `{"specversion":"1.0","id":"2","source":"/curl","type":"greeting","datacontenttype":"application/json","data":{"message":"structured"}}`
	if status, _, _ := request(t, "POST", url, map[string]string{"Content-Type": "application/cloudevents+json"}, structured); status != 202 {
		t.Errorf("structured: %d", status)
	}
	got := out.MustWait(t, 2)
	msgs := map[string]string{}
	for _, e := range got {
		msgs[e.ID()] = message(t, e)
	}
	if msgs["1"] != "binary - Handled by 0" || msgs["2"] != "structured - Handled by 0" {
		t.Errorf("delivered %v", msgs)
	}
}

func TestIngressRefusesBadRequests(t *testing.T) {
	var reached atomic.Int32
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		reached.Add(1)
		return nil, nil
	})}}})
	url := serveIngress(t, f, flows.IngressMaxBodyBytes(1024))
	big := strings.Repeat("x", 2048)
	cases := []struct {
		name   string
		method string
		header map[string]string
		body   string
		status int
		reason string
	}{
		{"GET", "GET", nil, "", 405, "only POST"},
		{"PUT", "PUT", binaryHeaders, "{}", 405, "only POST"},
		{"plain text", "POST", map[string]string{"Content-Type": "text/plain"}, "hello", 400, "not a CloudEvent"},
		{"missing id", "POST", with(binaryHeaders, "Ce-Id", ""), "{}", 400, "id"},
		{"missing source", "POST", with(binaryHeaders, "Ce-Source", ""), "{}", 400, "source"},
		{"missing type", "POST", with(binaryHeaders, "Ce-Type", ""), "{}", 400, "type"},
		{"unknown specversion", "POST", with(binaryHeaders, "Ce-Specversion", "2.0"), "{}", 400, `unsupported specversion "2.0"`},
		{"structured malformed JSON", "POST", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","id":`, 400, "malformed CloudEvent"},
		{"structured missing type", "POST", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","id":"1","source":"/x"}`, 400, "type"},
		{"structured unknown format", "POST", map[string]string{"Content-Type": "application/cloudevents+xml"}, `<event/>`, 415, "unsupported CloudEvents format"},
		{"batch", "POST", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, `[]`, 415, "batches"},
		{"binary body too large", "POST", binaryHeaders, big, 413, "exceeds the limit"},
		{"structured body too large", "POST", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","data":"` + big + `"}`, 413, "exceeds the limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := request(t, tc.method, url, tc.header, tc.body)
			if status != tc.status || !strings.Contains(body, tc.reason) {
				t.Errorf("got %d %q, want %d with a reason mentioning %q", status, body, tc.status, tc.reason)
			}
		})
	}
	if reached.Load() != 0 {
		t.Errorf("%d bad requests reached the subscriber", reached.Load())
	}
}

func TestIngressTooLargeWithoutContentLengthAndTruncatedBodies(t *testing.T) {
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}})
	url := serveIngress(t, f, flows.IngressMaxBodyBytes(1024))
	// Chunked body: no Content-Length, so the limit is found while reading.
	pr, pw := io.Pipe()
	go func() {
		pw.Write(bytes.Repeat([]byte("x"), 4096))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", url, pr)
	for k, v := range binaryHeaders {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked oversized body: %d, want 413", resp.StatusCode)
	}

	// A body shorter than its Content-Length, then the client hangs up.
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nCe-Specversion: 1.0\r\nCe-Id: 1\r\nCe-Source: /x\r\nCe-Type: t\r\nContent-Length: 100\r\n\r\n{\"trunc")
	conn.(*net.TCPConn).CloseWrite()
	reply, _ := io.ReadAll(conn)
	conn.Close()
	if !bytes.HasPrefix(reply, []byte("HTTP/1.1 400")) {
		t.Errorf("truncated body answered %q, want 400", firstLine(reply))
	}
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\r\n"))
	return string(line)
}

func TestIngressOptions(t *testing.T) {
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}})
	status, _, h := request(t, "OPTIONS", serveIngress(t, f), map[string]string{"WebHook-Request-Origin": "example.com"}, "")
	if status != 200 || h.Get("Allow") != "POST, OPTIONS" || h.Get("WebHook-Allowed-Origin") != "*" {
		t.Errorf("OPTIONS: %d %v", status, h)
	}
}

func TestIngressModes(t *testing.T) {
	release := make(chan struct{})
	failing := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		<-release
		if e.ID() == "bad" {
			return nil, errors.New("step failed")
		}
		return nil, nil
	})
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: failing}}})
	async, sync := serveIngress(t, f), serveIngress(t, f, flows.IngressSynchronous())

	// Asynchronous: 202 while the step has not even run.
	if status, _, _ := request(t, "POST", async, with(binaryHeaders, "Ce-Id", "a"), "{}"); status != 202 {
		t.Errorf("async: %d, want 202 at once", status)
	}
	// Synchronous: the answer waits for the flow, and reports its failure.
	done := make(chan int)
	go func() {
		status, _, _ := request(t, "POST", sync, with(binaryHeaders, "Ce-Id", "bad"), "{}")
		done <- status
	}()
	select {
	case status := <-done:
		t.Fatalf("sync answered %d before the flow finished", status)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if status := <-done; status != 500 {
		t.Errorf("sync with a failed delivery: %d, want 500", status)
	}
	if status, _, _ := request(t, "POST", sync, with(binaryHeaders, "Ce-Id", "good"), "{}"); status != 202 {
		t.Errorf("sync with a delivered event: %d, want 202", status)
	}
}

func TestIngressAfterShutdownAndWhenFull(t *testing.T) {
	block := make(chan struct{})
	f, _ := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, nil
	})}}}).Start(context.Background(), flows.WithCapacity(1))
	url := serveIngress(t, f)
	if status, _, _ := request(t, "POST", url, binaryHeaders, "{}"); status != 202 {
		t.Fatalf("first: %d", status)
	}
	// The channel is full: the request waits until its own context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader("{}"))
	for k, v := range binaryHeaders {
		req.Header.Set(k, v)
	}
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("request to a full flow: %v, want it held back", err)
	}
	close(block)
	f.Shutdown(context.Background())
	if status, body, _ := request(t, "POST", url, binaryHeaders, "{}"); status != 503 {
		t.Errorf("after shutdown: %d %q, want 503", status, body)
	}
}

func TestPassThroughHeaders(t *testing.T) {
	var toSubscriber, toReply http.Header
	subscriber := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		toSubscriber = r.Header.Clone()
		w.Header().Set("Knative-Answer", "42")
		w.Header().Set("X-Private", "no")
		for _, k := range []string{"Ce-Specversion", "Ce-Id", "Ce-Source", "Ce-Type"} {
			w.Header().Set(k, r.Header.Get(k))
		}
		w.WriteHeader(200)
	}))
	defer subscriber.Close()
	reply := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		toReply = r.Header.Clone()
		w.WriteHeader(202)
	}))
	defer reply.Close()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: appender("")}, {Subscriber: flows.HTTP(subscriber.URL)}}, Reply: flows.HTTP(reply.URL)})
	url := serveIngress(t, f, flows.IngressSynchronous())
	status, _, _ := request(t, "POST", url, with(binaryHeaders, "X-Request-Id", "req-1", "Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Knative-Foo", "bar", "X-B3-Traceid", "abc", "Authorization", "secret", "Ce-Extra", "raw"), `{}`)
	if status != 202 {
		t.Fatalf("status %d", status)
	}
	for k, want := range map[string]string{"X-Request-Id": "req-1", "Knative-Foo": "bar", "X-B3-Traceid": "abc",
		"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Authorization": "", "Prefer": "reply"} {
		if got := toSubscriber.Get(k); got != want {
			t.Errorf("subscriber got %s = %q, want %q", k, got, want)
		}
	}
	if toReply.Get("Knative-Answer") != "42" || toReply.Get("X-Private") != "" || toReply.Get("X-Request-Id") != "" {
		t.Errorf("reply hop headers = %v: want the subscriber's pass-through response headers only", toReply)
	}
}

func TestHTTPTargetTLSAndHeaderHook(t *testing.T) {
	var auth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.WriteHeader(202)
	}))
	defer srv.Close()
	// Without the server's CA, the delivery fails (and is retried as a transport error).
	if _, err := flows.HTTP(srv.URL).Handle(context.Background(), newEvent("1", nil)); err == nil || flows.IsPermanent(err) {
		t.Errorf("untrusted certificate: err = %v, want a retryable failure", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	target := &flows.HTTPTarget{URL: srv.URL, TLSConfig: &tls.Config{RootCAs: pool},
		Header: func(_ context.Context, h http.Header) error { h.Set("Authorization", "Bearer t0k3n"); return nil }}
	if _, err := target.Handle(context.Background(), newEvent("1", nil)); err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer t0k3n" {
		t.Errorf("Authorization = %q", auth)
	}
	failing := &flows.HTTPTarget{URL: srv.URL, Header: func(context.Context, http.Header) error { return errors.New("no token") }}
	if _, err := failing.Handle(context.Background(), newEvent("1", nil)); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("hook error: %v", err)
	}
}

func TestChannelSenderServesAChannel(t *testing.T) {
	ch := flows.NewInMemoryChannel(10)
	recv, _ := ch.Subscribe("a")
	url := serveIngress(t, flows.ChannelSender(ch))
	if status, _, _ := request(t, "POST", url, binaryHeaders, `{"message":"x"}`); status != 202 {
		t.Fatal(status)
	}
	m, err := recv.Receive(context.Background())
	if err != nil || m.Event().ID() != "1" {
		t.Fatalf("received %v, %v", m, err)
	}
	m.Ack()
}

func TestServerTimeoutsAndTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	cert := srv.TLS.Certificates[0]
	srv.Close()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}})
	s, err := flows.ListenAndServe("127.0.0.1:0", flows.NewIngress(f), flows.ServerTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %s", s.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest("POST", s.URL(), strings.NewReader("{}"))
	for k, v := range binaryHeaders {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Errorf("https ingress: %d", resp.StatusCode)
	}
	if _, err := flows.ListenAndServe("256.0.0.1:0", nil); err == nil {
		t.Error("ListenAndServe on a bad address succeeded")
	}
}

func TestHandlerMayCallHTTPTargetsConcurrently(t *testing.T) {
	// A handler reached with pass-through headers fans out to two HTTP
	// services at once: each gets the headers, and the calls share nothing
	// else (go test -race).
	var got atomic.Int32
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Request-Id") == "req-1" {
			got.Add(1)
		}
		w.Header().Set("Knative-Answer", "42")
		w.WriteHeader(202)
	}))
	a, b := flows.HTTP(srv.URL+"/a"), flows.HTTP(srv.URL+"/b")
	fanOut := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		errc := make(chan error, 2)
		for _, target := range []*flows.HTTPTarget{a, b} {
			go func() { _, err := target.Handle(ctx, e); errc <- err }()
		}
		return nil, errors.Join(<-errc, <-errc)
	})
	h := flows.NewHTTPHandler(fanOut)
	for range 10 {
		req := httptest.NewRequest("POST", "/", strings.NewReader("{}"))
		for k, v := range with(binaryHeaders, "X-Request-Id", "req-1") {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 202 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	if got.Load() != 20 {
		t.Errorf("%d of 20 calls carried X-Request-Id", got.Load())
	}
}
