package flows_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// gaps returns the delays between successive calls.
func gaps(times []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(times); i++ {
		out = append(out, times[i].Sub(times[i-1]))
	}
	return out
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRetriesFollowKnativeBackoff(t *testing.T) {
	d := 100 * time.Millisecond
	cases := []struct {
		name     string
		delivery flows.Delivery
		want     []time.Duration
	}{
		{"exponential", flows.Delivery{Retry: 4, BackoffPolicy: flows.BackoffExponential, BackoffDelay: d}, []time.Duration{d, 2 * d, 4 * d, 8 * d}},
		{"zero policy is exponential", flows.Delivery{Retry: 3, BackoffDelay: d}, []time.Duration{d, 2 * d, 4 * d}},
		{"linear starts at zero", flows.Delivery{Retry: 4, BackoffPolicy: flows.BackoffLinear, BackoffDelay: d}, []time.Duration{0, d, 2 * d, 3 * d}},
		{"capped", flows.Delivery{Retry: 5, BackoffDelay: d, BackoffMax: 300 * time.Millisecond}, []time.Duration{d, 2 * d, 3 * d, 3 * d, 3 * d}},
		{"no delay", flows.Delivery{Retry: 2}, []time.Duration{0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				step := failN(1000, errors.New("unavailable"))
				f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: step, Delivery: &tc.delivery}}})
				f.Handle(context.Background(), newEvent("1", nil))
				if got := step.Len(); got != tc.delivery.Retry+1 {
					t.Errorf("attempts = %d, want retry+1 = %d", got, tc.delivery.Retry+1)
				}
				if got := gaps(attemptTimes(step)); !equalDurations(got, tc.want) {
					t.Errorf("delays between attempts = %v, want %v", got, tc.want)
				}
			})
		})
	}
}

func TestBackoffFormula(t *testing.T) {
	d := &flows.Delivery{BackoffDelay: time.Second}
	if got := d.Backoff(1); got != time.Second {
		t.Errorf("exponential Backoff(1) = %v", got)
	}
	if got := d.Backoff(200); got <= 0 {
		t.Errorf("Backoff(200) = %v: must not overflow", got)
	}
	lin := &flows.Delivery{BackoffPolicy: flows.BackoffLinear, BackoffDelay: time.Second}
	if got := lin.Backoff(3); got != 2*time.Second {
		t.Errorf("linear Backoff(3) = %v, want 2s", got)
	}
}

func TestRetryAfterIsHonouredOnlyWithAMaximum(t *testing.T) {
	busy := &flows.HTTPError{URL: "http://x", StatusCode: http.StatusTooManyRequests, RetryAfter: 3 * time.Second}
	cases := []struct {
		name     string
		delivery flows.Delivery
		want     time.Duration
	}{
		{"ignored without max", flows.Delivery{Retry: 1, BackoffDelay: time.Second}, time.Second},
		{"capped by max", flows.Delivery{Retry: 1, BackoffDelay: time.Second, RetryAfterMax: 2 * time.Second}, 2 * time.Second},
		{"header wins over a shorter backoff", flows.Delivery{Retry: 1, BackoffDelay: time.Second, RetryAfterMax: time.Minute}, 3 * time.Second},
		{"backoff wins over a shorter header", flows.Delivery{Retry: 1, BackoffDelay: 5 * time.Second, RetryAfterMax: time.Minute}, 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				step := failN(1, busy)
				f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: step, Delivery: &tc.delivery}}})
				if _, err := f.Handle(context.Background(), newEvent("1", nil)); err != nil {
					t.Fatal(err)
				}
				if got := gaps(attemptTimes(step)); len(got) != 1 || got[0] != tc.want {
					t.Errorf("wait = %v, want %v", got, tc.want)
				}
			})
		})
	}
}

func TestNonRetryableFailuresGoStraightToTheDeadLetterSink(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		attempts  int
		wantCode  int32
		wantData  string
		wantStack bool
	}{
		{"permanent", flows.Permanent(errors.New("bad order")), 1, 500, "bad order", false},
		{"400", &flows.HTTPError{StatusCode: 400, Body: []byte("no such field")}, 1, 400, "no such field", false},
		{"302 is a failure, not retried", &flows.HTTPError{StatusCode: 302}, 1, 302, "", false},
		{"503 is retried", &flows.HTTPError{StatusCode: 503, Body: []byte("try later")}, 3, 503, "try later", false},
		{"404 is retried", &flows.HTTPError{StatusCode: 404}, 3, 404, "", false},
		{"plain error is retried", errors.New("db down"), 3, 500, "db down", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dls := flowstest.NewRecorder()
			step := failN(100, tc.err)
			f := start(t, &flows.Sequence{Name: "orders", Steps: []flows.Step{{Subscriber: step}},
				Delivery: &flows.Delivery{Retry: 2, DeadLetter: dls}})
			orig := newEvent("42", map[string]string{"order": "A"})
			orig.SetExtension("tenant", "acme")
			if _, err := f.Handle(context.Background(), orig); err != nil {
				t.Fatalf("Handle = %v: a dead-lettered event counts as handled", err)
			}
			if step.Len() != tc.attempts {
				t.Errorf("attempts = %d, want %d", step.Len(), tc.attempts)
			}
			got := dls.Events()
			if len(got) != 1 {
				t.Fatalf("dead-letter sink got %d events", len(got))
			}
			dl := got[0]
			if dl.ID() != "42" || string(dl.Data()) != `{"order":"A"}` || dl.Extensions()["tenant"] != "acme" {
				t.Errorf("dead letter is not the original event: %s", dl)
			}
			if dest := dl.Extensions()[flows.ExtensionErrorDest]; dest != "orders/steps[0]" {
				t.Errorf("knativeerrordest = %v", dest)
			}
			if code, _ := types.ToInteger(dl.Extensions()[flows.ExtensionErrorCode]); code != tc.wantCode {
				t.Errorf("knativeerrorcode = %v, want %d", dl.Extensions()[flows.ExtensionErrorCode], tc.wantCode)
			}
			data, _ := dl.Extensions()[flows.ExtensionErrorData].(string)
			raw, err := base64.StdEncoding.DecodeString(data)
			if err != nil || string(raw) != tc.wantData {
				t.Errorf("knativeerrordata = %q (%q), want base64 of %q", data, raw, tc.wantData)
			}
		})
	}
}

func TestErrorDataIsEncodedThenCut(t *testing.T) {
	dls := flowstest.NewRecorder()
	body := strings.Repeat("x", 5000)
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: failN(1, &flows.HTTPError{StatusCode: 400, Body: []byte(body)})}},
		Delivery: &flows.Delivery{DeadLetter: dls}})
	f.Handle(context.Background(), newEvent("1", nil))
	data := dls.Events()[0].Extensions()[flows.ExtensionErrorData].(string)
	if len(data) != 1024 || data != base64.StdEncoding.EncodeToString([]byte(body))[:1024] {
		t.Errorf("knativeerrordata has %d characters, want the first 1024 of the base64 encoding", len(data))
	}
}

func TestReplyFailureDeadLettersTheOriginalEvent(t *testing.T) {
	dls := flowstest.NewRecorder()
	reply := failN(100, &flows.HTTPError{URL: "http://display", StatusCode: 500})
	var calls int
	f := start(t, &flows.Sequence{
		Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			calls++
			e.SetType("changed")
			return &e, nil
		})}},
		Reply:    reply,
		Delivery: &flows.Delivery{Retry: 1, DeadLetter: dls},
	})
	f.Handle(context.Background(), newEvent("1", nil))
	if calls != 1 {
		t.Errorf("subscriber called %d times: a failing reply must not re-run it", calls)
	}
	if reply.Len() != 2 {
		t.Errorf("reply attempts = %d, want 2 (same retry policy)", reply.Len())
	}
	dl := dls.Events()[0]
	if dl.Type() != "test.event" {
		t.Errorf("dead letter type = %q, want the original event's", dl.Type())
	}
	if dl.Extensions()[flows.ExtensionErrorDest] != "sequence/reply" {
		t.Errorf("knativeerrordest = %v, want the reply", dl.Extensions()[flows.ExtensionErrorDest])
	}
}

func TestSubscriptionInheritsTheFlowDelivery(t *testing.T) {
	own, inherited := failN(100, errors.New("x")), failN(100, errors.New("x"))
	p := start(t, &flows.Parallel{
		Branches: []flows.Branch{{Subscriber: own, Delivery: &flows.Delivery{Retry: 1}}, {Subscriber: inherited}},
		Delivery: &flows.Delivery{Retry: 3},
	})
	p.Handle(context.Background(), newEvent("1", nil))
	if own.Len() != 2 || inherited.Len() != 4 {
		t.Errorf("attempts: own policy %d (want 2), inherited %d (want 4)", own.Len(), inherited.Len())
	}
}

func TestTimeoutFailsTheAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dls := flowstest.NewRecorder()
		var attempts int
		slow := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			attempts++
			if attempts == 1 {
				<-ctx.Done() // honours its context
				return nil, ctx.Err()
			}
			if attempts == 2 {
				time.Sleep(2 * time.Second) // notices it late
				return nil, ctx.Err()
			}
			time.Sleep(2 * time.Second) // ignores it, but succeeds: the work is done
			return &e, nil
		})
		out := flowstest.NewRecorder()
		f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: slow}}, Reply: out,
			Delivery: &flows.Delivery{Retry: 1, Timeout: time.Second, DeadLetter: dls}})
		begin := time.Now()
		f.Handle(context.Background(), newEvent("1", nil))
		if attempts != 2 || len(out.Events()) != 0 {
			t.Fatalf("attempts = %d, replies = %d; want 2 timed-out attempts and no reply", attempts, len(out.Events()))
		}
		if el := time.Since(begin); el != 3*time.Second {
			t.Errorf("took %v, want 1s (timeout) + 2s (late handler)", el)
		}
		if _, err := f.Handle(context.Background(), newEvent("2", nil)); err != nil || len(out.Events()) != 1 {
			t.Errorf("late success: %v, %d replies; want it delivered once", err, len(out.Events()))
		}
		dl := dls.Events()[0]
		raw, _ := base64.StdEncoding.DecodeString(dl.Extensions()[flows.ExtensionErrorData].(string))
		if !strings.Contains(string(raw), "timed out") {
			t.Errorf("error data %q does not say the attempt timed out", raw)
		}
	})
}

func TestPanicIsAFailedAttempt(t *testing.T) {
	dls := flowstest.NewRecorder()
	var calls int
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		calls++
		if calls == 1 {
			var m map[string]int
			m["boom"]++ // nil map write
		}
		return &e, nil
	})}}, Delivery: &flows.Delivery{Retry: 1, DeadLetter: dls}})
	if _, err := f.Handle(context.Background(), newEvent("1", nil)); err != nil {
		t.Fatal(err)
	}
	if calls != 2 || len(dls.Events()) != 0 {
		t.Errorf("calls = %d, dead letters = %d: a panic is one failed attempt, then retried", calls, len(dls.Events()))
	}

}

func TestPanicErrorKeepsTheStack(t *testing.T) {
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
		panic("kaboom")
	})}}})
	_, err := f.Handle(context.Background(), newEvent("1", nil))
	var pe *flows.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Handle = %v, want a *PanicError inside", err)
	}
	if pe.Value != "kaboom" || !strings.Contains(string(pe.Stack), "delivery_test.go") {
		t.Errorf("PanicError = %v with stack:\n%s", pe.Value, pe.Stack)
	}
}

func TestStartCopiesTheDeliveryPolicy(t *testing.T) {
	step := failN(100, errors.New("down"))
	d := &flows.Delivery{Retry: 1}
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: step, Delivery: d}}})
	d.Retry = 5 // the running flow keeps the policy it started with
	f.Handle(context.Background(), newEvent("1", nil))
	if got := step.Len(); got != 2 {
		t.Errorf("attempts = %d, want 2: a change to the definition after Start must not reach the flow", got)
	}
}
