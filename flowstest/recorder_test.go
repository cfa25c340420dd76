package flowstest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

var errBoom = errors.New("boom")

// epoch is where a synctest bubble's clock starts.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func TestWaitTimeoutListsWhatArrived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := flowstest.NewRecorder()
		ctx := t.Context()
		rec.Handle(ctx, flowstest.NewEvent("a", "order.created", "/shop", `{"id": 1}`))
		rec.Handle(ctx, flowstest.NewEvent("b", "order.paid", "/shop", nil, flowstest.WithSubject("42")))

		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		got, err := rec.Wait(wctx, 3)

		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait error = %v, want it to wrap context.DeadlineExceeded", err)
		}
		var we *flowstest.WaitError
		if !errors.As(err, &we) || we.Want != 3 || len(we.Records) != 2 {
			t.Fatalf("Wait error = %#v, want a WaitError for 3 with 2 records", err)
		}
		if ids := flowstest.IDs(got); !slices.Equal(ids, []string{"a", "b"}) {
			t.Errorf("Wait returned %v, want the events that arrived: [a b]", ids)
		}
		want := `flowstest: waited for 3 event(s), got 2: context deadline exceeded; received:
	1. attempt 1: id="a" type="order.created" source="/shop" data={"id":1}
	2. attempt 1: id="b" type="order.paid" source="/shop" subject="42"`
		if err.Error() != want {
			t.Errorf("message:\n%s\nwant:\n%s", err, want)
		}
	})
}

func TestWaitErrorListsAtMostTwentyEvents(t *testing.T) {
	rec := flowstest.NewRecorder()
	for i := range 25 {
		rec.Handle(t.Context(), flowstest.NewEvent(strconv.Itoa(i), "t", "/s", nil))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := rec.Wait(ctx, 30)
	msg := fmt.Sprint(err)
	if !strings.Contains(msg, `20. attempt 1: id="19"`) || strings.Contains(msg, `id="20"`) || !strings.HasSuffix(msg, "... and 5 more") {
		t.Errorf("message does not list the first 20 events then a count:\n%s", msg)
	}
}

// fatalTB records what a helper reports and stops its goroutine as
// testing.T.Fatal does.
type fatalTB struct {
	testing.TB
	ctx    context.Context
	mu     sync.Mutex
	errors []string
	fatal  bool
}

func (f *fatalTB) Helper()                  {}
func (f *fatalTB) Context() context.Context { return f.ctx }
func (f *fatalTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fatalTB) Fatal(args ...any) {
	f.mu.Lock()
	f.errors = append(f.errors, fmt.Sprint(args...))
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn as a test body would and returns once it returned or failed.
func (f *fatalTB) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func TestMustWaitFailsTheTestWithWhatArrived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := flowstest.NewRecorder()
		rec.Handle(t.Context(), flowstest.NewEvent("only", "t", "/s", nil))
		tb := &fatalTB{ctx: t.Context()}
		returned := false
		tb.run(func() {
			rec.MustWait(tb, 2)
			returned = true
		})
		if returned || !tb.fatal {
			t.Fatal("MustWait returned instead of stopping the test")
		}
		if got := time.Since(epoch); got != flowstest.WaitTimeout {
			t.Errorf("MustWait gave up after %s, want %s", got, flowstest.WaitTimeout)
		}
		if msg := tb.errors[0]; !strings.Contains(msg, "waited for 2 event(s), got 1") || !strings.Contains(msg, `id="only"`) {
			t.Errorf("MustWait reported %q, want the count and the event that arrived", msg)
		}
	})
}

func TestWaitReturnsFirstNInArrivalOrder(t *testing.T) {
	rec := flowstest.NewRecorder()
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { rec.Handle(t.Context(), flowstest.NewEvent(strconv.Itoa(i), "t", "/s", nil)) })
	}
	got := rec.MustWait(t, n/2)
	wg.Wait()
	all := rec.Events()
	if len(got) != n/2 || len(all) != n {
		t.Fatalf("Wait returned %d events and %d were recorded, want %d and %d", len(got), len(all), n/2, n)
	}
	if !slices.Equal(flowstest.IDs(got), flowstest.IDs(all[:n/2])) {
		t.Errorf("Wait returned %v, want the first %d in arrival order %v", flowstest.IDs(got), n/2, flowstest.IDs(all[:n/2]))
	}
	ids := flowstest.IDs(all)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) != n {
		t.Errorf("recorded %d distinct events, want %d", len(ids), n)
	}
}

func TestWaitManyWaiters(t *testing.T) {
	rec := flowstest.NewRecorder()
	var wg sync.WaitGroup
	results := make([]int, 5)
	for i := range results {
		wg.Go(func() {
			got, err := rec.Wait(t.Context(), i+1)
			if err != nil {
				t.Error(err)
			}
			results[i] = len(got)
		})
	}
	for i := range 5 {
		rec.Handle(t.Context(), flowstest.NewEvent(strconv.Itoa(i), "t", "/s", nil))
	}
	wg.Wait()
	if !slices.Equal(results, []int{1, 2, 3, 4, 5}) {
		t.Errorf("waiters got %v events, want [1 2 3 4 5]", results)
	}
}

// outcome describes what one call of a handler returned.
func outcome(h flows.Handler, e event.Event) (s string) {
	defer func() {
		if r := recover(); r != nil {
			s = fmt.Sprint("panic ", r)
		}
	}()
	reply, err := h.Handle(context.Background(), e.Clone()) // a handler owns its event
	switch {
	case err != nil:
		return "error " + err.Error()
	case reply == nil:
		return "no event"
	default:
		return "reply " + reply.ID() + " " + reply.Type()
	}
}

func TestScriptIsReadPerEvent(t *testing.T) {
	rec := flowstest.NewRecorder(flowstest.Fail(errBoom).Times(2), flowstest.Echo())
	a := flowstest.NewEvent("a", "t", "/s", nil)
	b := flowstest.NewEvent("b", "t", "/s", nil)
	var got []string
	for _, e := range []event.Event{a, b, a, a, b, b, a} {
		got = append(got, e.ID()+": "+outcome(rec, e))
	}
	want := []string{"a: error boom", "b: error boom", "a: error boom", "a: reply a t", "b: error boom", "b: reply b t", "a: reply a t"}
	if !slices.Equal(got, want) {
		t.Errorf("outcomes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rec.Attempts("a") != 4 || rec.Attempts("b") != 3 || rec.Attempts("c") != 0 {
		t.Errorf("attempts a=%d b=%d c=%d, want 4 3 0", rec.Attempts("a"), rec.Attempts("b"), rec.Attempts("c"))
	}
	var attempts []int
	for _, r := range rec.Records() {
		attempts = append(attempts, r.Attempt)
	}
	if !slices.Equal(attempts, []int{1, 1, 2, 3, 2, 3, 4}) {
		t.Errorf("record attempts %v, want [1 1 2 3 2 3 4]", attempts)
	}
}

func TestReplies(t *testing.T) {
	in := flowstest.NewEvent("1", "t", "/s", nil)
	fixed := flowstest.NewEvent("r", "reply", "/s", nil)
	renamed := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		e.SetType("renamed")
		return &e, nil
	})
	for _, tc := range []struct {
		name  string
		reply []flowstest.Reply
		want  string
	}{
		{"zero value", nil, "no event"},
		{"NoReply", []flowstest.Reply{flowstest.NoReply()}, "no event"},
		{"Echo", []flowstest.Reply{flowstest.Echo()}, "reply 1 t"},
		{"ReplyWith", []flowstest.Reply{flowstest.ReplyWith(fixed)}, "reply r reply"},
		{"Fail", []flowstest.Reply{flowstest.Fail(errBoom)}, "error boom"},
		{"Panic", []flowstest.Reply{flowstest.Panic("oops")}, "panic oops"},
		{"Delegate", []flowstest.Reply{flowstest.Delegate(renamed)}, "reply 1 renamed"},
		{"last repeats", []flowstest.Reply{flowstest.NoReply(), flowstest.Echo()}, "reply 1 t"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := flowstest.NewRecorder(tc.reply...)
			if tc.reply == nil {
				rec = new(flowstest.Recorder)
			}
			// The second and third calls: the last reply of a script repeats.
			outcome(rec, in)
			outcome(rec, in)
			if got := outcome(rec, in); got != tc.want {
				t.Errorf("third call: %s, want %s", got, tc.want)
			}
			if rec.Len() != 3 {
				t.Errorf("recorded %d calls, want 3 (a panic is recorded too)", rec.Len())
			}
		})
	}
}

func TestRecordedEventIsACopy(t *testing.T) {
	rec := flowstest.NewRecorder(flowstest.Delegate(flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		e.SetType("changed")
		e.SetData(event.ApplicationJSON, map[string]int{"n": 2})
		return &e, nil
	})))
	outcome(rec, flowstest.NewEvent("1", "original", "/s", `{"n":1}`))
	got := rec.Events()
	flowstest.AssertEvent(t, got[0], flowstest.NewEvent("1", "original", "/s", `{"n":1}`))
	got[0].SetType("mutated by the test")
	flowstest.AssertEvent(t, rec.Events()[0], flowstest.NewEvent("1", "original", "/s", `{"n":1}`))
}

func TestRecorderInAFlow(t *testing.T) {
	ctx := t.Context()
	perm := flowstest.NewRecorder(flowstest.Fail(flows.Permanent(errBoom)))
	panicky := flowstest.NewRecorder(flowstest.Panic("bad event"))
	dead := flowstest.NewRecorder()
	f, err := (&flows.Parallel{Name: "p", Branches: []flows.Branch{
		{Subscriber: perm},
		{Subscriber: panicky},
	}, Delivery: &flows.Delivery{Retry: 3, DeadLetter: dead}}).Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Handle(ctx, flowstest.NewEvent("1", "t", "/s", nil)); err != nil {
		t.Fatal(err)
	}
	if perm.Attempts("1") != 1 {
		t.Errorf("a permanent failure was attempted %d times, want 1", perm.Attempts("1"))
	}
	if panicky.Attempts("1") != 4 {
		t.Errorf("a panicking subscriber was attempted %d times, want 4", panicky.Attempts("1"))
	}
	letters := dead.Events()
	flowstest.AssertEvents(t, letters, []event.Event{
		flowstest.NewEvent("1", "t", "/s", nil,
			flowstest.WithExtension(flows.ExtensionErrorDest, "p/branches[0]"),
			flowstest.WithExtension(flows.ExtensionErrorCode, 500),
			flowstest.WithExtension(flows.ExtensionErrorData, "Ym9vbQ==")), // "boom"
		flowstest.NewEvent("1", "t", "/s", nil,
			flowstest.WithExtension(flows.ExtensionErrorDest, "p/branches[1]"),
			flowstest.WithExtension(flows.ExtensionErrorCode, 500)),
	}, flowstest.AnyOrder(), flowstest.IgnoreAttributes(flows.ExtensionErrorData))
	for _, e := range letters {
		if e.Extensions()[flows.ExtensionErrorDest] == "p/branches[1]" && !strings.Contains(flowstest.ErrorData(e), "panicked: bad event") {
			t.Errorf("dead letter of the panicking branch: error data %q", flowstest.ErrorData(e))
		}
	}
}
