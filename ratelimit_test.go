package flows_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const events, capacity = 1000, 16
		var mu sync.Mutex
		var starts []time.Time
		var sent atomic.Int64
		var overfull int
		h := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			mu.Lock()
			defer mu.Unlock()
			starts = append(starts, time.Now())
			// Senders are held back by the channel's capacity: never more
			// events accepted than delivered plus what the channel holds.
			if int(sent.Load()) > len(starts)+capacity {
				overfull++
			}
			return nil, nil
		})
		f, err := (&flows.Sequence{Steps: []flows.Step{{
			Subscriber: h,
			Delivery:   &flows.Delivery{RateLimit: 100, RateBurst: 10},
		}}}).Start(context.Background(), flows.WithConcurrency(8),
			flows.WithChannels(func(context.Context, string) (flows.Channel, error) { return flows.NewInMemoryChannel(capacity), nil }))
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		for i := range events {
			if err := f.Send(context.Background(), newEvent(fmt.Sprint(i), msg{ID: i})); err != nil {
				t.Fatal(err)
			}
			sent.Add(1)
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if len(starts) != events {
			t.Fatalf("%d events delivered, want %d", len(starts), events)
		}
		if overfull > 0 {
			t.Errorf("%d deliveries saw more events accepted than the channel holds", overfull)
		}
		// The burst at once, then one every 10 ms: (1000-10)/100 s.
		if got, want := starts[len(starts)-1].Sub(begin), 9900*time.Millisecond; got < want*99/100 || got > want*101/100 {
			t.Errorf("took %s of fake time, want %s ± 1%%", got, want)
		}
		// Over any 1 s window: at most the burst plus the rate.
		for i, s := range starts {
			n := 0
			for _, u := range starts[i:] {
				if u.Sub(s) >= time.Second {
					break
				}
				n++
			}
			limit := 100
			if s.Sub(begin) < time.Second {
				limit += 10
			}
			if n > limit {
				t.Fatalf("%d attempts in the second after %s, want at most %d", n, s.Sub(begin), limit)
			}
		}
	})
}

// Retries count against the rate too, and a hard stop cancels a rate wait.
func TestRateLimitRetriesAndHardStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var starts []time.Duration
		begin := time.Now()
		h := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			mu.Lock()
			defer mu.Unlock()
			starts = append(starts, time.Since(begin))
			if len(starts) == 1 {
				return nil, errors.New("transient")
			}
			return nil, nil
		})
		f, err := (&flows.Sequence{Steps: []flows.Step{{
			Subscriber: h,
			Delivery:   &flows.Delivery{RateLimit: 1, Retry: 1},
		}}}).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := f.Send(context.Background(), newEvent(fmt.Sprint(i), msg{ID: i})); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(1500 * time.Millisecond)
		// Event 0 at 0 s, failed; event 1 at 1 s; then the worker waits.
		stopped := time.Now()
		err = f.Close()
		var ue *flows.UndeliveredError
		if !errors.As(err, &ue) || len(ue.Events) != 2 {
			t.Fatalf("Close: %v, want 2 undelivered events (event 2 and event 0's retry)", err)
		}
		if d := time.Since(stopped); d != 0 {
			t.Errorf("Close took %s of fake time: it waited for the rate", d)
		}
		if want := []time.Duration{0, time.Second}; fmt.Sprint(starts) != fmt.Sprint(want) {
			t.Errorf("attempts at %v, want %v", starts, want)
		}
	})
}

func TestRateLimitOrdered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOrderChecker()
		f, err := (&flows.Sequence{Steps: []flows.Step{{
			Subscriber: c.handler(0, flaky),
			Delivery: &flows.Delivery{Order: flows.DeliveryOrdered, Retry: 3, BackoffDelay: time.Millisecond,
				RateLimit: 1000, RateBurst: 1},
		}}}).Start(context.Background(), flows.WithConcurrency(4))
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		for seq := range 50 {
			for k := range 10 {
				if err := f.Send(context.Background(), keyedEvent(k, seq)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		c.check(t, 10, 50)
		// One attempt per millisecond, retries included.
		if got, want := time.Since(begin), time.Duration(500+c.failures-1)*time.Millisecond; got < want {
			t.Errorf("took %s, want at least %s for %d attempts", got, want, 500+c.failures)
		}
	})
}

// MaxInFlight sets an unordered subscription's concurrency, below or above
// the flow's.
func TestMaxInFlight(t *testing.T) {
	for _, tc := range []struct{ concurrency, maxInFlight, want int }{{8, 3, 3}, {1, 4, 4}, {2, 0, 2}} {
		t.Run(fmt.Sprintf("concurrency=%d,maxInFlight=%d", tc.concurrency, tc.maxInFlight), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var inFlight, most atomic.Int32
				h := flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) {
					n := inFlight.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(time.Millisecond)
					inFlight.Add(-1)
					return nil, nil
				})
				f, err := (&flows.Parallel{Branches: []flows.Branch{{
					Subscriber: h,
					Delivery:   &flows.Delivery{MaxInFlight: tc.maxInFlight},
				}}}).Start(context.Background(), flows.WithConcurrency(tc.concurrency))
				if err != nil {
					t.Fatal(err)
				}
				for i := range 40 {
					if err := f.Send(context.Background(), newEvent(fmt.Sprint(i), msg{})); err != nil {
						t.Fatal(err)
					}
				}
				if err := f.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				if int(most.Load()) != tc.want {
					t.Errorf("at most %d deliveries at once, want %d", most.Load(), tc.want)
				}
			})
		})
	}
}
