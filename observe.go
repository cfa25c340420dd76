package flows

import (
	"context"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// An Observer is told what flows, ingresses and sources do with each event,
// so that tracing, metrics and logging can be added from outside without
// the core depending on them: the module
// github.com/eventflows/flows/otelflows implements one with OpenTelemetry.
// Install it with [WithObserver] (and [IngressObserver]).
//
// In the spirit of net/http/httptrace, every hook is optional and is a
// plain function. A hook that starts something returns the context to use
// for it (say, with a span) and a function that the core calls once it is
// over; by then the info struct it was given holds the result. Hooks run
// synchronously on the delivery path, possibly concurrently: they must be
// fast and safe for concurrent use, and must not keep the info structs or
// events after returning.
//
// Without an observer the core only checks for nil: observing costs nothing
// when it is off. An observer that may have nowhere to report (say, no
// telemetry backend configured yet) sets Enabled, so that it costs as
// little while it is off.
type Observer struct {
	// Enabled, if set, is asked before observing each accept, delivery
	// (with its reply or dead-letter hop), HTTP request, ingress request
	// and tick: when it returns false the core skips the hooks of that one
	// as if there were no observer, at the cost of the call. Start is not
	// gated. It must be cheap and safe for concurrent use.
	Enabled func(ctx context.Context) bool

	// Accept is called when an event enters a flow through [Flow.Send],
	// [Flow.TrySend] or [Flow.Handle] (and so through an ingress, a Ping
	// or another flow), before it is published to the flow's first channel.
	// It may set extensions on a.Event, such as the trace context; done is
	// called with the result of the publish.
	Accept func(ctx context.Context, a *AcceptInfo) (_ context.Context, done func(err error))

	// Deliver is called when a subscription starts one attempt of a
	// message: the call of its subscriber, then the reply hop or the
	// dead-letter hop that follows. done is called when the attempt is
	// over, with d's result fields set, just before the message is
	// acknowledged or handed back for a retry (so a [Flow.Handle] that
	// returns finds every done called). Retries through the channel are
	// separate calls.
	Deliver func(ctx context.Context, d *DeliveryInfo) (_ context.Context, done func())

	// Attempt is called around each call of a handler: a subscriber (inside
	// Deliver), a reply, a dead-letter sink, a Ping's sink. done is called
	// when the handler has returned, with a's result fields set.
	Attempt func(ctx context.Context, a *AttemptInfo) (_ context.Context, done func())

	// Publish is called before a subscription publishes a reply to the
	// next channel of its flow (the next step of a Sequence, a Parallel
	// branch past its filter). It may set extensions on e, such as the
	// trace context; ctx is the one of the delivery.
	Publish func(ctx context.Context, channel string, e *event.Event)

	// Request is called before an [HTTPTarget] sends e, with the request's
	// headers; it may add headers (such as W3C traceparent) and set
	// extensions on e, which is encoded afterwards. It is called for the
	// targets that a flow, ingress or source observed by this observer
	// calls, through the context.
	Request func(ctx context.Context, e *event.Event, h http.Header)

	// Ingress is called when an [Ingress] has read a valid event from r,
	// before it hands the event to its destination; done is called with
	// the status code of the answer.
	Ingress func(ctx context.Context, r *http.Request, e *event.Event) (_ context.Context, done func(status int))

	// Tick is called when a [Ping] source sends the event of a tick; done
	// is called once the event was delivered to the sink, dead-lettered or
	// given up, with t's result fields set.
	Tick func(ctx context.Context, t *TickInfo) (_ context.Context, done func())

	// Start is called when a flow has started; the function it returns,
	// if not nil, is called once the flow has stopped. See [Flow.Queues].
	Start func(f *Flow) (stopped func())
}

// WithObserver makes flows and sources report to o. Nil, the default,
// observes nothing.
func WithObserver(o *Observer) Option {
	return func(opts *options) { opts.observer = o }
}

// IngressObserver makes the ingress report to o. By default an ingress
// whose destination is a [Flow] uses the flow's observer.
func IngressObserver(o *Observer) IngressOption { return func(in *Ingress) { in.obs = o } }

// AcceptInfo describes an event entering a flow.
type AcceptInfo struct {
	Flow  string       // the flow's name
	Event *event.Event // the event as the flow accepted it
	// Header holds the pass-through headers (see [PassThroughHeaders]) of
	// the HTTP request that brought the event, if any: an ingress or a
	// [NewHTTPHandler].
	Header http.Header
}

// Outcome is how one attempt of a message ended.
type Outcome string

const (
	// OutcomeDelivered: the subscriber succeeded and its reply, if any,
	// was delivered.
	OutcomeDelivered Outcome = "delivered"
	// OutcomeFiltered: a Parallel's filter answered with no event.
	OutcomeFiltered Outcome = "filtered"
	// OutcomeRetried: the attempt failed and the message will be delivered
	// again after DeliveryInfo.Wait.
	OutcomeRetried Outcome = "retried"
	// OutcomeDeadLettered: delivery failed for good and the dead-letter
	// sink took the event.
	OutcomeDeadLettered Outcome = "dead-lettered"
	// OutcomeFailed: delivery failed for good and the event was not
	// delivered (see [DeliveryError]).
	OutcomeFailed Outcome = "failed"
	// OutcomeStopped: the flow was stopped hard during the attempt; the
	// event is left undelivered.
	OutcomeStopped Outcome = "stopped"
)

// DeliveryInfo describes one attempt of a subscription's message.
type DeliveryInfo struct {
	Flow string // the flow's name
	// Step is the subscription's place in the flow's definition, such as
	// "steps[1]", "branches[0].filter" or "branches[0]".
	Step string
	// Subscription is the channel-level name, such as "seq-kn-sequence-1".
	Subscription string
	// Destination is what knativeerrordest names when the subscriber
	// fails: its URL, or its path in the flow.
	Destination string
	// Attempt is the number of this attempt, from 1, of MaxAttempts.
	Attempt, MaxAttempts int
	Event                *event.Event // the message's event

	// Set before done is called.
	Outcome Outcome
	Err     error // the failure, for every outcome but delivered and filtered
	// Wait is the delay before the retry, when Outcome is OutcomeRetried.
	Wait time.Duration
	// Forwarded is true when the reply was published to the flow's next
	// channel: the event's journey goes on in the flow. When it is false
	// and the outcome is not retried or stopped, the event has left the
	// flow (or ended there) on this path.
	Forwarded bool
}

// Role is what a handler is to the event it is called with.
type Role string

const (
	RoleSubscriber Role = "subscriber"  // a step's or a branch's subscriber, or a filter
	RoleReply      Role = "reply"       // a reply destination
	RoleDeadLetter Role = "dead-letter" // a dead-letter sink, given an event whose delivery failed for good
	RoleSink       Role = "sink"        // a Ping's sink
)

// AttemptInfo describes one call of a handler.
type AttemptInfo struct {
	// Flow is the name of the flow, or of the Ping source.
	Flow string
	// Step is as in [DeliveryInfo]; "sink" for a Ping.
	Step string
	// Role is what the handler is to the event.
	Role Role
	// Destination names the handler, as knativeerrordest does: its URL,
	// or its path in the flow.
	Destination string
	// Attempt is the number of this attempt, from 1, of MaxAttempts.
	Attempt, MaxAttempts int
	// Event is what the handler is given; Request and other hooks may set
	// extensions on it before the call.
	Event *event.Event

	// Set before done is called.
	Reply *event.Event // the handler's answer; nil for none
	Err   error        // the attempt's failure, if it failed
}

// TickInfo describes the event of a [Ping] tick.
type TickInfo struct {
	Source string       // the Ping's name
	Event  *event.Event // the tick's event, as sent to the sink

	// Set before done is called.
	Outcome  Outcome // delivered, dead-lettered, failed or stopped
	Err      error   // why the sink did not take the event; nil when delivered
	Attempts int     // the attempts made on the sink
}

// Queue is a subscription's share of its channel; see [Flow.Queues].
type Queue struct {
	Subscription string // the channel-level name, as in [DeliveryInfo]
	Step         string // the subscription's place in the flow, as in [DeliveryInfo]
	// Len is the number of events the channel holds for the subscription,
	// accepted and not yet acknowledged: queued, being delivered, or
	// waiting for a retry.
	Len int
}

// Queues reports how full the flow's in-memory channels are, one entry per
// subscription, in the flow's order. Subscriptions of other channels are
// left out: they keep their own counts.
func (f *Flow) Queues() []Queue {
	var out []Queue
	for _, st := range f.stages {
		for _, s := range st.subs {
			// No lock: a publisher waiting for room holds the channel's.
			if q, ok := s.recv.(*memQueue); ok {
				out = append(out, Queue{Subscription: s.name, Step: s.step, Len: int(q.used.Load())})
			}
		}
	}
	return out
}

// Len returns the number of events the channel holds for the named
// subscription, accepted and not yet acknowledged, or 0 if there is no such
// subscription.
func (c *InMemoryChannel) Len(subscription string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, q := range c.subs {
		if q.name == subscription {
			return int(q.used.Load())
		}
	}
	return 0
}

// active returns o if it observes what ctx is about, or nil.
func (o *Observer) active(ctx context.Context) *Observer {
	if o == nil || (o.Enabled != nil && !o.Enabled(ctx)) {
		return nil
	}
	return o
}

type observerKey struct{}

// withObserver puts o in ctx for the handlers that need it (HTTPTarget).
func withObserver(ctx context.Context, o *Observer) context.Context {
	if o == nil || o.Request == nil {
		return ctx
	}
	return context.WithValue(ctx, observerKey{}, o)
}

func observerFrom(ctx context.Context) *Observer {
	o, _ := ctx.Value(observerKey{}).(*Observer)
	return o
}

// observedCall is call under the Attempt hook, for an observed hop.
func observedCall(ctx context.Context, o *Observer, a *AttemptInfo, h Handler, e event.Event, d *Delivery) (*event.Event, error) {
	if o.Attempt == nil {
		return call(ctx, h, e, d)
	}
	a.Event = &e
	ctx, done := o.Attempt(ctx, a)
	a.Reply, a.Err = call(ctx, h, e, d)
	if done != nil {
		done()
	}
	return a.Reply, a.Err
}

// statusWriter remembers the status of an answer for the Ingress hook.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
