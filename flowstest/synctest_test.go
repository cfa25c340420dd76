package flowstest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

func TestPingScheduleWithoutSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := flowstest.NewRecorder()
		src, err := (&flows.Ping{Name: "tick", Schedule: "*/5 * * * *", Timezone: "UTC", Sink: rec}).Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()

		got := rec.MustWaitFor(t, 3, time.Hour)
		for i, e := range got {
			if want := epoch.Add(time.Duration(i+1) * 5 * time.Minute); !e.Time().Equal(want) {
				t.Errorf("event %d: time %s, want %s", i+1, e.Time(), want)
			}
		}
		synctest.Wait()
		if n := rec.Len(); n != 3 {
			t.Errorf("at %s: %d events, want 3", time.Now().UTC(), n)
		}
	})
}

func TestRetryBackoffWithoutSleeping(t *testing.T) {
	for _, tc := range []struct {
		policy flows.BackoffPolicy
		want   []time.Duration // when each attempt starts
	}{
		{flows.BackoffExponential, []time.Duration{0, time.Second, 3 * time.Second}},
		{flows.BackoffLinear, []time.Duration{0, 0, time.Second}},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				step := flowstest.NewRecorder(flowstest.Fail(errBoom).Times(2), flowstest.Echo())
				out := flowstest.NewRecorder()
				f, err := (&flows.Sequence{
					Steps: []flows.Step{{Subscriber: step, Delivery: &flows.Delivery{Retry: 3, BackoffPolicy: tc.policy, BackoffDelay: time.Second}}},
					Reply: out,
				}).Start(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.Handle(t.Context(), flowstest.NewEvent("1", "t", "/test", nil)); err != nil {
					t.Fatal(err)
				}
				recs := step.Records()
				if len(recs) != len(tc.want) {
					t.Fatalf("%d attempts, want %d", len(recs), len(tc.want))
				}
				for i, r := range recs {
					if got := r.Time.Sub(epoch); got != tc.want[i] {
						t.Errorf("attempt %d at +%s, want +%s", r.Attempt, got, tc.want[i])
					}
				}
				if out.Len() != 1 {
					t.Errorf("reply got %d events, want 1", out.Len())
				}
			})
		})
	}
}

func TestTimeoutWithoutSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dl := flowstest.NewRecorder()
		slow := flowstest.NewRecorder(flowstest.Block())
		f, err := (&flows.Sequence{Name: "seq", Steps: []flows.Step{{
			Subscriber: slow,
			Delivery:   &flows.Delivery{Retry: 1, Timeout: 30 * time.Second, DeadLetter: dl},
		}}}).Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })

		if _, err := f.Handle(t.Context(), flowstest.NewEvent("1", "t", "/test", nil)); err != nil {
			t.Fatal(err)
		}
		if got, want := time.Since(epoch), time.Minute; got != want {
			t.Errorf("dead-lettered after %s, want %s (two attempts of 30s)", got, want)
		}
		if n := slow.Attempts("1"); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
		got := dl.MustWait(t, 1)
		flowstest.AssertEvent(t, got[0], flowstest.NewEvent("1", "t", "/test", nil,
			flowstest.WithExtension(flows.ExtensionErrorDest, "seq/steps[0]"),
			flowstest.WithExtension(flows.ExtensionErrorCode, 500),
		), flowstest.IgnoreAttributes(flows.ExtensionErrorData))
	})
}

func TestPingRetriesWithoutSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Knative's ping adapter retries 5 times, from 100ms doubling.
		sink := flowstest.NewRecorder(flowstest.Fail(errBoom).Times(3), flowstest.NoReply())
		src, err := (&flows.Ping{Schedule: "@hourly", Timezone: "UTC", Sink: sink}).Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()

		sink.MustWaitFor(t, 4, 2*time.Hour)
		var got []time.Duration
		for _, r := range sink.Records() {
			got = append(got, r.Time.Sub(epoch))
		}
		want := []time.Duration{time.Hour, time.Hour + 100*time.Millisecond, time.Hour + 300*time.Millisecond, time.Hour + 700*time.Millisecond}
		if !slices.Equal(got, want) {
			t.Errorf("attempts at %v, want %v", got, want)
		}
	})
}

func TestShutdownDeadlineWithoutSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck := flowstest.NewRecorder(flowstest.Block())
		f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: stuck}}}).Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"1", "2"} {
			if err := f.Send(t.Context(), flowstest.NewEvent(id, "t", "/test", nil)); err != nil {
				t.Fatal(err)
			}
		}
		stuck.MustWait(t, 1)

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err = f.Shutdown(ctx)
		var ue *flows.UndeliveredError
		if !errors.As(err, &ue) {
			t.Fatalf("Shutdown = %v, want an UndeliveredError", err)
		}
		if got := time.Since(epoch); got != 5*time.Second {
			t.Errorf("Shutdown returned after %s, want 5s", got)
		}
		flowstest.AssertEvents(t, ue.Events, []event.Event{
			flowstest.NewEvent("1", "t", "/test", nil),
			flowstest.NewEvent("2", "t", "/test", nil),
		}, flowstest.AnyOrder())
	})
}

func TestShutdownWaitsForRetriesWithoutSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		step := flowstest.NewRecorder(flowstest.Fail(errBoom), flowstest.Echo())
		out := flowstest.NewRecorder()
		seq := &flows.Sequence{
			Steps: []flows.Step{{Subscriber: step, Delivery: &flows.Delivery{Retry: 1, BackoffDelay: time.Minute}}},
			Reply: out,
		}
		f, err := seq.Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Send(t.Context(), flowstest.NewEvent("1", "t", "/test", nil)); err != nil {
			t.Fatal(err)
		}
		step.MustWait(t, 1)
		// The retry is a minute away: the drain waits for it.
		if err := f.Shutdown(t.Context()); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if got := time.Since(epoch); got != time.Minute {
			t.Errorf("drained after %s, want 1m", got)
		}
		if out.Len() != 1 {
			t.Errorf("reply got %d events, want 1", out.Len())
		}
	})
}

func TestRunInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := flowstest.NewRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() {
			done <- (&flows.Ping{Schedule: "@daily", Timezone: "UTC", Sink: out}).Run(ctx)
		}()
		out.MustWaitFor(t, 2, 72*time.Hour)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := time.Since(epoch); got != 48*time.Hour {
			t.Errorf("2 daily ticks at %s, want 48h", got)
		}
	})
}

func TestBackpressureWithoutSleeping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck := flowstest.NewRecorder(flowstest.Block())
		f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: stuck}}}).Start(t.Context(), flows.WithCapacity(1))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Send(t.Context(), flowstest.NewEvent("1", "t", "/test", nil)); err != nil {
			t.Fatal(err)
		}
		stuck.MustWait(t, 1) // holds the only slot

		if err := f.TrySend(flowstest.NewEvent("2", "t", "/test", nil)); !errors.Is(err, flows.ErrFull) {
			t.Errorf("TrySend = %v, want ErrFull", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := f.Send(ctx, flowstest.NewEvent("2", "t", "/test", nil)); !errors.Is(err, flows.ErrFull) {
			t.Errorf("Send = %v, want ErrFull", err)
		}
		if got := time.Since(epoch); got != time.Minute {
			t.Errorf("Send gave up after %s, want 1m", got)
		}
	})
}

func TestParallelInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		even, odd := flowstest.NewRecorder(flowstest.Echo()), flowstest.NewRecorder(flowstest.Echo())
		out := flowstest.NewRecorder()
		isEven := func(e event.Event) bool { return e.Time().Minute()%2 == 0 }
		par := &flows.Parallel{Branches: []flows.Branch{
			{Filter: flows.Match(isEven), Subscriber: even},
			{Filter: flows.Match(func(e event.Event) bool { return !isEven(e) }), Subscriber: odd},
		}, Reply: out}
		f, err := par.Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		src, err := (&flows.Ping{Schedule: "* * * * *", Timezone: "UTC", Sink: f}).Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()

		out.MustWaitFor(t, 4, 5*time.Minute)
		if e, o := even.Len(), odd.Len(); e != 2 || o != 2 {
			t.Errorf("even got %d, odd got %d; want 2 and 2", e, o)
		}
	})
}
