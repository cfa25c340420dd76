package flowstest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// WaitTimeout bounds [Recorder.MustWait]. Inside a testing/synctest bubble
// it is fake time, so a wait for events that never come fails at once
// instead of hanging; use [Recorder.MustWaitFor] when the flow under test
// needs more fake time than that.
const WaitTimeout = 10 * time.Second

// A Record is one call of a [Recorder]'s Handle.
type Record struct {
	Event   event.Event // a copy of the event as it was received
	Attempt int         // 1 for the first call with this event ID, 2 for the next...
	Time    time.Time   // when the call began (fake time inside a synctest bubble)
}

// A Recorder is a [flows.Handler] for tests: it records every event it
// receives and answers as its script says. It is safe for concurrent use.
//
// The script is read per event: the nth call with a given event ID (its
// nth attempt) gets the nth [Reply], and once the script is used up its last
// reply answers every later attempt. So
//
//	flowstest.NewRecorder(flowstest.Fail(errBoom).Times(2), flowstest.Echo())
//
// fails the first two attempts of every event and then replies with the
// event itself. A Recorder with no script (the zero value included) answers
// every call with no event.
//
// An event is recorded before its reply is computed, so a call that blocks
// or panics is recorded too.
type Recorder struct {
	script []Reply

	mu       sync.Mutex
	records  []Record
	attempts map[string]int
	waiters  []waiter
}

type waiter struct {
	n    int
	done chan struct{}
}

// NewRecorder returns a Recorder that answers with script (see [Recorder]).
func NewRecorder(script ...Reply) *Recorder {
	return &Recorder{script: script}
}

// Handle implements [flows.Handler]: it records e and answers with the
// reply its script gives for this attempt.
func (r *Recorder) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	r.mu.Lock()
	if r.attempts == nil {
		r.attempts = make(map[string]int)
	}
	r.attempts[e.ID()]++
	attempt := r.attempts[e.ID()]
	r.records = append(r.records, Record{Event: e.Clone(), Attempt: attempt, Time: time.Now()})
	n := len(r.records)
	kept := r.waiters[:0]
	for _, w := range r.waiters {
		if n >= w.n {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	r.waiters = kept
	r.mu.Unlock()

	reply := r.replyFor(attempt)
	if reply.fn == nil {
		return nil, nil
	}
	return reply.fn(ctx, e)
}

// replyFor returns the script's reply for the given attempt number.
func (r *Recorder) replyFor(attempt int) Reply {
	if len(r.script) == 0 {
		return Reply{}
	}
	for _, rep := range r.script {
		attempt -= rep.count()
		if attempt <= 0 {
			return rep
		}
	}
	return r.script[len(r.script)-1]
}

// Len returns the number of calls so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.records)
}

// Records returns every call so far, in arrival order.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, len(r.records))
	for i, rec := range r.records {
		rec.Event = rec.Event.Clone()
		out[i] = rec
	}
	return out
}

// Events returns the events received so far, in arrival order, one per
// call: an event that was retried appears once per attempt.
func (r *Recorder) Events() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eventsLocked(len(r.records))
}

func (r *Recorder) eventsLocked(n int) []event.Event {
	out := make([]event.Event, n)
	for i := range n {
		out[i] = r.records[i].Event.Clone()
	}
	return out
}

// Attempts returns how many times an event with the given ID was received.
func (r *Recorder) Attempts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

// Wait blocks until the recorder has received at least n events (counting
// each attempt) and returns the first n, in arrival order. If ctx ends
// first, it returns the events received so far and an error that lists
// them and wraps ctx's error.
func (r *Recorder) Wait(ctx context.Context, n int) ([]event.Event, error) {
	r.mu.Lock()
	if len(r.records) >= n {
		defer r.mu.Unlock()
		return r.eventsLocked(max(n, 0)), nil
	}
	// The channel is made by the waiting goroutine, so that it belongs to
	// the waiter's synctest bubble, if any.
	w := waiter{n: n, done: make(chan struct{})}
	r.waiters = append(r.waiters, w)
	r.mu.Unlock()

	select {
	case <-w.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.eventsLocked(n), nil
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range r.waiters {
		if o.done == w.done {
			r.waiters = append(r.waiters[:i], r.waiters[i+1:]...)
			break
		}
	}
	if len(r.records) >= n {
		// Arrived just as ctx ended.
		return r.eventsLocked(n), nil
	}
	return r.eventsLocked(len(r.records)), &WaitError{Want: n, Records: r.recordsCopyLocked(), Err: context.Cause(ctx)}
}

func (r *Recorder) recordsCopyLocked() []Record {
	out := make([]Record, len(r.records))
	for i, rec := range r.records {
		rec.Event = rec.Event.Clone()
		out[i] = rec
	}
	return out
}

// MustWait is [Recorder.Wait] for tests: it waits up to [WaitTimeout] (and
// no longer than tb's context) and stops the test with a message listing
// what did arrive if fewer than n events came. It returns the first n
// events, in arrival order.
func (r *Recorder) MustWait(tb testing.TB, n int) []event.Event {
	tb.Helper()
	return r.MustWaitFor(tb, n, WaitTimeout)
}

// MustWaitFor is [Recorder.MustWait] with the given timeout. Inside a
// testing/synctest bubble the timeout is fake time: give the time the flow
// under test needs (three hours for three ticks of "@hourly"); the wait
// takes no real time.
func (r *Recorder) MustWaitFor(tb testing.TB, n int, timeout time.Duration) []event.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), timeout)
	defer cancel()
	got, err := r.Wait(ctx, n)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

// WaitError is the error of a [Recorder.Wait] that ended before enough
// events arrived. Its message lists the events that did.
type WaitError struct {
	Want    int      // the number of events waited for
	Records []Record // the calls received before the wait ended
	Err     error    // why the wait ended: the context's error or cause
}

// maxListed bounds the events a WaitError lists.
const maxListed = 20

// Error says how many events came and lists them.
func (e *WaitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flowstest: waited for %d event(s), got %d: %v", e.Want, len(e.Records), e.Err)
	if len(e.Records) > 0 {
		b.WriteString("; received:")
	}
	for i, rec := range e.Records {
		if i == maxListed {
			fmt.Fprintf(&b, "\n\t... and %d more", len(e.Records)-maxListed)
			break
		}
		fmt.Fprintf(&b, "\n\t%d. attempt %d: %s", i+1, rec.Attempt, Summary(rec.Event))
	}
	return b.String()
}

// Unwrap returns the context's error.
func (e *WaitError) Unwrap() error { return e.Err }

// A Reply is one scripted answer of a [Recorder]. It answers one attempt
// unless [Reply.Times] says more.
type Reply struct {
	n  int
	fn func(ctx context.Context, e event.Event) (*event.Event, error)
}

func (r Reply) count() int { return max(r.n, 1) }

// Times returns a copy of r that answers n attempts in a row; n below 1
// counts as 1.
func (r Reply) Times(n int) Reply {
	r.n = n
	return r
}

// Echo replies with the event received, unchanged.
func Echo() Reply {
	return Reply{fn: func(_ context.Context, e event.Event) (*event.Event, error) { return &e, nil }}
}

// NoReply answers with no event: the event was handled and nothing follows.
func NoReply() Reply { return Reply{} }

// ReplyWith replies with a copy of e.
func ReplyWith(e event.Event) Reply {
	return Reply{fn: func(context.Context, event.Event) (*event.Event, error) {
		c := e.Clone()
		return &c, nil
	}}
}

// Fail fails the attempt with err. The flow retries it unless err is
// marked with [flows.Permanent].
func Fail(err error) Reply {
	return Reply{fn: func(context.Context, event.Event) (*event.Event, error) { return nil, err }}
}

// Panic panics with v; the flow recovers it as a failed attempt
// ([flows.PanicError]).
func Panic(v any) Reply {
	return Reply{fn: func(context.Context, event.Event) (*event.Event, error) { panic(v) }}
}

// Block blocks until the attempt's context ends and fails with its error:
// the handler of a test of [flows.Delivery.Timeout] or of a hard stop.
func Block() Reply {
	return Reply{fn: func(ctx context.Context, _ event.Event) (*event.Event, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
}

// Delegate answers as h does, so that a real handler can be recorded.
func Delegate(h flows.Handler) Reply {
	if h == nil {
		panic("flowstest: Delegate of a nil handler")
	}
	return Reply{fn: h.Handle}
}
