// Package flows composes CloudEvents into event flows inside a Go process,
// with the semantics of Knative Eventing's Sequence, Parallel, channels,
// subscriptions, delivery specs and PingSource.
//
// A flow is described with plain values ([Sequence], [Parallel], [Broker],
// [Ping]) and started with their Start or Run methods. Everything that receives events
// (a Go function, an HTTP endpoint, a running flow) is a [Handler], so flows
// nest: a Parallel can be a step of a Sequence and the reverse.
//
// Events are [github.com/cloudevents/sdk-go/v2/event.Event] values. A handler
// owns the event it is given: it may change it and return it as its reply.
//
// # Options
//
// Options are named after what they configure. The options of a running
// flow ([Option], given to Start and Run) are With…: [WithCapacity],
// [WithLogger]. Every other kind of option starts with the name of its
// target: [IngressOption]s with Ingress ([IngressSynchronous],
// [IngressMaxBodyBytes]), [ServerOption]s with Server ([ServerTLS]),
// [TypedOption]s with Typed ([TypedReplyType]). [HTTPTarget] and the
// definitions ([Sequence], [Parallel], [Ping], [Delivery]) are structs whose
// fields are their settings.
package flows

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
)

// A Handler receives an event and answers with one of three outcomes:
//
//   - a reply event and a nil error: the event is forwarded to the next hop
//     (the next step of a Sequence, a branch's subscriber, a reply destination);
//   - a nil event and a nil error: the event was handled and nothing follows;
//     the flow stops there silently, as Knative does for an empty 2xx answer;
//   - a non-nil error: the attempt failed. It is retried according to the
//     subscription's [Delivery] unless it is marked with [Permanent], and
//     goes to the dead-letter sink when retries are exhausted.
//
// Handle must honour ctx: it is cancelled when the attempt times out or the
// flow is closed. A Handler may be called concurrently when its subscription
// has a concurrency above one. A panic in Handle is recovered and counts as
// a failed attempt (see [PanicError]).
type Handler interface {
	Handle(ctx context.Context, e event.Event) (*event.Event, error)
}

// HandlerFunc adapts an ordinary function to a [Handler].
type HandlerFunc func(ctx context.Context, e event.Event) (*event.Event, error)

// Handle calls f(ctx, e).
func (f HandlerFunc) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	return f(ctx, e)
}

// Match returns a filter: a [Handler] that passes the event through unchanged
// when pred reports true and answers with no event otherwise. Used as a
// [Branch] filter it decides which branches see an event.
func Match(pred func(e event.Event) bool) Handler {
	return HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		if pred(e) {
			return &e, nil
		}
		return nil, nil
	})
}

// Discard is a [Handler] that accepts every event and replies with none.
var Discard Handler = HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, nil })

// isNil reports whether h is missing, including nil values of this package's
// handler types wrapped in a non-nil interface.
func isNil(h Handler) bool {
	switch v := h.(type) {
	case nil:
		return true
	case HandlerFunc:
		return v == nil
	case *HTTPTarget:
		return v == nil
	case *Flow:
		return v == nil
	}
	return false
}

// validateHandler checks what can be checked of a handler before it runs.
// A nil value in a non-nil interface would panic on every event, so it is
// reported, in optional fields too.
func validateHandler(p *problems, path string, h Handler) {
	if h != nil && isNil(h) {
		p.add(path, "missing: a nil %T", h)
		return
	}
	if t, ok := h.(*HTTPTarget); ok {
		if err := t.validate(); err != nil {
			p.wrap(path, err)
		}
	}
}

// destination is how knativeerrordest names a handler: its URL if it has
// one, else its place in the flow definition.
func destination(h Handler, path string) string {
	if d, ok := h.(interface{ destination() string }); ok {
		return d.destination()
	}
	return path
}
