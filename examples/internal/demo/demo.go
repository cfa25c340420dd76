// Package demo holds the services of the Knative demos that the examples
// reproduce: the appender, event-display, and the filter and transformer of
// the Parallel demo, written as flows handlers, and a helper that serves
// them over HTTP on 127.0.0.1. The flows themselves are defined in each
// example's main.go.
package demo

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// Message is the payload of the appender, as Knative's sample declares it:
// its Sequence field is serialized as "id".
type Message struct {
	Sequence int    `json:"id"`
	Message  string `json:"message"`
}

// Appender is Knative's appender service: it appends message to the event's
// "message" field and keeps the event's attributes. A non-empty eventType
// replaces the type, as the TYPE setting does.
func Appender(message, eventType string) flows.Handler {
	var opts []flows.TypedOption
	if eventType != "" {
		opts = append(opts, flows.TypedReplyType(eventType))
	}
	return flows.Typed(func(_ context.Context, in Message) (Message, error) {
		in.Message += message
		return in, nil
	}, opts...)
}

// EventDisplay is Knative's event_display service: it prints each event it
// receives to w and replies with no event. Calls are serialized so that
// events do not interleave. If seen is not nil, it is called after each
// event is printed, under the same lock.
func EventDisplay(w io.Writer, seen func(event.Event)) flows.Handler {
	var mu sync.Mutex
	return flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "☁️  cloudevents.Event\n%s", e.String())
		if seen != nil {
			seen(e)
		}
		return nil, nil
	})
}

// Parity tells whether an event's time falls in an even or an odd period:
// the Parallel demo's filter, Math.round(Date.parse(event.time) / period) % 2.
func Parity(e event.Event, period time.Duration) int {
	ms := float64(e.Time().UnixMilli())
	return int(math.Floor(ms/float64(period.Milliseconds())+0.5)) % 2
}

// Filter passes the events whose time has the given parity (0 even, 1 odd)
// and answers with no event for the others, as the demo's filter service does.
func Filter(parity int, period time.Duration) flows.Handler {
	return flows.Match(func(e event.Event) bool { return Parity(e, period) == parity })
}

// Transformer replaces the event's data with {"message": message}, keeping
// its attributes, as the demo's transformer service does.
func Transformer(message string) flows.Handler {
	return flows.Typed(func(context.Context, struct{}) (map[string]string, error) {
		return map[string]string{"message": message}, nil
	})
}

// Servers runs handlers as HTTP services on 127.0.0.1.
type Servers struct {
	servers []*http.Server
	wg      sync.WaitGroup
}

// Serve starts an HTTP server for h on a free port of 127.0.0.1 and returns
// an HTTP target for it.
func (s *Servers) Serve(h flows.Handler) (*flows.HTTPTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: flows.NewHTTPHandler(h), ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		srv.Serve(ln)
	}()
	return flows.HTTP("http://" + ln.Addr().String()), nil
}

// Shutdown stops every server, waiting for requests in progress.
func (s *Servers) Shutdown(ctx context.Context) error {
	var first error
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil && first == nil {
			first = err
		}
	}
	s.wg.Wait()
	return first
}

// ServeAll replaces each handler by an HTTP target for a server running it
// on 127.0.0.1, so that a flow given the handlers calls them over the
// CloudEvents HTTP binding.
func (s *Servers) ServeAll(handlers ...*flows.Handler) error {
	for _, h := range handlers {
		target, err := s.Serve(*h)
		if err != nil {
			return err
		}
		*h = target
	}
	return nil
}

// StopAfter returns a callback for [EventDisplay] that calls stop once n
// events were displayed (n <= 0: never), so that a demo ends by itself.
func StopAfter(n int, stop func()) func(event.Event) {
	displayed := 0
	return func(event.Event) {
		// EventDisplay serializes its calls, so the count needs no lock.
		if displayed++; n > 0 && displayed == n {
			stop()
		}
	}
}
