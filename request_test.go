package flows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// renamer replies with a copy of the event under a new id, so that a test
// can tell which end an output came from.
func renamer(id string) flows.Handler {
	return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		r := e.Clone()
		r.SetID(id)
		return &r, nil
	})
}

func mustRequest(t *testing.T, f *flows.Flow, e event.Event) []event.Event {
	t.Helper()
	outs, err := f.Request(context.Background(), e)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	return outs
}

func TestRequestSequenceReturnsTheLastReply(t *testing.T) {
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: appender("a")}, {Subscriber: appender("b")}, {Subscriber: appender("c")}}})
	outs := mustRequest(t, f, newEvent("1", msg{Message: ">"}))
	if len(outs) != 1 {
		t.Fatalf("got %d outputs, want 1", len(outs))
	}
	if got := message(t, outs[0]); got != ">abc" {
		t.Errorf("output message %q, want %q", got, ">abc")
	}
}

func TestRequestSequenceWithReplyReturnsWhatTheReplyGot(t *testing.T) {
	reply := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: appender("a")}, {Subscriber: appender("b")}}, Reply: reply})
	outs := mustRequest(t, f, newEvent("1", msg{Message: ">"}))
	if len(outs) != 1 || message(t, outs[0]) != ">ab" {
		t.Fatalf("outputs %v, want the one event with message >ab", outs)
	}
	// The output still went to the Reply, once.
	if got := reply.Events(); len(got) != 1 || message(t, got[0]) != ">ab" {
		t.Errorf("the Reply got %v, want the output", got)
	}
}

func TestRequestSequenceStepWithNoReplyHasNoOutput(t *testing.T) {
	last := flowstest.NewRecorder(flowstest.Echo())
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.NoReply())}, {Subscriber: last}}})
	outs := mustRequest(t, f, newEvent("1", msg{}))
	if len(outs) != 0 {
		t.Errorf("got outputs %v, want none", ids(outs))
	}
	if last.Len() != 0 {
		t.Errorf("the step after the one that answered no event got %d events", last.Len())
	}
}

func TestRequestParallelTwoOfThreeBranchesInTheOrderTheyLeft(t *testing.T) {
	// Branch 0 replies only once branch 2 is done with the event (its
	// output handed to the Reply), so the outputs left as b2, then b0;
	// branch 1's filter refuses.
	b2left := make(chan struct{})
	obs := &flows.Observer{Deliver: func(ctx context.Context, d *flows.DeliveryInfo) (context.Context, func()) {
		if d.Step != "branches[2]" {
			return ctx, nil
		}
		return ctx, func() { close(b2left) }
	}}
	waitB2 := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		select {
		case <-b2left:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return renamer("b0").Handle(ctx, e)
	})
	reply := flowstest.NewRecorder()
	f := start(t, &flows.Parallel{Branches: []flows.Branch{
		{Subscriber: waitB2},
		{Filter: flows.Match(func(event.Event) bool { return false }), Subscriber: renamer("b1")},
		{Filter: flows.Match(func(event.Event) bool { return true }), Subscriber: renamer("b2")},
	}, Reply: reply}, flows.WithObserver(obs))
	outs := mustRequest(t, f, newEvent("in", msg{}))
	if got, want := ids(outs), []string{"b2", "b0"}; !slices.Equal(got, want) {
		t.Errorf("outputs %v, want %v", got, want)
	}
	if got := ids(reply.Events()); !slices.Equal(got, []string{"b2", "b0"}) {
		t.Errorf("the Reply got %v, want the outputs too", got)
	}
}

func TestRequestParallelWithoutReply(t *testing.T) {
	f := start(t, &flows.Parallel{Branches: []flows.Branch{
		{Subscriber: renamer("b0")},
		{Filter: flows.Match(func(event.Event) bool { return false }), Subscriber: renamer("b1")},
		{Subscriber: renamer("b2")},
	}})
	got := ids(mustRequest(t, f, newEvent("in", msg{})))
	slices.Sort(got)
	if want := []string{"b0", "b2"}; !slices.Equal(got, want) {
		t.Errorf("outputs %v, want %v", got, want)
	}
}

func TestRequestFollowsNestedFlows(t *testing.T) {
	inner := start(t, &flows.Parallel{Name: "inner", Branches: []flows.Branch{{Subscriber: renamer("x")}, {Subscriber: renamer("y")}}})
	t.Run("as a step", func(t *testing.T) {
		after := flowstest.NewRecorder(flowstest.Echo())
		outer := start(t, &flows.Sequence{Name: "outer", Steps: []flows.Step{{Subscriber: renamer("s0")}, {Subscriber: inner}, {Subscriber: after}}})
		got := ids(mustRequest(t, outer, newEvent("in", msg{})))
		slices.Sort(got)
		if want := []string{"x", "y"}; !slices.Equal(got, want) {
			t.Errorf("outputs %v, want the nested flow's ends %v", got, want)
		}
		if after.Len() != 0 {
			t.Errorf("the step after the nested flow got %d events; a flow answers no event", after.Len())
		}
	})
	t.Run("as the reply", func(t *testing.T) {
		outer := start(t, &flows.Sequence{Name: "outer2", Steps: []flows.Step{{Subscriber: renamer("s0")}}, Reply: inner})
		got := ids(mustRequest(t, outer, newEvent("in", msg{})))
		slices.Sort(got)
		if want := []string{"x", "y"}; !slices.Equal(got, want) {
			t.Errorf("outputs %v, want the nested flow's ends %v, not the event handed to it", got, want)
		}
	})
}

func TestRequestErrors(t *testing.T) {
	boom := flows.Permanent(errors.New("boom"))
	t.Run("dead-lettered", func(t *testing.T) {
		dls := flowstest.NewRecorder()
		f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Fail(boom)), Delivery: &flows.Delivery{DeadLetter: dls}}}})
		outs, err := f.Request(context.Background(), newEvent("1", msg{}))
		if err != nil || len(outs) != 0 {
			t.Errorf("Request = %v, %v; want no output and no error", ids(outs), err)
		}
		if dls.Len() != 1 {
			t.Errorf("dead-letter sink got %d events, want 1", dls.Len())
		}
	})
	t.Run("dead-lettered to a flow", func(t *testing.T) {
		// A dead-letter sink is never an end, even a flow with ends.
		sinkFlow := start(t, &flows.Sequence{Name: "dlq", Steps: []flows.Step{{Subscriber: renamer("dl")}}})
		f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Fail(boom)), Delivery: &flows.Delivery{DeadLetter: sinkFlow}}}})
		outs, err := f.Request(context.Background(), newEvent("1", msg{}))
		if err != nil || len(outs) != 0 {
			t.Errorf("Request = %v, %v; want no output and no error", ids(outs), err)
		}
	})
	t.Run("failed", func(t *testing.T) {
		f := start(t, &flows.Parallel{Branches: []flows.Branch{{Subscriber: renamer("ok")}, {Subscriber: flowstest.NewRecorder(flowstest.Fail(boom))}}})
		outs, err := f.Request(context.Background(), newEvent("1", msg{}))
		var de *flows.DeliveryError
		if !errors.As(err, &de) || !flows.IsPermanent(err) {
			t.Fatalf("error %v, want a permanent *DeliveryError", err)
		}
		if got := ids(outs); !slices.Equal(got, []string{"ok"}) {
			t.Errorf("outputs %v, want the one that did leave", got)
		}
	})
	t.Run("invalid reply at an end", func(t *testing.T) {
		bad := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			r := e.Clone()
			r.SetID("")
			return &r, nil
		})
		f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: bad}}})
		_, err := f.Request(context.Background(), newEvent("1", msg{}))
		if !errors.Is(err, flows.ErrInvalidEvent) {
			t.Errorf("error %v, want one wrapping ErrInvalidEvent", err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		started, release := make(chan struct{}), make(chan struct{})
		hold := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			close(started)
			<-release
			return &e, nil
		})
		f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: hold}}})
		defer close(release)
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-started; cancel() }()
		outs, err := f.Request(ctx, newEvent("1", msg{}))
		if !errors.Is(err, context.Canceled) || outs != nil {
			t.Errorf("Request = %v, %v; want no outputs and context.Canceled", outs, err)
		}
	})
	t.Run("broker", func(t *testing.T) {
		f := start(t, &flows.Broker{Triggers: []flows.Trigger{{Name: "t", Subscriber: flowstest.NewRecorder()}}})
		_, err := f.Request(context.Background(), newEvent("1", msg{}))
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("error %v, want one wrapping errors.ErrUnsupported", err)
		}
	})
	t.Run("durable channels", func(t *testing.T) {
		f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: renamer("x")}}},
			flows.WithChannels(func(context.Context, string) (flows.Channel, error) {
				return otherChannel{flows.NewInMemoryChannel(0)}, nil
			}))
		_, err := f.Request(context.Background(), newEvent("1", msg{}))
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("error %v, want one wrapping errors.ErrUnsupported", err)
		}
	})
}

// otherChannel stands for a channel that cannot carry a request's tracker.
type otherChannel struct{ *flows.InMemoryChannel }

func TestRequestConcurrentRequestsNeverConfused(t *testing.T) {
	jitter := func(suffix string) flows.Handler {
		return flows.Typed(func(_ context.Context, in msg) (msg, error) {
			for range rand.IntN(50) {
				runtime.Gosched()
			}
			in.Message += suffix
			return in, nil
		})
	}
	sink := flowstest.NewRecorder()
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: jitter("a")}, {Subscriber: jitter("b")}}, Reply: sink},
		flows.WithConcurrency(8))
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			// Pairs of requests share an id.
			e := newEvent(fmt.Sprintf("dup-%d", i/2), msg{ID: i, Message: fmt.Sprint(i)})
			outs, err := f.Request(context.Background(), e)
			if err != nil {
				errs <- err
				return
			}
			var m msg
			if len(outs) != 1 || json.Unmarshal(outs[0].Data(), &m) != nil || m.ID != i || m.Message != fmt.Sprint(i)+"ab" {
				errs <- fmt.Errorf("request %d got %d outputs %v", i, len(outs), outs)
			}
		})
		// Events sent meanwhile are no request's output.
		wg.Go(func() {
			if err := f.Send(context.Background(), newEvent(fmt.Sprintf("dup-%d", i/2), msg{ID: -1})); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestIngressReply(t *testing.T) {
	boom := flows.Permanent(errors.New("boom at step"))
	logs := new(logBuffer)
	logger := logs.logger()
	seq := start(t, &flows.Sequence{Name: "seq", Steps: []flows.Step{{Subscriber: appender("a")}, {Subscriber: appender("b")}}})
	none := start(t, &flows.Sequence{Name: "none", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.NoReply())}}})
	failing := start(t, &flows.Sequence{Name: "failing", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Fail(boom))}}})
	dls := flowstest.NewRecorder()
	deadLettered := start(t, &flows.Sequence{Name: "dl", Steps: []flows.Step{{Subscriber: flowstest.NewRecorder(flowstest.Fail(boom)), Delivery: &flows.Delivery{DeadLetter: dls}}}})
	par := start(t, &flows.Parallel{Branches: []flows.Branch{
		{Subscriber: renamer("b0")},
		{Filter: flows.Match(func(event.Event) bool { return false }), Subscriber: renamer("b1")},
		{Subscriber: renamer("b2")},
	}})
	broker := start(t, &flows.Broker{Triggers: []flows.Trigger{{Name: "t", Subscriber: flowstest.NewRecorder()}}})
	body := `{"id":1,"message":">"}`

	t.Run("200 binary", func(t *testing.T) {
		status, got, h := request(t, "POST", serveIngress(t, seq, flows.IngressReply()), binaryHeaders, body)
		if status != 200 || h.Get("Ce-Id") != "1" || h.Get("Ce-Type") != "greeting" || got != `{"id":1,"message":"\u003eab"}` && got != `{"id":1,"message":">ab"}` {
			t.Errorf("answer %d %v %q, want 200 with the event in binary mode", status, h, got)
		}
	})
	t.Run("200 structured", func(t *testing.T) {
		in := `{"specversion":"1.0","id":"s1","source":"/curl","type":"greeting","datacontenttype":"application/json","data":` + body + `}`
		status, got, h := request(t, "POST", serveIngress(t, seq, flows.IngressReply()), map[string]string{"Content-Type": "application/cloudevents+json"}, in)
		if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/cloudevents+json") || h.Get("Ce-Id") != "" {
			t.Fatalf("answer %d %v %q, want 200 with a structured event", status, h, got)
		}
		var e event.Event
		if err := json.Unmarshal([]byte(got), &e); err != nil || e.ID() != "s1" || message(t, e) != ">ab" {
			t.Errorf("answer %q (%v), want the output event", got, err)
		}
	})
	t.Run("202 no output", func(t *testing.T) {
		if status, got, _ := request(t, "POST", serveIngress(t, none, flows.IngressReply()), binaryHeaders, body); status != 202 || got != "" {
			t.Errorf("answer %d %q, want 202 with no body", status, got)
		}
	})
	t.Run("202 dead-lettered", func(t *testing.T) {
		if status, _, _ := request(t, "POST", serveIngress(t, deadLettered, flows.IngressReply()), binaryHeaders, body); status != 202 || dls.Len() != 1 {
			t.Errorf("answer %d with %d dead letters, want 202 and 1", status, dls.Len())
		}
	})
	t.Run("500 failed", func(t *testing.T) {
		status, got, _ := request(t, "POST", serveIngress(t, failing, flows.IngressReply(), flows.IngressLogger(logger)), binaryHeaders, body)
		if status != 500 || got != "the event could not be delivered" {
			t.Errorf("answer %d %q, want 500 with a generic reason", status, got)
		}
		if !strings.Contains(logs.String(), "boom at step") {
			t.Errorf("the logger did not get the details: %s", logs.String())
		}
	})
	t.Run("500 broker", func(t *testing.T) {
		if status, _, _ := request(t, "POST", serveIngress(t, broker, flows.IngressReply()), binaryHeaders, body); status != 500 {
			t.Errorf("answer %d, want 500", status)
		}
	})
	t.Run("200 batch", func(t *testing.T) {
		status, got, h := request(t, "POST", serveIngress(t, par, flows.IngressReply()), binaryHeaders, body)
		if status != 200 || h.Get("Content-Type") != "application/cloudevents-batch+json" {
			t.Fatalf("answer %d %v, want 200 with a batch", status, h)
		}
		var batch []event.Event
		if err := json.Unmarshal([]byte(got), &batch); err != nil {
			t.Fatalf("batch %q: %v", got, err)
		}
		gotIDs := ids(batch)
		slices.Sort(gotIDs)
		if !slices.Equal(gotIDs, []string{"b0", "b2"}) || message(t, batch[0]) != ">" {
			t.Errorf("batch %q, want the events b0 and b2", got)
		}
	})
}

func TestIngressReplyTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []flows.IngressOption
		want time.Duration
	}{
		{"default", nil, flows.DefaultReplyTimeout},
		{"set", []flows.IngressOption{flows.IngressReplyTimeout(2 * time.Second)}, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				hold := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
					<-release
					return &e, nil
				})
				out := flowstest.NewRecorder()
				f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: hold}}, Reply: out})
				in := flows.NewIngress(f, append([]flows.IngressOption{flows.IngressReply()}, tc.opts...)...)
				req := httptest.NewRequest("POST", "/", strings.NewReader(`{}`))
				for k, v := range binaryHeaders {
					req.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				t0 := time.Now()
				in.ServeHTTP(w, req)
				if w.Code != http.StatusGatewayTimeout || time.Since(t0) != tc.want {
					t.Errorf("answer %d after %s, want 504 after %s", w.Code, time.Since(t0), tc.want)
				}
				// The event goes on in the background.
				close(release)
				out.MustWait(t, 1)
			})
		})
	}
}
