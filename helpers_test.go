package flows_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions()...)
}

// Idle keep-alive connections of the HTTP client belong to net/http.
func leakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	}
}

// newEvent builds a valid event with JSON data.
func newEvent(id string, data any) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetSource("/test")
	e.SetType("test.event")
	if data != nil {
		if err := e.SetData(event.ApplicationJSON, data); err != nil {
			panic(err)
		}
	}
	return e
}

// sink records the events it receives.
type sink struct {
	mu     sync.Mutex
	events []event.Event
	signal chan struct{}
}

func newSink() *sink { return &sink{signal: make(chan struct{}, 1<<16)} }

func (s *sink) Handle(_ context.Context, e event.Event) (*event.Event, error) {
	s.mu.Lock()
	s.events = append(s.events, e.Clone())
	s.mu.Unlock()
	s.signal <- struct{}{}
	return nil, nil
}

// wait returns the first n events, failing the test if they do not arrive.
func (s *sink) wait(t testing.TB, n int) []event.Event {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		if len(s.events) >= n {
			out := append([]event.Event(nil), s.events[:n]...)
			s.mu.Unlock()
			return out
		}
		got := len(s.events)
		s.mu.Unlock()
		select {
		case <-s.signal:
		case <-timeout.C:
			t.Fatalf("got %d events, want %d", got, n)
		}
	}
}

func (s *sink) all() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.events...)
}

type msg struct {
	ID      int    `json:"id"`
	Message string `json:"message"`
}

func appender(suffix string) flows.Handler {
	return flows.Typed(func(_ context.Context, in msg) (msg, error) {
		in.Message += suffix
		return in, nil
	})
}

func message(t testing.TB, e event.Event) string {
	t.Helper()
	var m msg
	if err := json.Unmarshal(e.Data(), &m); err != nil {
		t.Fatalf("event %s: data %q: %v", e.ID(), e.Data(), err)
	}
	return m.Message
}

// failing fails the first n calls with err, then replies with the event.
type failing struct {
	mu    sync.Mutex
	n     int
	err   error
	calls int
	times []time.Time
}

func (f *failing) Handle(_ context.Context, e event.Event) (*event.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.times = append(f.times, time.Now())
	if f.calls <= f.n {
		return nil, f.err
	}
	return &e, nil
}

func (f *failing) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func start(t testing.TB, def interface {
	Start(context.Context, ...flows.Option) (*flows.Flow, error)
}, opts ...flows.Option) *flows.Flow {
	t.Helper()
	f, err := def.Start(context.Background(), opts...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return f
}

func ids(events []event.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID()
	}
	return out
}

var _ = fmt.Sprint
var _ = os.Stderr
