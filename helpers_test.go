package flows_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
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
	return flowstest.NewEvent(id, "test.event", "/test", data)
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

// failN returns a subscriber that fails the first n attempts at each event
// with err, then replies with the event.
func failN(n int, err error) *flowstest.Recorder {
	return flowstest.NewRecorder(flowstest.Fail(err).Times(n), flowstest.Echo())
}

// attemptTimes is when each attempt reached r.
func attemptTimes(r *flowstest.Recorder) []time.Time {
	var out []time.Time
	for _, rec := range r.Records() {
		out = append(out, rec.Time)
	}
	return out
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
