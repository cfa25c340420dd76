package flows_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
)

// keyedEvent is event seq of key k, keyed by the partitionkey extension.
func keyedEvent(k, seq int) event.Event {
	e := newEvent(fmt.Sprintf("k%d-%d", k, seq), msg{ID: seq})
	e.SetExtension(flows.ExtensionPartitionKey, "k"+strconv.Itoa(k))
	return e
}

// seqOf is the sequence number in the id of a keyedEvent.
func seqOf(e event.Event) int {
	n, _ := strconv.Atoi(e.ID()[strings.IndexByte(e.ID(), '-')+1:])
	return n
}

// flaky says whether attempt n at e fails: about one attempt in 8, never
// past the third, so that every event is delivered within its retries.
func flaky(e event.Event, n int) bool {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", e.ID(), n)
	return n <= 3 && h.Sum32()%8 == 0
}

// orderChecker records the attempts per key and what it saw go wrong.
type orderChecker struct {
	mu        sync.Mutex
	next      map[string]int // key → the sequence number expected next
	running   map[string]bool
	inFlight  int
	maxFlight int
	failures  int
	problems  []string
}

func newOrderChecker() *orderChecker {
	return &orderChecker{next: map[string]int{}, running: map[string]bool{}}
}

func (c *orderChecker) handler(work time.Duration, fail func(event.Event, int) bool) flows.Handler {
	attempts := map[string]int{}
	return flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
		key := flows.PartitionKey(e)
		c.mu.Lock()
		attempts[e.ID()]++
		n := attempts[e.ID()]
		if c.running[key] {
			c.problems = append(c.problems, fmt.Sprintf("%s: delivered while another event of its key was in flight", e.ID()))
		}
		if want := c.next[key]; seqOf(e) != want {
			c.problems = append(c.problems, fmt.Sprintf("%s: delivered when %s-%d was due", e.ID(), key, want))
		}
		c.running[key] = true
		c.inFlight++
		c.maxFlight = max(c.maxFlight, c.inFlight)
		c.mu.Unlock()

		time.Sleep(work)
		failed := fail != nil && fail(e, n)

		c.mu.Lock()
		defer c.mu.Unlock()
		c.running[key] = false
		c.inFlight--
		if failed {
			c.failures++
			return nil, errors.New("transient")
		}
		c.next[key] = seqOf(e) + 1
		return nil, nil
	})
}

func (c *orderChecker) check(t *testing.T, keys, perKey int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.problems {
		if i == 10 {
			t.Errorf("... and %d more", len(c.problems)-10)
			break
		}
		t.Error(p)
	}
	for k := range keys {
		if got := c.next["k"+strconv.Itoa(k)]; got != perKey {
			t.Errorf("key k%d: %d events delivered, want %d", k, got, perKey)
		}
	}
}

func TestOrderedByKeyAcrossRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const keys, perKey = 100, 100
		c := newOrderChecker()
		f, err := (&flows.Sequence{Steps: []flows.Step{{
			Subscriber: c.handler(time.Millisecond, flaky),
			Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, Retry: 3, BackoffDelay: time.Millisecond},
		}}}).Start(context.Background(), flows.WithConcurrency(8))
		if err != nil {
			t.Fatal(err)
		}
		for seq := range perKey {
			for k := range keys {
				if err := f.Send(context.Background(), keyedEvent(k, seq)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		c.check(t, keys, perKey)
		t.Logf("%d transient failures retried", c.failures)
		if c.failures < 500 {
			t.Errorf("only %d failed attempts: the test does not exercise retries", c.failures)
		}
		if c.maxFlight != 8 {
			t.Errorf("at most %d deliveries at once, want 8", c.maxFlight)
		}
	})
}

func TestOrderedKeysRunConcurrently(t *testing.T) {
	for _, tc := range []struct {
		keys, concurrency, maxInFlight, want int
	}{
		{keys: 16, concurrency: 8, want: 8},
		{keys: 3, concurrency: 8, want: 3},
		{keys: 16, concurrency: 8, maxInFlight: 2, want: 2},
		{keys: 16, concurrency: 1, maxInFlight: 5, want: 5},
	} {
		t.Run(fmt.Sprintf("keys=%d,concurrency=%d,maxInFlight=%d", tc.keys, tc.concurrency, tc.maxInFlight), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newOrderChecker()
				f, err := (&flows.Sequence{Steps: []flows.Step{{
					Subscriber: c.handler(10*time.Millisecond, nil),
					Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, MaxInFlight: tc.maxInFlight},
				}}}).Start(context.Background(), flows.WithConcurrency(tc.concurrency))
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				for seq := range 10 {
					for k := range tc.keys {
						if err := f.Send(context.Background(), keyedEvent(k, seq)); err != nil {
							t.Fatal(err)
						}
					}
				}
				if err := f.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				c.check(t, tc.keys, 10)
				if c.maxFlight != tc.want {
					t.Errorf("at most %d deliveries at once, want %d", c.maxFlight, tc.want)
				}
				// 10 ms per delivery, want at once.
				if got, want := time.Since(start), time.Duration(10*tc.keys/tc.want)*10*time.Millisecond; got > want+10*time.Millisecond {
					t.Errorf("took %s, want about %s", got, want)
				}
			})
		})
	}
}

// A retried event holds back the later events of its key, and only those.
func TestOrderedRetryHoldsBackOnlyItsKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var log []string
		failed := false
		h := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			mu.Lock()
			defer mu.Unlock()
			if e.ID() == "k0-0" && !failed {
				failed = true
				log = append(log, fmt.Sprintf("%s failed at %s", e.ID(), time.Since(time.Unix(946684800, 0))))
				return nil, errors.New("transient")
			}
			log = append(log, fmt.Sprintf("%s at %s", e.ID(), time.Since(time.Unix(946684800, 0))))
			return nil, nil
		})
		f, err := (&flows.Sequence{Steps: []flows.Step{{
			Subscriber: h,
			Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, Retry: 1, BackoffDelay: time.Second},
		}}}).Start(context.Background(), flows.WithConcurrency(2))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []event.Event{keyedEvent(0, 0), keyedEvent(1, 0), keyedEvent(0, 1), keyedEvent(1, 1)} {
			if err := f.Send(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		// Key k1 goes on at once; k0-1 waits for k0-0's retry a second later.
		got := strings.Join(log, "\n")
		for _, want := range []string{"k0-0 failed at 0s", "k1-0 at 0s", "k1-1 at 0s", "k0-0 at 1s", "k0-1 at 1s"} {
			if !strings.Contains(got, want) {
				t.Errorf("log has no %q:\n%s", want, got)
			}
		}
		if strings.Index(got, "k0-1") < strings.Index(got, "k0-0 at") {
			t.Errorf("k0-1 delivered before k0-0's retry:\n%s", got)
		}
	})
}

// OrderKey replaces the partitionkey; events without a key are not held
// back by anything.
func TestOrderKeyAndEventsWithoutKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var inFlight, maxFlight atomic.Int32
		var mu sync.Mutex
		got := map[string][]string{}
		h := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			n := inFlight.Add(1)
			for m := maxFlight.Load(); n > m && !maxFlight.CompareAndSwap(m, n); m = maxFlight.Load() {
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			mu.Lock()
			got[e.Subject()] = append(got[e.Subject()], e.ID())
			mu.Unlock()
			return nil, nil
		})
		f, err := (&flows.Sequence{
			Steps:    []flows.Step{{Subscriber: h}},
			Delivery: &flows.Delivery{Order: flows.DeliveryOrdered, OrderKey: flows.OrderKeyAttribute("subject")},
		}).Start(context.Background(), flows.WithConcurrency(4))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			for _, subject := range []string{"a", ""} {
				e := newEvent(fmt.Sprintf("%s%d", subject, i), msg{})
				e.SetSubject(subject)
				// A partitionkey shared by all: ignored under OrderKey.
				e.SetExtension(flows.ExtensionPartitionKey, "same")
				if err := f.Send(context.Background(), e); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if want := "a0 a1 a2 a3 a4 a5 a6 a7"; strings.Join(got["a"], " ") != want {
			t.Errorf("key a delivered as %v, want %s", got["a"], want)
		}
		if len(got[""]) != 8 {
			t.Errorf("%d events without a key delivered, want 8", len(got[""]))
		}
		// One of key a at a time, and the keyless ones beside it.
		if maxFlight.Load() != 4 {
			t.Errorf("at most %d deliveries at once, want 4", maxFlight.Load())
		}
	})
}

// A hard stop hands back the events in flight, retrying and waiting behind
// their key, as undelivered; Shutdown before it drains them all.
func TestOrderedStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			if e.ID() == "k0-0" {
				return nil, errors.New("transient") // retried in an hour
			}
			select {
			case <-release:
				return nil, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		f, err := (&flows.Sequence{Steps: []flows.Step{{
			Subscriber: h,
			Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, Retry: 1, BackoffDelay: time.Hour},
		}}}).Start(context.Background(), flows.WithConcurrency(2))
		if err != nil {
			t.Fatal(err)
		}
		for seq := range 3 {
			for k := range 2 {
				if err := f.Send(context.Background(), keyedEvent(k, seq)); err != nil {
					t.Fatal(err)
				}
			}
		}
		synctest.Wait()
		stopped := time.Now()
		err = f.Close()
		if d := time.Since(stopped); d != 0 {
			t.Errorf("Close took %s of fake time: it waited for the retry", d)
		}
		var ue *flows.UndeliveredError
		if !errors.As(err, &ue) {
			t.Fatalf("Close: %v, want an UndeliveredError", err)
		}
		gotIDs := ids(ue.Events)
		slicesSort(gotIDs)
		if want := "k0-0 k0-1 k0-2 k1-0 k1-1 k1-2"; strings.Join(gotIDs, " ") != want {
			t.Errorf("undelivered %v, want %s", gotIDs, want)
		}
		close(release)
	})
}

func slicesSort(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

func TestOrderedParallelBranchWithFilter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOrderChecker()
		slowFilter := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			// Later events pass the filter sooner: unordered, they would
			// overtake the earlier ones.
			time.Sleep(time.Duration(10-seqOf(e)) * time.Millisecond)
			return &e, nil
		})
		f, err := (&flows.Parallel{Branches: []flows.Branch{{
			Filter:     slowFilter,
			Subscriber: c.handler(time.Millisecond, nil),
			Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered},
		}}}).Start(context.Background(), flows.WithConcurrency(8))
		if err != nil {
			t.Fatal(err)
		}
		for seq := range 10 {
			for k := range 4 {
				if err := f.Send(context.Background(), keyedEvent(k, seq)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		c.check(t, 4, 10)
	})
}

func TestDeliveryFlowControlValidation(t *testing.T) {
	err := (&flows.Sequence{Steps: []flows.Step{{
		Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, nil }),
		Delivery: &flows.Delivery{Order: "sorted", OrderKey: flows.OrderKeyFunc(func(event.Event) string { return "" }),
			MaxInFlight: -1, RateLimit: -5, RateBurst: 3},
	}}}).Validate()
	for _, want := range []string{
		`steps[0].delivery.order: must be "unordered" or "ordered", got "sorted"`,
		`steps[0].delivery.orderKey: is set but order is not "ordered"`,
		"steps[0].delivery.maxInFlight: must be >= 0, got -1",
		"steps[0].delivery.rateLimit: must be >= 0 events per second, got -5",
		"steps[0].delivery.rateBurst: is set but rateLimit is not",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v\nwant it to say %q", err, want)
		}
	}
	var de *flows.DefinitionError
	if !errors.As(err, &de) {
		t.Errorf("Validate: %v, want a DefinitionError", err)
	}
}

// BenchmarkOrdered delivers 10,000 events over 100 keys, with transient
// failures retried after 1 ms, to a subscriber that takes 1 ms, ordered by
// key at concurrency 1 and 8.
func BenchmarkOrdered(b *testing.B) {
	for _, concurrency := range []int{1, 8} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			const keys, perKey = 100, 100
			for b.Loop() {
				c := newOrderChecker()
				f, err := (&flows.Sequence{Steps: []flows.Step{{
					Subscriber: c.handler(time.Millisecond, flaky),
					Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, Retry: 3, BackoffDelay: time.Millisecond},
				}}}).Start(context.Background(), flows.WithConcurrency(concurrency))
				if err != nil {
					b.Fatal(err)
				}
				for seq := range perKey {
					for k := range keys {
						if err := f.Send(context.Background(), keyedEvent(k, seq)); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := f.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
				if len(c.problems) > 0 {
					b.Fatal(c.problems[0])
				}
			}
			b.ReportMetric(float64(b.N*keys*perKey)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

func TestOrderedTrigger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOrderChecker()
		f, err := (&flows.Broker{Triggers: []flows.Trigger{{
			Subscriber: c.handler(time.Millisecond, flaky),
			Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, Retry: 3, BackoffDelay: time.Millisecond},
		}}}).Start(context.Background(), flows.WithConcurrency(8))
		if err != nil {
			t.Fatal(err)
		}
		for seq := range 50 {
			for k := range 20 {
				if err := f.Send(context.Background(), keyedEvent(k, seq)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		c.check(t, 20, 50)
		if c.failures == 0 || c.maxFlight != 8 {
			t.Errorf("%d failures, %d deliveries at once: want some, and 8", c.failures, c.maxFlight)
		}
	})
}

func TestOrderKey(t *testing.T) {
	e := newEvent("1", msg{})
	e.SetSubject("orders/1")
	e.SetExtension(flows.ExtensionPartitionKey, 7) // an Integer: its string form
	e.SetExtension("tenant", "eu")
	for _, tc := range []struct {
		key  flows.OrderKey
		want string
	}{
		{flows.OrderKey{}, "7"},
		{flows.OrderKeyAttribute("subject"), "orders/1"},
		{flows.OrderKeyAttribute("tenant"), "eu"},
		{flows.OrderKeyAttribute("region"), ""},
		{flows.OrderKeyFunc(func(e event.Event) string { return e.ID() + "!" }), "1!"},
	} {
		if got := tc.key.Key(e); got != tc.want {
			t.Errorf("%+v.Key = %q, want %q", tc.key, got, tc.want)
		}
	}
	if got := flows.PartitionKey(e); got != "7" {
		t.Errorf("PartitionKey = %q, want 7", got)
	}
	// A Delivery stays comparable.
	d := flows.Delivery{Order: flows.DeliveryOrdered, OrderKey: flows.OrderKeyAttribute("tenant")}
	if d != (flows.Delivery{Order: flows.DeliveryOrdered, OrderKey: flows.OrderKeyAttribute("tenant")}) {
		t.Error("two equal Delivery values compare unequal")
	}
	err := (&flows.Sequence{Steps: []flows.Step{{
		Subscriber: flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, nil }),
		Delivery:   &flows.Delivery{Order: flows.DeliveryOrdered, OrderKey: flows.OrderKeyAttribute("Tenant-ID")},
	}}}).Validate()
	if want := `steps[0].delivery.orderKey: attribute name "Tenant-ID" must be lower-case letters and digits`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate: %v\nwant it to say %q", err, want)
	}
}

// A key function that panics does not stop the flow: the event is
// delivered, unordered.
func TestOrderKeyPanics(t *testing.T) {
	rec := make(chan string, 2)
	f := start(t, &flows.Sequence{Steps: []flows.Step{{
		Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			rec <- e.ID()
			return nil, nil
		}),
		Delivery: &flows.Delivery{Order: flows.DeliveryOrdered, OrderKey: flows.OrderKeyFunc(func(e event.Event) string {
			if e.ID() == "bad" {
				panic("no key")
			}
			return "k"
		})},
	}}})
	for _, id := range []string{"bad", "good"} {
		if _, err := f.Handle(context.Background(), newEvent(id, msg{})); err != nil {
			t.Fatalf("Handle(%s): %v", id, err)
		}
	}
	if got := <-rec + " " + <-rec; got != "bad good" {
		t.Errorf("delivered %s, want bad good", got)
	}
}
