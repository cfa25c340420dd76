package flows

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
)

// The binary-mode fast path must write and read exactly what the SDK does.

func codecEvents() map[string]event.Event {
	base := func() event.Event {
		e := event.New()
		e.SetID("1")
		e.SetSource("/src")
		e.SetType("t")
		return e
	}
	events := map[string]event.Event{"bare": base()}
	add := func(name string, change func(e *event.Event)) {
		e := base()
		change(&e)
		events[name] = e
	}
	add("json data", func(e *event.Event) { e.SetData(event.ApplicationJSON, map[string]string{"message": "hi"}) })
	add("bytes", func(e *event.Event) { e.SetData("application/octet-stream", []byte{0, 1, 2}) })
	add("every attribute", func(e *event.Event) {
		e.SetSource("https://example.com/a b?c=d")
		e.SetSubject("subject")
		e.SetDataSchema("https://example.com/schema")
		e.SetTime(time.Date(2026, 11, 26, 6, 0, 0, 123456789, time.FixedZone("x", 3600)))
		e.SetData("text/plain; charset=utf-8", "text")
	})
	add("extensions", func(e *event.Event) {
		e.SetExtension("knativeerrorcode", 500)
		e.SetExtension("knativeerrordest", "http://dest")
		e.SetExtension("flag", true)
		e.SetExtension("when", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		e.SetExtension("where", types.URI{URL: *mustURL("https://x/y")})
		e.SetExtension("blob", []byte("b"))
		e.SetExtension("0digit", "d")
	})
	return events
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestBinaryRequestIsTheSDKs(t *testing.T) {
	for name, e := range codecEvents() {
		t.Run(name, func(t *testing.T) {
			want, _ := http.NewRequest(http.MethodPost, "http://x", nil)
			if err := cehttp.WriteRequest(binding.WithForceBinary(context.Background()), binding.ToMessage(&e), want); err != nil {
				t.Fatal(err)
			}
			got, _ := http.NewRequest(http.MethodPost, "http://x", nil)
			if ok, err := new(outgoing).binary(got, &e, false, nil); !ok || err != nil {
				t.Fatalf("binary = %v, %v", ok, err)
			}
			if !reflect.DeepEqual(got.Header, want.Header) {
				t.Errorf("headers\n got %v\nwant %v", got.Header, want.Header)
			}
			// With Prefer, and a cache of sources (its miss, then its hit).
			var sources sourceCache
			want.Header.Set("Prefer", "reply")
			for range 2 {
				prefer, _ := http.NewRequest(http.MethodPost, "http://x", nil)
				if ok, err := new(outgoing).binary(prefer, &e, true, &sources); !ok || err != nil {
					t.Fatalf("binary with Prefer = %v, %v", ok, err)
				}
				if !reflect.DeepEqual(prefer.Header, want.Header) {
					t.Errorf("headers with Prefer\n got %v\nwant %v", prefer.Header, want.Header)
				}
			}
			want.Header.Del("Prefer")
			if got.ContentLength != want.ContentLength || !bytes.Equal(body(t, got.Body), body(t, want.Body)) {
				t.Errorf("body differs")
			}
			if want.GetBody != nil {
				if got.GetBody == nil {
					t.Fatal("no GetBody")
				}
				g, _ := got.GetBody()
				w, _ := want.GetBody()
				if !bytes.Equal(body(t, g), body(t, w)) {
					t.Error("GetBody differs")
				}
			}
		})
	}
}

func TestBinaryResponseIsTheSDKs(t *testing.T) {
	for name, e := range codecEvents() {
		t.Run(name, func(t *testing.T) {
			want := httptest.NewRecorder()
			if err := cehttp.WriteResponseWriter(binding.WithForceBinary(context.Background()), binding.ToMessage(&e), http.StatusOK, want); err != nil {
				t.Fatal(err)
			}
			got := httptest.NewRecorder()
			if ok, err := writeBinaryResponse(got, &e, http.StatusOK); !ok || err != nil {
				t.Fatalf("writeBinaryResponse = %v, %v", ok, err)
			}
			if !reflect.DeepEqual(got.Header(), want.Header()) || got.Code != want.Code || got.Body.String() != want.Body.String() {
				t.Errorf("got %d %v %q\nwant %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
		})
	}
}

func TestReadBinaryIsTheSDKs(t *testing.T) {
	check := func(t *testing.T, h http.Header, data []byte) {
		t.Helper()
		want, wantErr := binding.ToEvent(context.Background(), cehttp.NewMessage(h.Clone(), io.NopCloser(bytes.NewReader(data))))
		got, err := readBinary(h.Clone(), bytes.NewReader(data), int64(len(data)), 0)
		if errors.Is(err, errNotBinary) {
			t.Fatalf("readBinary left %v to the SDK", h)
		}
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("readBinary error %v, the SDK's %v", err, wantErr)
		}
		if err == nil && (!reflect.DeepEqual(got.Context, want.Context) || !bytes.Equal(got.DataEncoded, want.DataEncoded) ||
			got.DataBase64 != want.DataBase64 || len(got.FieldErrors) != len(want.FieldErrors)) {
			t.Errorf("readBinary = %s\nthe SDK's   %s", got, want)
		}
	}
	for name, e := range codecEvents() {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
			cehttp.WriteRequest(binding.WithForceBinary(context.Background()), binding.ToMessage(&e), req)
			check(t, req.Header, e.Data())
		})
	}
	malformed := map[string][2]string{
		"bad time":            {"Ce-Time", "yesterday"},
		"bad source":          {"Ce-Source", "%zz"},
		"blank id":            {"Ce-Id", " "},
		"bad extension name":  {"Ce-Bad_name", "x"},
		"attribute extension": {"Ce-Datacontenttype", "x"},
		"blank subject":       {"Ce-Subject", " "},
		"padded type":         {"Ce-Type", " t "},
		"padded content type": {"Content-Type", " text/plain "},
		"blank content type":  {"Content-Type", " "},
	}
	for name, kv := range malformed {
		t.Run(name, func(t *testing.T) {
			h := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}}
			h[kv[0]] = []string{kv[1]}
			check(t, h, nil)
		})
	}
}

func TestReadBinaryLeavesTheRestToTheSDK(t *testing.T) {
	base := func() http.Header {
		return http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}}
	}
	cases := map[string]func(h http.Header){
		"structured":     func(h http.Header) { h.Set("Content-Type", "application/cloudevents+json") },
		"batch":          func(h http.Header) { h.Set("Content-Type", "application/cloudevents-batch+json; charset=utf-8") },
		"v0.3":           func(h http.Header) { h.Set("Ce-Specversion", "0.3") },
		"no specversion": func(h http.Header) { h.Del("Ce-Specversion") },
		"lower case":     func(h http.Header) { h["ce-id"] = h["Ce-Id"]; delete(h, "Ce-Id") },
		"upper case":     func(h http.Header) { h["CONTENT-TYPE"] = []string{"text/plain"} },
	}
	for name, change := range cases {
		h := base()
		change(h)
		if _, err := readBinary(h, strings.NewReader(""), 0, 0); !errors.Is(err, errNotBinary) {
			t.Errorf("%s: readBinary = %v, want errNotBinary", name, err)
		}
	}
}

func TestPassThroughMatchesNamesInAnyCase(t *testing.T) {
	for _, k := range []string{"X-Request-Id", "x-request-id", "Retry-After", "Traceparent", "TRACESTATE", "Knative-Foo", "knative-", "X-B3-Traceid", "x-b3-sampled"} {
		if !passThrough(k) {
			t.Errorf("%s does not pass through", k)
		}
	}
	for _, k := range []string{"Ce-Id", "Content-Type", "X-Request", "Knative", "X-B3", "Traceparents", "", "Authorization"} {
		if passThrough(k) {
			t.Errorf("%s passes through", k)
		}
	}
}

func body(t *testing.T, r io.Reader) []byte {
	t.Helper()
	if r == nil {
		return nil
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSourceCacheIsTheSDKs checks that a cached source is parsed and
// formatted as the SDK does, on a miss, on a hit, and for a source other
// than the one cached.
func TestSourceCacheIsTheSDKs(t *testing.T) {
	sources := []string{"/bench", "https://example.com/a/b?c=d#e", "urn:uuid:6e8bc430", "http://user:pw@h:80/p", "%zz", "", "/b%20c",
		"HTTP://Example.COM/a", "http://h/a%2fb", "mailto:X@y", "http://h/a b", "http://[::1]:80/x", "//h/p?q"}
	for _, first := range sources {
		var c sourceCache
		for _, s := range append([]string{first, first}, sources...) {
			var want, got event.EventContextV1
			wantErr := want.SetSource(s)
			gotErr := c.parse(&got, s)
			if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got.Source, want.Source) {
				t.Errorf("cache of %q: parse(%q) = %v, %v; SetSource: %v, %v", first, s, got.Source, gotErr, want.Source, wantErr)
			}
			if wantErr != nil {
				continue
			}
			if f := c.format(&want.Source.URL); f != want.Source.String() {
				t.Errorf("cache of %q: format(%q) = %q, want %q", first, s, f, want.Source.String())
			}
		}
	}
	var none *sourceCache
	var ec event.EventContextV1
	if err := none.parse(&ec, "/x"); err != nil || none.format(&ec.Source.URL) != "/x" {
		t.Errorf("nil cache: %v, %q", err, none.format(&ec.Source.URL))
	}
}

// TestRequestIsNewRequests checks that an HTTPTarget's request, its URL
// parsed once and copied, is the one http.NewRequestWithContext makes, and
// that a URL it cannot parse, or a nil context, fails with its error, on
// the first use and on the next; and that a target whose URL is changed
// between uses sends to the new one.
func TestRequestIsNewRequests(t *testing.T) {
	ctx := context.Background()
	urls := []string{"http://h/p", "http://h:/p", "https://user:pw@h:8443/a%2Fb?q=1&r=%20#frag", "http://[::1]:80/x", "HTTP://Example.COM",
		"http://h/a b", "http://h?", "http://%zz", " http://h", "http://h/\x7f", "", "/relative", "http://h:port/"}
	var target HTTPTarget
	for _, s := range append(urls, urls...) {
		target.URL = s
		want, wantErr := http.NewRequestWithContext(ctx, http.MethodPost, s, nil)
		for range 2 {
			got, out, err := target.newRequest(ctx)
			if wantErr != nil {
				if err == nil || err.Error() != wantErr.Error() {
					t.Errorf("%q: error %v, want %v", s, err, wantErr)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			if got.URL != &out.url {
				t.Errorf("%q: the request's URL is not its own copy", s)
			}
			if !reflect.DeepEqual(got, want) || got.Context() != ctx {
				t.Errorf("%q: request\n got %+v\nwant %+v", s, got, want)
			}
			// A change to one request's URL is not another's.
			got.URL.Path = "/changed"
		}
	}
	target.URL = "http://h/p"
	var nilCtx context.Context
	_, wantErr := http.NewRequestWithContext(nilCtx, http.MethodPost, target.URL, nil)
	if _, _, err := target.newRequest(nilCtx); err == nil || err.Error() != wantErr.Error() {
		t.Errorf("nil context: error %v, want %v", err, wantErr)
	}
}
