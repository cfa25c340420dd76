package flows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Request delivers e as [Flow.Handle] does, and returns the events the
// flow emitted for it at its ends, in the order they left. An end is where
// an event leaves the flow:
//
//   - a subscriber whose replies have no destination (a [Sequence]'s last
//     step, or a [Parallel]'s branch, without a Reply): its reply is an
//     output as soon as it answered;
//   - a reply destination that is not a [*Flow] (Sequence.Reply,
//     Parallel.Reply, Branch.Reply): the event handed to it is an output
//     once it accepted it, as it was handed over;
//   - a [*Flow] as a step, a branch or a reply: Request follows the event
//     into it, and its ends are the request's (the event handed to it is
//     not an output).
//
// So a Sequence gives at most one output (none when a step answered with no
// event), and a Parallel one per branch that passed the event and whose
// subscriber replied. A dead-letter sink is never an end, and a reply that
// is dead-lettered is no output. The outputs go to the reply destinations
// as usual: Request only looks at them. Each is the flow's own copy.
//
// An event is tied to its request by the request's tracker, which travels
// with it, never by its id: requests run concurrently with each other and
// with Send, and two requests with the same id get their own outputs.
//
// Errors are Handle's: a [*DeliveryError] (possibly several joined) if some
// delivery failed past its dead-letter sink, returned with the outputs
// that did leave; ctx.Err() with no outputs if ctx ends first (the event
// goes on in the background). A reply at an end that is not a valid
// CloudEvent fails its delivery, as it does when a Reply follows.
//
// Request needs the tracker to travel, so it refuses with an error
// wrapping [errors.ErrUnsupported] a flow on channels other than
// [InMemoryChannel], and a [Broker]: every reply of a broker's trigger
// re-enters the broker, so no event ever leaves one (Knative answers a
// request through a broker with its RequestReply resource, which
// correlates a reply by an attribute instead). A broker as a step of a
// requested flow is not followed.
func (f *Flow) Request(ctx context.Context, e event.Event) ([]event.Event, error) {
	if err := f.requestable(); err != nil {
		return nil, err
	}
	out := new(outputs)
	if _, err := f.handle(ctx, e, out, false); err != nil {
		if cerr := ctx.Err(); cerr != nil && err == cerr {
			return nil, err
		}
		return out.take(), err
	}
	return out.take(), nil
}

// requestable says why f cannot answer a Request, or nil.
func (f *Flow) requestable() error {
	if f.isBroker() {
		return fmt.Errorf("flows: %s: Request on a broker: %w: the replies of its triggers re-enter it, so no event leaves it",
			f.name, errors.ErrUnsupported)
	}
	for _, st := range f.stages {
		if _, ok := st.ch.(*InMemoryChannel); !ok {
			return fmt.Errorf("flows: %s: Request needs in-memory channels, and the flow has a %T: %w",
				f.name, st.ch, errors.ErrUnsupported)
		}
	}
	return nil
}

// isBroker reports whether f runs a [Broker].
func (f *Flow) isBroker() bool { return f.broker }

// outputs collects a request's outputs, in the order they left.
type outputs struct {
	mu     sync.Mutex
	events []event.Event
}

func (o *outputs) add(e *event.Event) {
	o.mu.Lock()
	o.events = append(o.events, *e)
	o.mu.Unlock()
}

func (o *outputs) take() []event.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.events
}

// outputs returns the request that t's event is part of, or nil.
func (t *tracker) outputs() *outputs {
	if t == nil {
		return nil
	}
	return t.out
}

// follow returns what a call of h hands on of a request's outputs: all of
// them if h is a flow, whose ends are the request's; nothing otherwise (h
// is an end itself, or a subscriber whose reply is what counts).
func follow(h Handler, out *outputs) *outputs {
	if out == nil {
		return nil
	}
	if _, ok := h.(*Flow); ok {
		return out
	}
	return nil
}

// follows is follow for s's subscriber: a Parallel's filter is never
// followed, since its reply is what decides.
func (s *subscription) follows(out *outputs) *outputs {
	if s.filterHop {
		return nil
	}
	return follow(s.subscriber, out)
}

// leaves reports whether a reply of s's subscriber, once delivered, has
// left the request's flows: it has no destination, or one that is neither
// a channel of the flow, nor the broker it re-enters, nor a flow that the
// request follows.
func (s *subscription) leaves() bool {
	if s.reentry {
		return false
	}
	switch s.reply.(type) {
	case channelSink, *Flow:
		return false
	}
	return true
}

// errReplyTimeout is why a replying ingress answers 504.
var errReplyTimeout = errors.New("no answer within the ingress's reply timeout")

// answer writes a replying ingress's answer for outs: 202 for none, 200
// with the event for one (in the request's mode), 200 with a batch for
// several.
func (in *Ingress) answer(w http.ResponseWriter, r *http.Request, outs []event.Event) {
	var err error
	switch {
	case len(outs) == 0:
		w.WriteHeader(http.StatusAccepted)
		return
	case len(outs) > 1:
		var body []byte
		if body, err = json.Marshal(outs); err == nil {
			w.Header().Set("Content-Type", batchMediaType)
			w.WriteHeader(http.StatusOK)
			_, err = w.Write(body)
			if err != nil {
				// The answer is under way: nothing else can be said.
				in.log.LogAttrs(r.Context(), slog.LevelWarn, "flows: writing the answer failed", slog.Any("error", err))
				return
			}
		}
	case structuredRequest(r):
		err = cehttp.WriteResponseWriter(binding.WithForceStructured(r.Context()), binding.ToMessage(&outs[0]), http.StatusOK, w)
	default:
		var written bool
		written, err = writeBinaryResponse(w, &outs[0], http.StatusOK)
		if !written && err == nil {
			err = cehttp.WriteResponseWriter(binding.WithForceBinary(r.Context()), binding.ToMessage(&outs[0]), http.StatusOK, w)
		}
	}
	if err != nil {
		in.fail(w, r, http.StatusInternalServerError, "the reply could not be encoded", err)
	}
}

// batchMediaType is the content type of a CloudEvents JSON batch.
const batchMediaType = "application/cloudevents-batch+json"

// structuredRequest reports whether r carried its event in structured mode.
func structuredRequest(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= len("application/cloudevents+") && strings.EqualFold(ct[:len("application/cloudevents+")], "application/cloudevents+")
}
