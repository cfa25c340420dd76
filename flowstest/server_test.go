package flowstest_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

func TestServerSpeaksTheSubscriberContract(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reply     flowstest.Reply
		status    int // 0: success
		retryable bool
		replied   bool
	}{
		{name: "reply", reply: flowstest.Echo(), replied: true},
		{name: "no event", reply: flowstest.NoReply()},
		{name: "error", reply: flowstest.Fail(errBoom), status: http.StatusInternalServerError, retryable: true},
		{name: "permanent error", reply: flowstest.Fail(flows.Permanent(errBoom)), status: http.StatusBadRequest},
		{name: "HTTP status", reply: flowstest.Fail(&flows.HTTPError{StatusCode: http.StatusTooManyRequests}), status: http.StatusTooManyRequests, retryable: true},
		{name: "panic", reply: flowstest.Panic("oops"), status: http.StatusInternalServerError, retryable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := flowstest.NewRecorder(tc.reply)
			srv := flowstest.NewServer(rec)
			defer srv.Close()
			if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
				t.Errorf("URL %s, want one on 127.0.0.1", srv.URL)
			}
			in := flowstest.NewEvent("1", "t", "/s", `{"a":1}`, flowstest.WithExtension("tenant", "acme"))
			reply, err := srv.Target().Handle(t.Context(), in)

			var he *flows.HTTPError
			switch {
			case tc.status == 0 && err != nil:
				t.Fatalf("Handle = %v, want success", err)
			case tc.status != 0 && (!errors.As(err, &he) || he.StatusCode != tc.status || he.Retryable() != tc.retryable):
				t.Fatalf("Handle = %v, want an HTTPError %d (retryable %v)", err, tc.status, tc.retryable)
			case tc.replied && reply == nil, !tc.replied && reply != nil:
				t.Fatalf("reply %v, want one: %v", reply, tc.replied)
			}
			if reply != nil {
				flowstest.AssertEvent(t, *reply, in)
			}
			// The event crossed the HTTP binding intact.
			flowstest.AssertEvents(t, rec.MustWait(t, 1), []event.Event{in})
		})
	}
}

func TestHTTPStepIsRetried(t *testing.T) {
	step := flowstest.NewRecorder(flowstest.Fail(errBoom), flowstest.ReplyWith(flowstest.NewEvent("1", "done", "/step", `{"ok":true}`)))
	srv := flowstest.NewServer(step)
	defer srv.Close()
	out := flowstest.NewRecorder()
	f, err := (&flows.Sequence{
		Steps: []flows.Step{{Subscriber: srv.Target(), Delivery: &flows.Delivery{Retry: 1}}},
		Reply: out,
	}).Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Handle(t.Context(), flowstest.NewEvent("1", "t", "/s", nil)); err != nil {
		t.Fatal(err)
	}
	if step.Attempts("1") != 2 {
		t.Errorf("HTTP step attempted %d times, want 2", step.Attempts("1"))
	}
	flowstest.AssertEvents(t, out.Events(), []event.Event{flowstest.NewEvent("1", "done", "/step", `{"ok":true}`)})
}

func TestServeAFlowAsHTTPIngress(t *testing.T) {
	out := flowstest.NewRecorder()
	f, err := (&flows.Sequence{
		Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Echo())}},
		Reply: out,
	}).Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srv := flowstest.NewServer(f)
	defer srv.Close()

	in := flowstest.NewEvent("1", "t", "/s", `{"a":1}`)
	reply, err := srv.Target().Handle(t.Context(), in)
	if err != nil || reply != nil {
		t.Fatalf("Handle = %v, %v; want no event and no error", reply, err)
	}
	// A flow answers once it is done with the event, so the reply is there.
	flowstest.AssertEvents(t, out.Events(), []event.Event{in})
}

func TestServerClose(t *testing.T) {
	srv := flowstest.NewServer(flowstest.NewRecorder())
	target := srv.Target()
	srv.Close()
	_, err := target.Handle(t.Context(), flowstest.NewEvent("1", "t", "/s", nil))
	var he *flows.HTTPError
	if err == nil || errors.As(err, &he) {
		t.Errorf("Handle after Close = %v, want a transport error", err)
	}
}
