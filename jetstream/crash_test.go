package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/jetstream"
	"github.com/nats-io/nats.go"
)

// The crash tests run the seed's three-step Sequence on JetStream in
// "runners": a flow on a NATS connection of its own, standing for a
// process. They check at-least-once delivery across crashes of a runner and
// restarts of the server, and the sharing of work between runners.

const steps = 3

type payload struct {
	Message string `json:"message"`
}

func finalMessage(i int) string {
	return fmt.Sprintf("hello #%d - Handled by 0 - Handled by 1 - Handled by 2", i)
}

// recorder collects what reaches the Sequence's reply, from every runner.
type recorder struct {
	mu         sync.Mutex
	deliveries map[string][]int // event ID -> runners that displayed it
	messages   map[string]string
	total      int
	calls      map[string]int // "step/runner" -> calls
	changed    chan struct{}
}

func newRecorder() *recorder {
	return &recorder{
		deliveries: map[string][]int{},
		messages:   map[string]string{},
		calls:      map[string]int{},
		changed:    make(chan struct{}, 1),
	}
}

func (r *recorder) record(runner int, e event.Event) int {
	var p payload
	json.Unmarshal(e.Data(), &p)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deliveries[e.ID()] = append(r.deliveries[e.ID()], runner)
	if prev, ok := r.messages[e.ID()]; !ok || prev == p.Message {
		r.messages[e.ID()] = p.Message
	} else {
		r.messages[e.ID()] = "inconsistent: " + prev + " / " + p.Message
	}
	r.total++
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return r.total
}

func (r *recorder) called(step, runner int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[fmt.Sprintf("step %d/runner %d", step, runner)]++
}

// waitFor waits until cond holds for the recorder, or fails the test.
func (r *recorder) waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for {
		r.mu.Lock()
		ok := cond()
		n, distinct := r.total, len(r.deliveries)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %d deliveries of %d distinct events so far", what, n, distinct)
		}
	}
}

// check asserts that every event of sent was displayed, with all three
// steps applied once, and returns the number of duplicate displays.
func (r *recorder) check(t *testing.T, sent map[string]int) (duplicates int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, i := range sent {
		if len(r.deliveries[id]) == 0 {
			t.Errorf("event %s was acknowledged to the sender but never delivered", id)
			continue
		}
		if got, want := r.messages[id], finalMessage(i); got != want {
			t.Errorf("event %s displayed %q; want %q", id, got, want)
		}
	}
	for id := range r.deliveries {
		if _, ok := sent[id]; !ok {
			t.Errorf("unexpected event %s", id)
		}
	}
	return r.total - len(r.deliveries)
}

type runnerHooks struct {
	// step is called by each step before it handles an event.
	step func(ctx context.Context, step int, e event.Event) error
	// displayed is called after the reply recorded an event, with the
	// number of deliveries recorded so far.
	displayed func(ctx context.Context, n int)
}

// runner is a flow with a NATS connection of its own.
type runner struct {
	nc   *nats.Conn
	flow *flows.Flow
}

func startRunner(ctx context.Context, t *testing.T, s *natsServer, name string, id int, rec *recorder, h runnerHooks, opts ...jetstream.Option) *runner {
	t.Helper()
	nc, js := s.connect(t)
	seq := &flows.Sequence{Name: name}
	for i := range steps {
		seq.Steps = append(seq.Steps, flows.Step{Subscriber: flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			rec.called(i, id)
			if h.step != nil {
				if err := h.step(ctx, i, e); err != nil {
					return nil, err
				}
			}
			var p payload
			if err := json.Unmarshal(e.Data(), &p); err != nil {
				return nil, flows.Permanent(err)
			}
			p.Message += fmt.Sprintf(" - Handled by %d", i)
			if err := e.SetData(event.ApplicationJSON, p); err != nil {
				return nil, err
			}
			return &e, nil
		})})
	}
	seq.Reply = flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		n := rec.record(id, e)
		if h.displayed != nil {
			h.displayed(ctx, n)
		}
		return nil, nil
	})
	flow, err := seq.Start(ctx, flows.WithChannels(jetstream.Channels(js, opts...)))
	if err != nil {
		t.Fatalf("starting runner %d: %v", id, err)
	}
	t.Cleanup(func() { flow.Close() })
	return &runner{nc: nc, flow: flow}
}

// crash stops the runner as a killed process would stop: its connection
// goes first, so that no acknowledgement, retry or reply reaches the
// server afterwards; then its goroutines are reaped.
func (r *runner) crash() {
	r.nc.Close()
	r.flow.Close()
}

func (r *runner) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.flow.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// leftovers returns, per step, how many messages the flow's consumers
// still hold: not delivered yet, or delivered without an acknowledgement
// that reached the server (they would be delivered again, as duplicates).
// leftovers reports, per step, the messages a consumer still holds. The
// server applies acknowledgements asynchronously, even after a flush, so it
// waits (a bounded while) for the counts to settle at zero.
func leftovers(ctx context.Context, t *testing.T, s *natsServer, name string) (left []uint64) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = consumerCounts(ctx, t, s, name)
		if slices.Max(left) == 0 || time.Now().After(deadline) {
			return left
		}
	}
}

func consumerCounts(ctx context.Context, t *testing.T, s *natsServer, name string) (left []uint64) {
	t.Helper()
	_, js := s.connect(t)
	for i := range steps {
		sub := fmt.Sprintf("%s-kn-sequence-%d", name, i)
		c, err := js.Consumer(ctx, jetstream.DefaultPrefix+"_"+sub, sub)
		if err != nil {
			t.Fatalf("consumer %s: %v", sub, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatalf("consumer %s: %v", sub, err)
		}
		left = append(left, info.NumPending+uint64(info.NumAckPending))
	}
	return left
}

func newEvent(i int) event.Event {
	e := event.New()
	e.SetID(fmt.Sprintf("event-%03d", i))
	e.SetSource("/jetstream/crash-test")
	e.SetType("dev.flows.test")
	e.SetData(event.ApplicationJSON, payload{Message: fmt.Sprintf("hello #%d", i)})
	return e
}

// send sends events first..last-1 and returns those acknowledged.
func send(ctx context.Context, f *flows.Flow, first, last int) (map[string]int, error) {
	sent := map[string]int{}
	for i := first; i < last; i++ {
		e := newEvent(i)
		if err := f.Send(ctx, e); err != nil {
			return sent, fmt.Errorf("Send(%s) = %w", e.ID(), err)
		}
		sent[e.ID()] = i
	}
	return sent, nil
}

func mustSend(ctx context.Context, t *testing.T, f *flows.Flow, first, last int) map[string]int {
	t.Helper()
	sent, err := send(ctx, f, first, last)
	if err != nil {
		t.Fatal(err)
	}
	return sent
}

func allDelivered(rec *recorder, sent map[string]int) func() bool {
	return func() bool {
		for id := range sent {
			if len(rec.deliveries[id]) == 0 {
				return false
			}
		}
		return true
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A runner killed mid-stream loses nothing that its sender was told was
// accepted: a new runner delivers it, including the event the dead runner
// was handling and those it had read ahead.
func TestCrashedRunnerIsResumed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prefetch int
		// kill stops runner 1: a crash cuts its connection first; a hard
		// stop (Flow.Close) keeps it, so that the events being handled are
		// handed back and those read ahead must expire.
		kill func(*runner)
	}{
		{"crash", 0, (*runner).crash},
		{"crash with prefetch", 8, (*runner).crash},
		{"hard stop with prefetch", 8, func(r *runner) { r.flow.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			s := startServer(t)
			rec := newRecorder()
			const events, crashAt = 60, 20
			// A short ack wait brings back the messages the dead runner
			// held after a second instead of thirty.
			opts := []jetstream.Option{jetstream.WithAckWait(time.Second), jetstream.WithPrefetch(tc.prefetch)}

			stuck := make(chan struct{})
			var calls int
			r1 := startRunner(ctx, t, s, "crash", 1, rec, runnerHooks{
				// Runner 1 hangs in its second step at the crashAt-th
				// event, so that the crash finds events before, in and
				// after that step.
				step: func(ctx context.Context, step int, e event.Event) error {
					if step != 1 {
						return nil
					}
					if calls++; calls == crashAt {
						close(stuck)
						<-ctx.Done()
						return ctx.Err()
					}
					return nil
				},
			}, opts...)
			sent := mustSend(ctx, t, r1.flow, 0, events)
			select {
			case <-stuck:
			case <-ctx.Done():
				t.Fatal("runner 1 never reached the crash point")
			}
			tc.kill(r1)
			rec.mu.Lock()
			before := len(rec.deliveries)
			rec.mu.Unlock()
			if before >= crashAt {
				t.Fatalf("%d events displayed before the crash; want fewer than %d", before, crashAt)
			}

			r2 := startRunner(ctx, t, s, "crash", 2, rec, runnerHooks{}, opts...)
			maps.Copy(sent, mustSend(ctx, t, r2.flow, events, events+10))
			rec.waitFor(ctx, t, "every event", allDelivered(rec, sent))
			r2.shutdown(t)
			dups := rec.check(t, sent)
			t.Logf("runner 1 stopped with %d of %d events displayed; runner 2 delivered the rest and %d more: %d deliveries, %d duplicates; left in the consumers: %v",
				before, events, len(sent)-events, len(sent)+dups, dups, leftovers(ctx, t, s, "crash"))
		})
	}
}

// A restart of the NATS server mid-stream loses nothing either: the runner
// reconnects, and the streams and consumers come back from storage.
func TestServerRestart(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	rec := newRecorder()
	const events, restartAt = 100, 25

	// The second step holds its restartAt-th event across the restart, so
	// that the restart finds events before, in and after that step, and the
	// step's reply and acknowledgement go to the restarted server.
	stuck, restarted := make(chan struct{}), make(chan struct{})
	var calls int
	r := startRunner(ctx, t, s, "restart", 1, rec, runnerHooks{
		step: func(ctx context.Context, step int, e event.Event) error {
			if step != 1 {
				return nil
			}
			if calls++; calls == restartAt {
				close(stuck)
				select {
				case <-restarted:
				case <-ctx.Done():
				}
			}
			return nil
		},
	}, jetstream.WithAckWait(time.Second))

	sent := mustSend(ctx, t, r.flow, 0, events/2)
	select {
	case <-stuck:
	case <-ctx.Done():
		t.Fatal("the runner never reached the restart point")
	}
	// The other half is sent while the server restarts: a Send waits until
	// the server is back and has stored its event.
	type sendResult struct {
		sent map[string]int
		err  error
	}
	sentC := make(chan sendResult, 1)
	go func() {
		sent, err := send(ctx, r.flow, events/2, events)
		sentC <- sendResult{sent, err}
	}()
	s.restart()
	close(restarted)
	rec.mu.Lock()
	before := rec.total
	rec.mu.Unlock()
	res := <-sentC
	if res.err != nil {
		t.Fatal(res.err)
	}
	maps.Copy(sent, res.sent)
	rec.waitFor(ctx, t, "every event", allDelivered(rec, sent))
	r.shutdown(t)
	dups := rec.check(t, sent)
	t.Logf("server restarted with %d of %d events displayed: %d deliveries, %d duplicates; left in the consumers: %v",
		before, events, len(sent)+dups, dups, leftovers(ctx, t, s, "restart"))
}

// Two runners of the same flow share its work: each event is handled once,
// by one of them, at every step.
func TestRunnersShareWork(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t)
	rec := newRecorder()
	const events = 40

	// Each runner's first step holds its first event until the other
	// runner's first step has one too: both must be getting work.
	first := map[int]chan struct{}{1: make(chan struct{}), 2: make(chan struct{})}
	hooks := func(id int) runnerHooks {
		var once sync.Once
		return runnerHooks{step: func(ctx context.Context, step int, e event.Event) error {
			if step != 0 {
				return nil
			}
			once.Do(func() {
				close(first[id])
				select {
				case <-first[3-id]:
				case <-ctx.Done():
				}
			})
			return nil
		}}
	}
	r1 := startRunner(ctx, t, s, "shared", 1, rec, hooks(1))
	r2 := startRunner(ctx, t, s, "shared", 2, rec, hooks(2))
	sent := mustSend(ctx, t, r1.flow, 0, events)
	rec.waitFor(ctx, t, "every event", allDelivered(rec, sent))
	r1.shutdown(t)
	r2.shutdown(t)

	if dups := rec.check(t, sent); dups != 0 {
		t.Errorf("%d events were displayed twice; want each once", dups)
	}
	if left := leftovers(ctx, t, s, "shared"); slices.Max(left) != 0 {
		t.Errorf("messages left in the consumers per step: %v; want none", left)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	total := 0
	for step := range steps {
		n1, n2 := rec.calls[fmt.Sprintf("step %d/runner 1", step)], rec.calls[fmt.Sprintf("step %d/runner 2", step)]
		if n1+n2 != events {
			t.Errorf("step %d handled %d events (%d + %d); want each of %d once", step, n1+n2, n1, n2, events)
		}
		total += n1 + n2
	}
	if rec.calls["step 0/runner 1"] == 0 || rec.calls["step 0/runner 2"] == 0 {
		t.Errorf("step 0 calls per runner = %v; want both runners to get work", rec.calls)
	}
	keys := slices.Sorted(maps.Keys(rec.calls))
	split := make([]string, len(keys))
	for i, k := range keys {
		split[i] = fmt.Sprintf("%s: %d", k, rec.calls[k])
	}
	t.Logf("%d events, %d step calls, split between the runners: %v", events, total, split)
}
