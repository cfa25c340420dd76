package flows_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// requestLog records, per path, the Kn-Namespace header of each request
// (or "-" when it had none) and answers with the function of the path.
type requestLog struct {
	mu  sync.Mutex
	got map[string][]string
}

func newRequestLog(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*requestLog, string) {
	l := &requestLog{got: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ns := "-"
		if v, ok := r.Header["Kn-Namespace"]; ok {
			ns = v[0]
		}
		l.mu.Lock()
		l.got[r.URL.Path] = append(l.got[r.URL.Path], ns)
		l.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return l, srv.URL
}

func (l *requestLog) of(path string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got[path]...)
}

// A Trigger's HTTP subscriber gets Kn-Namespace, the broker's namespace
// ("default" unless set); its dead-letter sink does not, nor do the steps
// and the reply of a Sequence calling the same server.
func TestTriggerSendsKnNamespaceToItsSubscriberOnly(t *testing.T) {
	log, url := newRequestLog(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/failing":
			w.WriteHeader(http.StatusInternalServerError)
		case "/step": // replies with an event, for the Sequence's reply
			w.Header().Set("Ce-Specversion", "1.0")
			w.Header().Set("Ce-Id", "r1")
			w.Header().Set("Ce-Type", "reply")
			w.Header().Set("Ce-Source", "/step")
			w.WriteHeader(http.StatusOK)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
	shop := start(t, &flows.Broker{Name: "events", Namespace: "shop", Triggers: []flows.Trigger{
		{Name: "ok", Filter: ofType("ok"), Subscriber: flows.HTTP(url + "/shop")},
		{Name: "failing", Filter: ofType("fail"), Subscriber: flows.HTTP(url + "/failing"),
			Delivery: &flows.Delivery{DeadLetter: flows.HTTP(url + "/dead")}},
	}})
	def := start(t, &flows.Broker{Triggers: []flows.Trigger{{Subscriber: flows.HTTP(url + "/default")}}})
	seq := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(url + "/step")}}, Reply: flows.HTTP(url + "/reply")})
	ctx := context.Background()
	for _, c := range []struct {
		f   *flows.Flow
		typ string
	}{{shop, "ok"}, {shop, "fail"}, {def, "any"}, {seq, "any"}} {
		if _, err := c.f.Handle(ctx, flowstest.NewEvent("1", c.typ, "/test", nil)); err != nil {
			t.Fatalf("Handle(%s) = %v", c.typ, err)
		}
	}
	for path, want := range map[string]string{
		"/shop": "shop", "/failing": "shop", "/default": "default", "/dead": "-", "/step": "-", "/reply": "-",
	} {
		if got := log.of(path); len(got) != 1 || got[0] != want {
			t.Errorf("%s got Kn-Namespace %v, want [%s] (- for none)", path, got, want)
		}
	}
}

// A Trigger's subscriber answering 2xx with a body that is not a CloudEvent
// (or a structured one that does not decode) fails as Knative's broker
// answers 502: retried, then dead-lettered with the subscriber's URL, 502
// and the body. A Sequence's step answering the same gets "no event"; an
// empty 2xx is "no event" for a Trigger too.
func TestTriggerNonCloudEventAnswerIsA502(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts[r.URL.Path]++
		mu.Unlock()
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusOK)
		case "/structured":
			w.Header().Set("Content-Type", "application/cloudevents+json")
			w.Write([]byte(`{"specversion":"1.0","id":`))
		default:
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("hello"))
		}
	}))
	defer srv.Close()
	count := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return attempts[path]
	}
	dead := flowstest.NewRecorder()
	d := &flows.Delivery{Retry: 2, DeadLetter: dead}
	b := start(t, &flows.Broker{Triggers: []flows.Trigger{
		{Name: "text", Filter: ofType("text"), Subscriber: flows.HTTP(srv.URL + "/text"), Delivery: d},
		{Name: "structured", Filter: ofType("structured"), Subscriber: flows.HTTP(srv.URL + "/structured"), Delivery: d},
		{Name: "empty", Filter: ofType("empty"), Subscriber: flows.HTTP(srv.URL + "/empty"), Delivery: d},
	}})
	ctx := context.Background()

	for i, c := range []struct{ typ, body string }{
		{"text", "hello"},
		{"structured", `{"specversion":"1.0","id":`},
	} {
		if _, err := b.Handle(ctx, flowstest.NewEvent(c.typ, c.typ, "/test", nil)); err != nil {
			t.Fatalf("Handle(%s) = %v, want it dead-lettered", c.typ, err)
		}
		if n := count("/" + c.typ); n != 3 {
			t.Errorf("%s answer: %d attempts, want 3 (Retry 2, as for a 502)", c.typ, n)
		}
		dls := dead.Events() // Handle returned: the dead letter is in
		if len(dls) != i+1 {
			t.Errorf("%s answer: %d dead letters in all, want %d", c.typ, len(dls), i+1)
			continue
		}
		dl := dls[i]
		ext := dl.Extensions()
		if dl.ID() != c.typ || ext[flows.ExtensionErrorDest] != srv.URL+"/"+c.typ || ext[flows.ExtensionErrorCode] != int32(502) ||
			ext[flows.ExtensionErrorData] != base64.StdEncoding.EncodeToString([]byte(c.body)) {
			t.Errorf("dead letter of the %s answer:\n%s\nwant id %s, knativeerrordest %s/%s, code 502, data base64(%q)",
				c.typ, dl, c.typ, srv.URL, c.typ, c.body)
		}
	}

	if _, err := b.Handle(ctx, flowstest.NewEvent("empty", "empty", "/test", nil)); err != nil {
		t.Errorf("Handle(empty) = %v, want no event", err)
	}
	if n := count("/empty"); n != 1 {
		t.Errorf("empty 200: %d attempts, want 1", n)
	}

	// Without a dead-letter sink, the error says what came back.
	nodl := start(t, &flows.Broker{Name: "nodl", Triggers: []flows.Trigger{{Subscriber: flows.HTTP(srv.URL + "/nodl")}}})
	_, err := nodl.Handle(ctx, flowstest.NewEvent("n", "text", "/test", nil))
	var he *flows.HTTPError
	if !errors.As(err, &he) || he.StatusCode != 502 || string(he.Body) != "hello" || !strings.Contains(err.Error(), "not a CloudEvent") {
		t.Errorf("Handle without a dead-letter sink = %v, want an *HTTPError 502 with the body, saying it is not a CloudEvent", err)
	}

	seq := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HTTP(srv.URL + "/seq")}}, Delivery: d})
	var reply *event.Event
	reply, err = seq.Handle(ctx, flowstest.NewEvent("s", "text", "/test", nil))
	if err != nil || reply != nil {
		t.Errorf("Sequence step answering 200 text/plain: Handle = %v, %v; want no event, no error", reply, err)
	}
	if n := count("/seq"); n != 1 {
		t.Errorf("Sequence step: %d attempts, want 1", n)
	}
	if n := dead.Len(); n != 2 {
		t.Errorf("%d dead letters, want 2: none for the empty answer and the Sequence", n)
	}
}
