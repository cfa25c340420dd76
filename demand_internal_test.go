package flows

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// pass is a step that answers with the event it got.
var pass = HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) { return &e, nil })

func threeSteps(reply Handler) *Sequence {
	return &Sequence{Steps: []Step{{Subscriber: pass}, {Subscriber: pass}, {Subscriber: pass}}, Reply: reply}
}

func eventN(publisher, n int) event.Event {
	e := validEventForTest()
	e.SetID(fmt.Sprintf("%d-%d", publisher, n))
	return e
}

// An idle flow holds no goroutine: its workers start when an event comes
// and retire once their queue stays empty.
func TestIdleSequencesHoldNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var running []*Flow
		for range 10 {
			f, err := threeSteps(Discard).Start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			running = append(running, f)
		}
		synctest.Wait()
		if n := workers(t, running); n != 0 {
			t.Errorf("10 idle 3-step Sequences hold %d goroutines, want 0", n)
		}
		for _, f := range running {
			if _, err := f.Handle(ctx, validEventForTest()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * workerLinger) // fake time: the workers' linger passes
		synctest.Wait()
		if n := workers(t, running); n != 0 {
			t.Errorf("after one event each, then %s idle, the Sequences hold %d goroutines, want 0", 2*workerLinger, n)
		}
		for _, f := range running {
			if err := f.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// workers counts the goroutines the flows' subscriptions run: their
// running workers. (runtime.NumGoroutine would count other tests' too.)
func workers(t *testing.T, flows []*Flow) int {
	t.Helper()
	var n int
	for _, f := range flows {
		for _, st := range f.stages {
			for _, s := range st.subs {
				q, ok := s.recv.(*memQueue)
				if !ok || q.dem.Load() == nil {
					t.Fatalf("subscription %s does not start its workers on demand", s.name)
				}
				n += int(q.dem.Load().running.Load())
			}
		}
	}
	return n
}

// Workers that retire at once race every publish: no event may be left in
// a queue without a worker, and at concurrency 1 each publisher's events
// still arrive in the order it sent them.
func TestOnDemandWorkersLoseNoEvent(t *testing.T) {
	linger := workerLinger
	workerLinger = 0
	t.Cleanup(func() { workerLinger = linger })
	const publishers, events = 4, 1000
	for _, concurrency := range []int{1, 3} {
		t.Run("concurrency="+strconv.Itoa(concurrency), func(t *testing.T) {
			var got atomic.Int64
			done := make(chan struct{})
			var mu sync.Mutex
			last := make(map[int]int)
			var disorder []string
			reply := HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
				var p, n int
				fmt.Sscanf(e.ID(), "%d-%d", &p, &n)
				mu.Lock()
				if prev, ok := last[p]; ok && n < prev && concurrency == 1 {
					disorder = append(disorder, fmt.Sprintf("%s after %d-%d", e.ID(), p, prev))
				}
				last[p] = max(last[p], n)
				mu.Unlock()
				if got.Add(1) == publishers*events {
					close(done)
				}
				return nil, nil
			})
			// A failure bound, not synchronisation: a lost event would
			// otherwise hang Handle.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			f, err := threeSteps(reply).Start(context.Background(), WithConcurrency(concurrency))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for p := range publishers {
				wg.Go(func() {
					for n := range events {
						if n%2 == 0 {
							// One at a time, so that the workers retire in between.
							if _, err := f.Handle(ctx, eventN(p, n)); err != nil {
								t.Error(err)
								return
							}
						} else if err := f.Send(ctx, eventN(p, n)); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			select {
			case <-done:
			case <-ctx.Done():
				f.Close()
				t.Fatalf("%d of %d events arrived; the rest are stuck in a queue without a worker", got.Load(), publishers*events)
			}
			if err := f.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(disorder) > 0 {
				t.Errorf("at concurrency 1, events overtook each other: %v", disorder[:min(5, len(disorder))])
			}
		})
	}
}

// A retry waits on a timer after its worker retired: the timer's
// redelivery starts a worker again, and Shutdown waits for it.
func TestRetryAfterTheWorkerRetiredIsDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts atomic.Int32
		flaky := HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			if attempts.Add(1) == 1 {
				return nil, errors.New("first attempt fails")
			}
			return &e, nil
		})
		var delivered atomic.Int32
		s := &Sequence{
			Steps: []Step{{Subscriber: pass}, {Subscriber: flaky, Delivery: &Delivery{Retry: 1, BackoffDelay: time.Hour}}},
			Reply: HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { delivered.Add(1); return nil, nil }),
		}
		ctx := context.Background()
		f, err := s.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Handle(ctx, validEventForTest()); err != nil {
			t.Fatalf("Handle: %v, want the retry an hour later to succeed", err)
		}
		if delivered.Load() != 1 || attempts.Load() != 2 {
			t.Fatalf("delivered %d after %d attempts, want 1 after 2", delivered.Load(), attempts.Load())
		}
		// Once more, stopping while the retry waits: Shutdown drains it.
		if err := f.Send(ctx, validEventForTest()); err != nil {
			t.Fatal(err)
		}
		attempts.Store(0)
		synctest.Wait()
		if err := f.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if delivered.Load() != 2 {
			t.Fatalf("Shutdown returned with %d events delivered, want 2", delivered.Load())
		}
	})
}

// A worker waiting for its linger to pass sees a hard stop at once, even
// when its queue is not drained (an event waits for a retry): Close
// returns without waiting for the linger, reports the event, and no worker
// is left.
func TestCloseStopsALingeringWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fails := HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
			return nil, errors.New("fails")
		})
		s := &Sequence{Steps: []Step{{Subscriber: fails, Delivery: &Delivery{Retry: 1, BackoffDelay: time.Hour}}}}
		ctx := context.Background()
		f, err := s.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Send(ctx, validEventForTest()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the first attempt failed; the retry waits
		if n := workers(t, []*Flow{f}); n != 1 {
			t.Fatalf("%d workers linger after the first attempt, want 1: the test tests nothing", n)
		}
		start := time.Now()
		err = f.Close()
		if d := time.Since(start); d != 0 {
			t.Errorf("Close took %s of fake time, want it at once, not after the linger", d)
		}
		var ue *UndeliveredError
		if !errors.As(err, &ue) || len(ue.Events) != 1 {
			t.Errorf("Close = %v, want the event waiting for its retry reported undelivered", err)
		}
		if n := workers(t, []*Flow{f}); n != 0 {
			t.Errorf("after Close, %d workers run, want 0", n)
		}
	})
}
