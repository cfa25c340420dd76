package flows_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// Decoding of incoming CloudEvents, at the ingress and in replies: what
// crashes, ends silently or grows without bound in the CloudEvents SDK is
// refused with a reason.

// handleNoPanic calls h.Handle and turns a panic into a test failure, so
// that a regression fails this test instead of the test binary.
func handleNoPanic(t *testing.T, h flows.Handler, e event.Event) (reply *event.Event, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Handle panicked: %v", r)
		}
	}()
	return h.Handle(context.Background(), e)
}

// serveNoPanic serves h in process; a panic fails the test.
func serveNoPanic(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("ServeHTTP panicked: %v", r)
			}
		}()
		h.ServeHTTP(w, req)
	}()
	return w
}

func postWith(header http.Header, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	return req
}

// replyServer answers every request with status, the headers and body.
func replyServer(t *testing.T, status int, header http.Header, body string) string {
	t.Helper()
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	return srv.URL
}

// idOf names a reply in failure messages without its data.
func idOf(e *event.Event) string {
	if e == nil {
		return "<nil>"
	}
	return strconv.Quote(e.ID())
}

func ceHeader(kv ...string) http.Header {
	h := http.Header{"Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}, "Ce-Specversion": {"1.0"}}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(h, kv[i])
		} else {
			h[kv[i]] = []string{kv[i+1]}
		}
	}
	return h
}

// Item 1: a header named "Ce-" made the SDK's binary decoder index out of
// range, at the ingress and in replies.
func TestHeaderWithoutExtensionNameIsRefused(t *testing.T) {
	for _, sv := range []string{"0.3", "1.0"} {
		t.Run("specversion "+sv, func(t *testing.T) {
			h := ceHeader("Ce-Specversion", sv, "Ce-", "x")
			ch := flows.NewInMemoryChannel(1)
			for name, handler := range map[string]http.Handler{
				"ingress":        flows.NewIngress(flows.ChannelSender(ch)),
				"NewHTTPHandler": flows.NewHTTPHandler(flows.Discard),
			} {
				w := serveNoPanic(t, handler, postWith(h, "hi"))
				if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "Ce-") {
					t.Errorf("%s: %d %q, want 400 naming the Ce- header", name, w.Code, w.Body)
				}
			}

			url := replyServer(t, 200, h, "hi")
			reply, err := handleNoPanic(t, flows.HTTP(url), newEvent("1", nil))
			if reply != nil || err == nil || !flows.IsPermanent(err) || !strings.Contains(err.Error(), "malformed") {
				t.Errorf("reply %s, err %v; want a permanent malformed-reply error", idOf(reply), err)
			}
		})
	}
}

// Item 1: a header with no value (which only a Go client or transport can
// make) must not crash the decoder either.
func TestHeaderWithoutValueDoesNotPanic(t *testing.T) {
	for _, sv := range []string{"0.3", "1.0"} {
		h := ceHeader("Ce-Specversion", sv)
		h["Ce-Empty"] = []string{}
		h["X-Other"] = nil
		target := &flows.HTTPTarget{URL: "http://127.0.0.1:1", Client: &http.Client{Transport: replyTransport{200, h, []byte("hi")}}}
		reply, err := handleNoPanic(t, target, newEvent("1", nil))
		if err != nil || reply == nil || reply.ID() != "1" {
			t.Errorf("%s: reply %s, err %v; want the reply, the empty headers ignored", sv, idOf(reply), err)
		}
	}
}

// Item 2: an unknown specversion is a malformed reply, not "no event".
func TestReplyWithUnknownSpecversionIsMalformed(t *testing.T) {
	url := replyServer(t, 200, ceHeader("Ce-Specversion", "9.9"), "{}")
	reply, err := handleNoPanic(t, flows.HTTP(url), newEvent("1", nil))
	if reply != nil || err == nil || !flows.IsPermanent(err) || !strings.Contains(err.Error(), `"9.9"`) {
		t.Fatalf("reply %s, err %v; want a permanent error naming specversion 9.9", idOf(reply), err)
	}

	dls, next := flowstest.NewRecorder(), flowstest.NewRecorder()
	f := start(t, &flows.Sequence{
		Steps:    []flows.Step{{Subscriber: flows.HTTP(url)}, {Subscriber: next}},
		Delivery: &flows.Delivery{Retry: 2, DeadLetter: dls},
	})
	if _, err := f.Handle(context.Background(), newEvent("1", nil)); err != nil {
		t.Fatal(err)
	}
	dl := dls.MustWait(t, 1)[0]
	if dl.ID() != "1" || dl.Extensions()[flows.ExtensionErrorDest] != url {
		t.Errorf("dead letter %v, want event 1 from %s", dl, url)
	}
	if next.Len() != 0 {
		t.Errorf("the next step got %d events", next.Len())
	}

	// Kept: a 2xx that carries no CloudEvent at all is "no event".
	for _, h := range []http.Header{{}, {"Content-Type": {"text/plain"}}} {
		url := replyServer(t, 200, h, "ok")
		if reply, err := handleNoPanic(t, flows.HTTP(url), newEvent("1", nil)); reply != nil || err != nil {
			t.Errorf("%v: reply %s, err %v; want no event", h, idOf(reply), err)
		}
	}
}

// invalidReplies are changes that make an event invalid, but for those
// whose name ends with a space, which keep it valid.
func invalidReplies() map[string]func(e *event.Event) {
	return map[string]func(e *event.Event){
		"no id": func(e *event.Event) { e.SetID("") },
		"no source": func(e *event.Event) {
			e.Context.(*event.EventContextV1).Source = event.New().Context.(*event.EventContextV1).Source
		},
		"id not UTF-8":     func(e *event.Event) { e.SetID("\xff\xfe") },
		"type not UTF-8":   func(e *event.Event) { e.SetType("t\xc3(") },
		"extension":        func(e *event.Event) { e.SetExtension("ext", "\xff") },
		"subject":          func(e *event.Event) { e.SetSubject("s\xff") },
		"source query":     func(e *event.Event) { e.SetSource("/s?q=\xff") },
		"no attributes":    func(e *event.Event) { e.Context = nil },
		"valid extension ": func(e *event.Event) { e.SetExtension("when", "ok") },
	}
}

// Item 3: a Go handler's invalid reply fails the delivery for good; the
// dead-letter sink gets the original event, naming the subscriber.
func TestInvalidRepliesOfGoHandlersAreDeadLettered(t *testing.T) {
	for name, spoil := range invalidReplies() {
		if strings.HasSuffix(name, " ") {
			continue // valid variants, for the other tests
		}
		t.Run(name, func(t *testing.T) {
			var attempts atomic.Int32
			bad := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
				attempts.Add(1)
				r := e.Clone()
				r.SetID("reply")
				spoil(&r)
				return &r, nil
			})
			t.Run("sequence", func(t *testing.T) {
				attempts.Store(0)
				dls, next := flowstest.NewRecorder(), flowstest.NewRecorder()
				f := start(t, &flows.Sequence{Name: "seq",
					Steps:    []flows.Step{{Subscriber: bad}, {Subscriber: next}},
					Delivery: &flows.Delivery{Retry: 2, DeadLetter: dls},
				})
				if _, err := f.Handle(context.Background(), newEvent("orig", nil)); err != nil {
					t.Fatalf("Handle: %v, want nil (dead-lettered)", err)
				}
				checkDeadLetter(t, dls, "seq/steps[0]")
				if next.Len() != 0 || attempts.Load() != 1 {
					t.Errorf("next step got %d events after %d attempts; want none after 1", next.Len(), attempts.Load())
				}
			})
			t.Run("sequence reply", func(t *testing.T) {
				attempts.Store(0)
				dls, reply := flowstest.NewRecorder(), flowstest.NewRecorder()
				f := start(t, &flows.Sequence{Name: "seq",
					Steps: []flows.Step{{Subscriber: bad}}, Reply: reply,
					Delivery: &flows.Delivery{DeadLetter: dls},
				})
				f.Handle(context.Background(), newEvent("orig", nil))
				checkDeadLetter(t, dls, "seq/steps[0]")
				if reply.Len() != 0 {
					t.Errorf("the reply got %d events", reply.Len())
				}
			})
			t.Run("parallel branch", func(t *testing.T) {
				dls, reply := flowstest.NewRecorder(), flowstest.NewRecorder()
				f := start(t, &flows.Parallel{Name: "par",
					Branches: []flows.Branch{{Subscriber: bad, Reply: reply, Delivery: &flows.Delivery{Retry: 1, DeadLetter: dls}}},
				})
				f.Handle(context.Background(), newEvent("orig", nil))
				checkDeadLetter(t, dls, "par/branches[0]")
				if reply.Len() != 0 {
					t.Errorf("the branch's reply got %d events", reply.Len())
				}
			})
			t.Run("parallel filter", func(t *testing.T) {
				sub := flowstest.NewRecorder()
				f := start(t, &flows.Parallel{Name: "par", Branches: []flows.Branch{{Filter: bad, Subscriber: sub}}})
				_, err := f.Handle(context.Background(), newEvent("orig", nil))
				var de *flows.DeliveryError
				if !errors.As(err, &de) || !errors.Is(err, flows.ErrInvalidEvent) || de.Destination != "par/branches[0].filter" {
					t.Errorf("Handle: %v; want a DeliveryError of the filter wrapping ErrInvalidEvent", err)
				}
				if sub.Len() != 0 {
					t.Errorf("the branch's subscriber got %d events", sub.Len())
				}
			})
			t.Run("nested flow", func(t *testing.T) {
				attempts.Store(0)
				dls, next := flowstest.NewRecorder(), flowstest.NewRecorder()
				inner := start(t, &flows.Sequence{Name: "inner", Steps: []flows.Step{{Subscriber: next}}})
				f := start(t, &flows.Sequence{Name: "outer",
					Steps: []flows.Step{{Subscriber: bad}}, Reply: inner,
					Delivery: &flows.Delivery{DeadLetter: dls},
				})
				f.Handle(context.Background(), newEvent("orig", nil))
				checkDeadLetter(t, dls, "outer/steps[0]")
				if next.Len() != 0 {
					t.Errorf("the nested flow got %d events", next.Len())
				}
			})
		})
	}
}

func checkDeadLetter(t *testing.T, dls *flowstest.Recorder, dest string) {
	t.Helper()
	// The flow's Handle has returned: the dead letter, if any, was sent.
	got := dls.Events()
	if len(got) != 1 {
		t.Fatalf("%d dead letters, want 1", len(got))
	}
	dl := got[0]
	if dl.ID() != "orig" || dl.Extensions()[flows.ExtensionErrorDest] != dest {
		t.Fatalf("dead letter %s with knativeerrordest %v; want the original event from %s", dl.ID(), dl.Extensions()[flows.ExtensionErrorDest], dest)
	}
	data, _ := base64.StdEncoding.DecodeString(fmt.Sprint(dl.Extensions()[flows.ExtensionErrorData]))
	if !strings.Contains(string(data), "invalid") {
		t.Errorf("knativeerrordata %q does not say the reply is invalid", data)
	}
}

// Item 4: CloudEvents String attributes are Unicode: invalid UTF-8 is
// refused at the ingress, in replies and by Flow.Send.
func TestInvalidUTF8IsRefused(t *testing.T) {
	ch := flows.NewInMemoryChannel(1)
	ingress := flows.NewIngress(flows.ChannelSender(ch))
	binary := map[string]http.Header{
		"id":        ceHeader("Ce-Id", "\xff\xfe"),
		"type":      ceHeader("Ce-Type", "t\xc3("),
		"extension": ceHeader("Ce-Ext", "\xff"),
		"subject":   ceHeader("Ce-Subject", "\xc3"),
		"0.3 id":    ceHeader("Ce-Specversion", "0.3", "Ce-Id", "\xff"),
	}
	structured := map[string]string{
		"id":        "{\"specversion\":\"1.0\",\"id\":\"\xff\xfe\",\"source\":\"/s\",\"type\":\"t\"}",
		"type":      "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\xc3(\"}",
		"extension": "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\",\"ext\":\"\xff\"}",
		"source":    "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s?\xff\",\"type\":\"t\"}",
		"0.3 id":    "{\"specversion\":\"0.3\",\"id\":\"\xff\",\"source\":\"/s\",\"type\":\"t\"}",
	}
	for name, h := range binary {
		w := serveNoPanic(t, ingress, postWith(h, "{}"))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "UTF-8") {
			t.Errorf("binary %s: %d %q, want 400 naming UTF-8", name, w.Code, w.Body)
		}
		url := replyServer(t, 200, h, "{}")
		if reply, err := handleNoPanic(t, flows.HTTP(url), newEvent("1", nil)); err == nil || !flows.IsPermanent(err) || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("binary reply %s: reply %s, err %v; want a permanent error naming UTF-8", name, idOf(reply), err)
		}
	}
	for name, body := range structured {
		h := http.Header{"Content-Type": {"application/cloudevents+json"}}
		w := serveNoPanic(t, ingress, postWith(h, body))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "UTF-8") {
			t.Errorf("structured %s: %d %q, want 400 naming UTF-8", name, w.Code, w.Body)
		}
		url := replyServer(t, 200, h, body)
		if reply, err := handleNoPanic(t, flows.HTTP(url), newEvent("1", nil)); err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("structured reply %s: reply %s, err %v; want an error naming UTF-8", name, idOf(reply), err)
		}
	}
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.Discard}}})
	for name, spoil := range invalidReplies() {
		e := newEvent("1", nil)
		spoil(&e)
		err := f.Send(context.Background(), e)
		if valid := strings.HasSuffix(name, " "); valid != (err == nil) {
			t.Errorf("Send with %s: %v", name, err)
		} else if !valid && !errors.Is(err, flows.ErrInvalidEvent) {
			t.Errorf("Send with %s: %v, want ErrInvalidEvent", name, err)
		}
	}
}

// countingTransport counts the bytes read from response bodies.
type countingTransport struct{ read atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Body = &countingReplyBody{resp.Body, &c.read}
	}
	return resp, err
}

type countingReplyBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingReplyBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// endlessServer answers 200 with CloudEvent headers and a body that goes on
// until the client goes away (or 1 GiB), with or without a Content-Length.
func endlessServer(t *testing.T, contentLength string) string {
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range ceHeader() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if contentLength != "" {
			w.Header().Set("Content-Length", contentLength)
		}
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for range (1 << 30) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	return srv.URL
}

// Item 5: reply bodies are limited; past the limit the attempt fails with
// ErrTooLarge and the body is not read further.
func TestReplyBodyLimit(t *testing.T) {
	const limit = 256 << 10
	for _, cl := range []string{"", strconv.Itoa(1 << 30)} {
		t.Run("Content-Length "+cl, func(t *testing.T) {
			ct := &countingTransport{}
			target := &flows.HTTPTarget{URL: endlessServer(t, cl), MaxReplyBytes: limit, Client: &http.Client{Transport: ct}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			reply, err := target.Handle(ctx, newEvent("1", nil))
			runtime.ReadMemStats(&after)
			if reply != nil || !errors.Is(err, flows.ErrTooLarge) || !flows.IsPermanent(err) || !strings.Contains(err.Error(), strconv.Itoa(limit)) {
				t.Fatalf("reply %s, err %v; want a permanent ErrTooLarge naming the limit %d", idOf(reply), err, limit)
			}
			if n := ct.read.Load(); n > limit+64<<10 {
				t.Errorf("read %d bytes of the reply, limit %d", n, limit)
			}
			// Allocated by the whole process meanwhile, the server included.
			if n := after.TotalAlloc - before.TotalAlloc; n > 4*limit+4<<20 {
				t.Errorf("%d bytes allocated while reading the reply, limit %d", n, limit)
			}
		})
	}

	// The default is the ingress's limit; a flow option sets it for the
	// flow's targets; a target's own field wins.
	big := strings.Repeat("x", flows.DefaultMaxBodyBytes+1)
	url := replyServer(t, 200, ceHeader(), big)
	if _, err := handleNoPanic(t, flows.HTTP(url), newEvent("1", nil)); !errors.Is(err, flows.ErrTooLarge) {
		t.Errorf("a reply of DefaultMaxBodyBytes+1: %v, want ErrTooLarge", err)
	}
	url = replyServer(t, 200, ceHeader(), big[:flows.DefaultMaxBodyBytes])
	if reply, err := handleNoPanic(t, flows.HTTP(url), newEvent("1", nil)); err != nil || reply == nil || len(reply.Data()) != flows.DefaultMaxBodyBytes {
		t.Errorf("a reply of DefaultMaxBodyBytes: %v", err)
	}
	url = replyServer(t, 200, ceHeader(), big[:2048])
	for _, tc := range []struct {
		target  int64
		flow    int64
		tooLong bool
	}{{0, 1024, true}, {4096, 1024, false}, {1024, 0, true}, {0, 4096, false}} {
		dls, next := flowstest.NewRecorder(), flowstest.NewRecorder()
		f := start(t, &flows.Sequence{
			Steps:    []flows.Step{{Subscriber: &flows.HTTPTarget{URL: url, MaxReplyBytes: tc.target}}, {Subscriber: next}},
			Delivery: &flows.Delivery{Retry: 3, DeadLetter: dls},
		}, flows.WithMaxReplyBytes(tc.flow))
		f.Handle(context.Background(), newEvent("1", nil))
		switch {
		case tc.tooLong && (dls.Len() != 1 || next.Len() != 0):
			t.Errorf("target %d, flow %d: %d dead letters, %d replies; want the event dead-lettered", tc.target, tc.flow, dls.Len(), next.Len())
		case tc.tooLong:
			data, _ := base64.StdEncoding.DecodeString(fmt.Sprint(dls.Events()[0].Extensions()[flows.ExtensionErrorData]))
			if !strings.Contains(string(data), "1024") {
				t.Errorf("knativeerrordata %q does not name the limit", data)
			}
		case dls.Len() != 0 || next.Len() != 1:
			t.Errorf("target %d, flow %d: %d dead letters, %d replies; want the reply", tc.target, tc.flow, dls.Len(), next.Len())
		}
	}
}

// Item 8: a reply body cut short is a transport error, retried; only a
// body read whole that is not a valid event is malformed.
func TestReplyBodyCutShortIsRetried(t *testing.T) {
	for _, how := range []string{"reset", "timeout"} {
		t.Run(how, func(t *testing.T) {
			var attempts atomic.Int32
			srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				n := attempts.Add(1)
				for k, v := range ceHeader("Ce-Id", "reply") {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Type", "application/json")
				body := `{"message":"whole"}`
				if n < 3 {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					io.WriteString(w, body[:5])
					w.(http.Flusher).Flush()
					if how == "timeout" {
						<-r.Context().Done()
					}
					panic(http.ErrAbortHandler) // cut the connection
				}
				io.WriteString(w, body)
			}))
			dls, next := flowstest.NewRecorder(), flowstest.NewRecorder()
			d := &flows.Delivery{Retry: 2, DeadLetter: dls}
			if how == "timeout" {
				d.Timeout = 200 * time.Millisecond
			}
			f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(srv.URL), Delivery: d}, {Subscriber: next}}})
			if _, err := f.Handle(context.Background(), newEvent("1", nil)); err != nil {
				t.Fatal(err)
			}
			if next.Len() != 1 || message(t, next.Events()[0]) != "whole" || attempts.Load() != 3 || dls.Len() != 0 {
				t.Errorf("after %d attempts: %d replies, %d dead letters; want the reply after 3 attempts", attempts.Load(), next.Len(), dls.Len())
			}
		})
	}
}
