package flows_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// serveBroker answers one request with h, in process.
func serveBroker(h *flows.BrokerIngress, method, path string, header map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestBrokerIngressContract checks every status of Knative's broker
// ingress, in its order, on two brokers served at once, and which events
// reached which broker.
func TestBrokerIngressContract(t *testing.T) {
	def, shop := flowstest.NewRecorder(), flowstest.NewRecorder()
	h := flows.NewBrokerIngress(flows.IngressSynchronous(), flows.IngressMaxBodyBytes(1024))
	for _, b := range []struct {
		ns, name string
		sub      flows.Handler
	}{{"default", "default", def}, {"shop", "events", shop}} {
		if err := h.Add(b.ns, b.name, start(t, &flows.Broker{Name: b.name, Triggers: []flows.Trigger{{Subscriber: b.sub}}})); err != nil {
			t.Fatal(err)
		}
	}
	structured := map[string]string{"Content-Type": "application/cloudevents+json"}
	cases := []struct {
		name, method, path string
		header             map[string]string
		body               string
		status             int
		reason             string
	}{
		{"OPTIONS", "OPTIONS", "/default/default", nil, "", 200, ""},
		{"GET", "GET", "/default/default", nil, "", 405, "only POST"},
		{"PUT", "PUT", "/default/default", binaryHeaders, "{}", 405, "only POST"},
		{"root", "POST", "/", binaryHeaders, "{}", 404, "no broker at /"},
		{"one segment", "POST", "/default", binaryHeaders, "{}", 400, "malformed path"},
		{"three segments", "POST", "/default/default/x", binaryHeaders, "{}", 400, "malformed path"},
		{"empty namespace", "POST", "//default", binaryHeaders, "{}", 400, "malformed path"},
		{"accepted", "POST", "/default/default", with(binaryHeaders, "Ce-Id", "a"), "{}", 202, ""},
		{"trailing slash", "POST", "/default/default/", with(binaryHeaders, "Ce-Id", "b"), "{}", 202, ""},
		{"other broker", "POST", "/shop/events", with(binaryHeaders, "Ce-Id", "c"), "{}", 202, ""},
		{"TTL not an integer", "POST", "/default/default", with(binaryHeaders, "Ce-Id", "d", "Ce-Knativebrokerttl", "abc"), "{}", 202, ""},
		{"TTL 2", "POST", "/default/default", with(binaryHeaders, "Ce-Id", "e", "Ce-Knativebrokerttl", "2"), "{}", 202, ""},
		{"TTL 1", "POST", "/default/default", with(binaryHeaders, "Ce-Id", "ttl1", "Ce-Knativebrokerttl", "1"), "{}", 400, "TTL"},
		{"TTL 0", "POST", "/default/default", with(binaryHeaders, "Ce-Id", "ttl0", "Ce-Knativebrokerttl", "0"), "{}", 400, "TTL"},
		{"not a CloudEvent", "POST", "/default/default", map[string]string{"Content-Type": "text/plain"}, "hello", 400, "not a CloudEvent"},
		{"missing id", "POST", "/default/default", with(binaryHeaders, "Ce-Id", ""), "{}", 400, "id"},
		{"cut off", "POST", "/default/default", structured, `{"specversion":"1.0","id":`, 400, "malformed CloudEvent"},
		{"unknown broker", "POST", "/default/nope", binaryHeaders, "{}", 404, "no broker nope in namespace default"},
		{"unknown namespace", "POST", "/other/default", binaryHeaders, "{}", 404, "no broker default in namespace other"},
		{"malformed event to an unknown broker", "POST", "/default/nope", with(binaryHeaders, "Ce-Id", ""), "{}", 400, "id"},
		{"too large", "POST", "/default/default", binaryHeaders, strings.Repeat("x", 2048), 413, "exceeds the limit"},
		{"too large to an unknown broker", "POST", "/default/nope", binaryHeaders, strings.Repeat("x", 2048), 413, "exceeds the limit"},
		{"unsupported format", "POST", "/default/default", map[string]string{"Content-Type": "application/cloudevents+xml"}, "<e/>", 415, "unsupported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := serveBroker(h, tc.method, tc.path, tc.header, tc.body)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.reason) {
				t.Errorf("got %d %q, want %d with a reason mentioning %q", w.Code, w.Body, tc.status, tc.reason)
			}
			if got := w.Header().Get("Allow"); got != "POST, OPTIONS" {
				t.Errorf("Allow = %q, want \"POST, OPTIONS\" on every answer", got)
			}
			if tc.method == "OPTIONS" && w.Header().Get("WebHook-Allowed-Origin") != "*" {
				t.Errorf("OPTIONS without WebHook-Allowed-Origin: %v", w.Header())
			}
		})
	}
	// Synchronous: the deliveries are done. Nothing refused got anywhere.
	if got := ids(def.Events()); !slices.Equal(got, []string{"a", "b", "d", "e"}) {
		t.Errorf("broker default/default got %v, want [a b d e]", got)
	}
	if got := ids(shop.Events()); !slices.Equal(got, []string{"c"}) {
		t.Errorf("broker shop/events got %v, want [c]", got)
	}
	for _, e := range def.Events() {
		if _, ok := e.Extensions()[flows.ExtensionArrivalTime]; !ok {
			t.Errorf("event %s reached the subscriber without %s", e.ID(), flows.ExtensionArrivalTime)
		}
	}
}

// TestBrokerIngressSynchronousFailure: in synchronous mode a Trigger that
// fails with no dead-letter sink turns the answer into 500, without the
// details; asynchronous, the sender gets 202 at once.
func TestBrokerIngressSynchronousFailure(t *testing.T) {
	failing := flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		return nil, errors.New("subscriber http://secret.internal failed")
	})
	f := start(t, &flows.Broker{Triggers: []flows.Trigger{{Subscriber: failing}}})
	sync, async := flows.NewBrokerIngress(flows.IngressSynchronous()), flows.NewBrokerIngress()
	for _, h := range []*flows.BrokerIngress{sync, async} {
		if err := h.Add("default", "default", f); err != nil {
			t.Fatal(err)
		}
	}
	w := serveBroker(sync, "POST", "/default/default", binaryHeaders, "{}")
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret") {
		t.Errorf("sync, failed Trigger: %d %q, want 500 without the error's details", w.Code, w.Body)
	}
	if w := serveBroker(async, "POST", "/default/default", binaryHeaders, "{}"); w.Code != 202 {
		t.Errorf("async: %d %q, want 202", w.Code, w.Body)
	}
}

// TestBrokerIngressSharesOneByteBudget: a request held at one broker
// spends the budget of the whole ingress, so a request to another broker,
// or to an unknown one, gets 503 with Retry-After, its body unread.
func TestBrokerIngressSharesOneByteBudget(t *testing.T) {
	h := flows.NewBrokerIngress(flows.IngressByteBudget(flows.NewByteBudget(100)))
	for _, name := range []string{"a", "b"} {
		if err := h.Add("default", name, start(t, &flows.Broker{Name: name, Triggers: []flows.Trigger{{Subscriber: flows.Discard}}})); err != nil {
			t.Fatal(err)
		}
	}
	body := bytes.Repeat([]byte("x"), 60)
	held := newHeldBody(body)
	r := binaryRequest(held, 60)
	r.URL.Path = "/default/a"
	done := serveInBackground(h, r)
	<-held.reading
	for _, path := range []string{"/default/b", "/default/unknown"} {
		second := &countingBody{r: bytes.NewReader(body)}
		r := binaryRequest(second, 60)
		r.URL.Path = path
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 503 || w.Header().Get("Retry-After") == "" || second.read.Load() != 0 {
			t.Errorf("%s while the budget is spent: %d, Retry-After %q, %d bytes read; want 503 with Retry-After, unread",
				path, w.Code, w.Header().Get("Retry-After"), second.read.Load())
		}
	}
	close(held.letGo)
	if w := <-done; w.Code != 202 {
		t.Errorf("held request: %d %s, want 202", w.Code, w.Body)
	}
	r = binaryRequest(io.NopCloser(bytes.NewReader(body)), 60)
	r.URL.Path = "/default/b"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 202 {
		t.Errorf("after the held request: %d %s, want the budget back", w.Code, w.Body)
	}
}

// TestBrokerIngressFullBrokerWaitsBoundedly: a broker whose Trigger's
// channel is full answers 503 with Retry-After after IngressMaxWait, not
// when the client gives up.
func TestBrokerIngressFullBrokerWaitsBoundedly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const wait = 2 * time.Second
		release, entered := make(chan struct{}), make(chan struct{}, 1)
		blocking := flows.HandlerFunc(func(ctx context.Context, _ event.Event) (*event.Event, error) {
			entered <- struct{}{}
			<-release
			return nil, nil
		})
		f, err := (&flows.Broker{Triggers: []flows.Trigger{{Subscriber: blocking}}}).Start(context.Background(), flows.WithCapacity(1))
		if err != nil {
			t.Fatal(err)
		}
		h := flows.NewBrokerIngress(flows.IngressMaxWait(wait))
		if err := h.Add("default", "default", f); err != nil {
			t.Fatal(err)
		}
		if w := serveBroker(h, "POST", "/default/default", binaryHeaders, "{}"); w.Code != 202 {
			t.Fatalf("first: %d %s", w.Code, w.Body)
		}
		<-entered // the channel's one place is taken
		began := time.Now()
		w := serveBroker(h, "POST", "/default/default", with(binaryHeaders, "Ce-Id", "2"), "{}")
		if took := time.Since(began); w.Code != 503 || w.Header().Get("Retry-After") == "" || took != wait {
			t.Errorf("full broker: %d %q Retry-After %q after %s; want 503 with Retry-After after %s",
				w.Code, w.Body, w.Header().Get("Retry-After"), took, wait)
		}
		close(release)
		if err := f.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		// A broker that is shutting down answers 503.
		if w := serveBroker(h, "POST", "/default/default", binaryHeaders, "{}"); w.Code != 503 {
			t.Errorf("after Shutdown: %d %q, want 503", w.Code, w.Body)
		}
	})
}

func TestBrokerIngressAdd(t *testing.T) {
	f := start(t, &flows.Broker{})
	h := flows.NewBrokerIngress()
	if err := h.Add("default", "default", f); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ns, name, want string }{
		{"", "b", `namespace name ""`},
		{"a/b", "c", `namespace name "a/b"`},
		{"a", "", `broker name ""`},
		{"default", "default", "/default/default is served already"},
	} {
		if err := h.Add(tc.ns, tc.name, f); !errors.Is(err, flows.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add(%q, %q) = %v, want ErrInvalid mentioning %q", tc.ns, tc.name, err, tc.want)
		}
	}
	if err := h.Add("a", "b", nil); !errors.Is(err, flows.ErrInvalid) {
		t.Errorf("Add without a destination = %v, want ErrInvalid", err)
	}
	if got := flows.BrokerPath("shop", "events"); got != "/shop/events" {
		t.Errorf("BrokerPath = %q", got)
	}
}

// TestBrokerIngressOfOneBroker: NewIngress of a broker's flow already
// answers as Knative's broker ingress for one broker: an exhausted TTL is
// a malformed event.
func TestBrokerIngressOfOneBroker(t *testing.T) {
	rec := flowstest.NewRecorder()
	url := serveIngress(t, start(t, &flows.Broker{Triggers: []flows.Trigger{{Subscriber: rec}}}), flows.IngressSynchronous())
	if status, body, _ := request(t, "POST", url, with(binaryHeaders, "Ce-Knativebrokerttl", "1"), "{}"); status != 400 || !strings.Contains(body, "TTL") {
		t.Errorf("TTL 1: %d %q, want 400 naming the TTL", status, body)
	}
	if status, _, _ := request(t, "POST", url, binaryHeaders, "{}"); status != 202 || len(rec.Events()) != 1 {
		t.Errorf("event: %d, %d delivered; want 202, 1", status, len(rec.Events()))
	}
}

// TestBrokerIngressAuthenticatesFirst: an unauthenticated request gets 401
// whether or not the broker exists, so that the answers do not tell which
// brokers there are; an authenticated one gets the broker's answer.
func TestBrokerIngressAuthenticatesFirst(t *testing.T) {
	auth, err := flows.BearerToken("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	h := flows.NewBrokerIngress(flows.IngressAuthenticator(auth))
	if err := h.Add("default", "default", start(t, &flows.Broker{})); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/default/default", "/default/unknown"} {
		if w := serveBroker(h, "POST", path, binaryHeaders, "{}"); w.Code != 401 {
			t.Errorf("%s without a token: %d %q, want 401", path, w.Code, w.Body)
		}
	}
	authed := with(binaryHeaders, "Authorization", "Bearer s3cret")
	if w := serveBroker(h, "POST", "/default/unknown", authed, "{}"); w.Code != 404 {
		t.Errorf("unknown broker with a token: %d %q, want 404", w.Code, w.Body)
	}
	if w := serveBroker(h, "POST", "/default/default", authed, "{}"); w.Code != 202 {
		t.Errorf("known broker with a token: %d %q, want 202", w.Code, w.Body)
	}
}
