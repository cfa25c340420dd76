package flows_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"golang.org/x/sync/errgroup"
)

func TestShutdownDrainsEverythingAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := flowstest.NewRecorder()
		slow := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			time.Sleep(10 * time.Millisecond)
			return &e, nil
		})
		flaky := failN(5, errors.New("flaky"))
		f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: slow}, {Subscriber: flaky, Delivery: &flows.Delivery{Retry: 10, BackoffDelay: time.Second}}, {Subscriber: slow}}, Reply: out}).
			Start(context.Background(), flows.WithCapacity(1000))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			if err := f.Send(context.Background(), newEvent(strconv.Itoa(i), nil)); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if got := len(out.Events()); got != 100 {
			t.Errorf("delivered %d events before Shutdown returned, want all 100", got)
		}
		if err := f.Send(context.Background(), newEvent("late", nil)); !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Send after Shutdown = %v, want ErrClosed", err)
		}
		if _, err := f.Handle(context.Background(), newEvent("late", nil)); !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Handle after Shutdown = %v, want ErrClosed", err)
		}
		select {
		case <-f.Done():
		default:
			t.Error("Done is not closed after Shutdown")
		}
	})
}

func TestShutdownDeadlineCancelsHangingAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{}, 10)
		var cancelled atomic.Int32
		hang := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			started <- struct{}{}
			<-ctx.Done()
			cancelled.Add(1)
			return nil, ctx.Err()
		})
		dls := flowstest.NewRecorder()
		f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: hang, Delivery: &flows.Delivery{DeadLetter: dls}}}}).Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			f.Send(context.Background(), newEvent(strconv.Itoa(i), nil))
		}
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		begin := time.Now()
		err = f.Shutdown(ctx)
		if el := time.Since(begin); el != 5*time.Second {
			t.Errorf("Shutdown took %v, want the 5s deadline", el)
		}
		var ue *flows.UndeliveredError
		if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want an UndeliveredError wrapping DeadlineExceeded", err)
		}
		if cancelled.Load() != 1 {
			t.Errorf("%d attempts saw their context cancelled, want 1", cancelled.Load())
		}
		// All three accepted events are accounted for: none was delivered, none dead-lettered.
		if got := ids(ue.Events); len(got) != 3 {
			t.Errorf("undelivered = %v, want the 3 events", got)
		}
		if len(dls.Events()) != 0 {
			t.Errorf("dead letters = %d; the cancelled attempt must be reported, not dead-lettered", len(dls.Events()))
		}
	})
}

func TestCloseReportsWhatWasDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		block := make(chan struct{})
		f, _ := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return nil, ctx.Err()
		})}}}).Start(context.Background())
		for i := range 5 {
			f.Send(context.Background(), newEvent(strconv.Itoa(i), nil))
		}
		synctest.Wait()
		var ue *flows.UndeliveredError
		if err := f.Close(); !errors.As(err, &ue) || len(ue.Events) != 5 {
			t.Fatalf("Close = %v, want the 5 undelivered events", err)
		}
		if err := f.Close(); err == nil || !errors.As(err, &ue) || len(ue.Events) != 5 {
			t.Errorf("second Close = %v", err)
		}
	})
}

func TestHandleReturnsWhenTheFlowStopsHard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _ := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})}}}).Start(context.Background())
		errc := make(chan error)
		go func() {
			_, err := f.Handle(context.Background(), newEvent("1", nil))
			errc <- err
		}()
		synctest.Wait()
		f.Close()
		if err := <-errc; !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Handle = %v, want an error wrapping ErrClosed", err)
		}
	})
}

func TestFullChannelHoldsTheSenderBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f, _ := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
			<-release
			return nil, nil
		})}}}).Start(context.Background(), flows.WithCapacity(3))
		defer f.Shutdown(context.Background())
		for i := range 3 {
			if err := f.TrySend(newEvent(strconv.Itoa(i), nil)); err != nil {
				t.Fatalf("TrySend %d = %v", i, err)
			}
		}
		// Capacity counts events accepted but not finished, including the one being handled.
		if err := f.TrySend(newEvent("x", nil)); !errors.Is(err, flows.ErrFull) {
			t.Errorf("TrySend on a full channel = %v, want ErrFull", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := f.Send(ctx, newEvent("y", nil)); !errors.Is(err, flows.ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Send on a full channel = %v, want ErrFull and DeadlineExceeded", err)
		}
		sent := make(chan error)
		go func() { sent <- f.Send(context.Background(), newEvent("z", nil)) }()
		synctest.Wait()
		select {
		case err := <-sent:
			t.Fatalf("Send returned %v while the channel is full", err)
		default:
		}
		release <- struct{}{} // one event finishes, making room
		if err := <-sent; err != nil {
			t.Errorf("Send = %v after room was made", err)
		}
		close(release)
	})
}

func TestChannelGivesEachSubscriptionItsOwnCopy(t *testing.T) {
	ch := flows.NewInMemoryChannel(10)
	a, _ := ch.Subscribe("a")
	b, _ := ch.Subscribe("b")
	e := newEvent("1", map[string]int{"n": 1})
	if err := ch.Publish(context.Background(), &e); err != nil {
		t.Fatal(err)
	}
	ma, _ := a.Receive(context.Background())
	mb, _ := b.Receive(context.Background())
	ma.Event().SetType("changed by a")
	ma.Event().DataEncoded[0] = 'X'
	if mb.Event().Type() != "test.event" || string(mb.Event().Data()) != `{"n":1}` {
		t.Errorf("b's copy changed with a's: %s", mb.Event())
	}
	ma.Ack()
	mb.Nack(0)
	if m, _ := b.Receive(context.Background()); m.Attempt() != 2 {
		t.Errorf("redelivered attempt = %d, want 2", m.Attempt())
	} else {
		m.Ack()
	}
	ch.Close()
	if err := ch.Publish(context.Background(), &e); !errors.Is(err, flows.ErrClosed) {
		t.Errorf("Publish after Close = %v", err)
	}
	if _, err := a.Receive(context.Background()); !errors.Is(err, flows.ErrClosed) {
		t.Errorf("Receive on a drained closed channel = %v, want ErrClosed", err)
	}
}

func TestSubscriptionsDeliverConcurrently(t *testing.T) {
	// Two branches that each wait for the other prove they run at once.
	var wg sync.WaitGroup
	wg.Add(2)
	both := flows.HandlerFunc(func(_ context.Context, e event.Event) (*event.Event, error) {
		wg.Done()
		wg.Wait()
		return nil, nil
	})
	f := start(t, &flows.Parallel{Branches: []flows.Branch{{Subscriber: both}, {Subscriber: both}}})
	done := make(chan error)
	go func() { _, err := f.Handle(context.Background(), newEvent("1", nil)); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("branches did not run concurrently")
	}
}

func TestRunFitsErrgroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := flowstest.NewRecorder()
		ctx, cancel := context.WithCancel(context.Background())
		g, gctx := errgroup.WithContext(ctx)
		seq := &flows.Sequence{Steps: []flows.Step{{Subscriber: appender(" 1")}}, Reply: out}
		g.Go(func() error { return seq.Run(gctx) })
		g.Go(func() error {
			return (&flows.Ping{Schedule: "* * * * * *", Data: `{"message":"tick"}`, ContentType: "application/json",
				Sink: out}).Run(gctx)
		})
		time.Sleep(3500 * time.Millisecond)
		cancel()
		if err := g.Wait(); err != nil {
			t.Fatalf("Wait = %v", err)
		}
		if n := len(out.Events()); n != 3 {
			t.Errorf("ping sent %d events in 3.5s, want 3", n)
		}
	})
}

func TestNoGoroutineOutlivesTheFlow(t *testing.T) {
	// synctest fails the test if a goroutine started in the bubble is left
	// blocked when the function returns.
	synctest.Test(t, func(t *testing.T) {
		f, err := (&flows.Parallel{Branches: []flows.Branch{
			{Filter: flows.Match(func(event.Event) bool { return true }), Subscriber: appender("x")},
			{Subscriber: failN(2, errors.New("x")), Delivery: &flows.Delivery{Retry: 5, BackoffDelay: time.Hour}},
		}, Reply: flows.Discard}).Start(context.Background(), flows.WithConcurrency(4))
		if err != nil {
			t.Fatal(err)
		}
		f.Send(context.Background(), newEvent("1", nil))
		src, _ := (&flows.Ping{Schedule: "@hourly", Sink: f}).Start(context.Background())
		synctest.Wait()
		src.Shutdown(context.Background())
		f.Shutdown(context.Background()) // waits for the retries an hour apart, in fake time
	})
}

func TestLoggingGoesOnlyToTheCallersLogger(t *testing.T) {
	var def bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&def, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(old)

	fail := flows.HandlerFunc(func(context.Context, event.Event) (*event.Event, error) { return nil, errors.New("nope") })
	f := start(t, &flows.Sequence{Steps: []flows.Step{{Subscriber: fail}}})
	f.Handle(context.Background(), newEvent("silent", nil))
	if def.Len() != 0 {
		t.Errorf("the library logged without a logger:\n%s", def.String())
	}

	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g := start(t, &flows.Sequence{Name: "logged", Steps: []flows.Step{{Subscriber: fail, Delivery: &flows.Delivery{Retry: 1}}}}, flows.WithLogger(logger))
	g.Handle(context.Background(), newEvent("loud", nil))
	for _, want := range []string{"will retry", "attempt=1", "not delivered", "id=loud", "subscription=logged-kn-sequence-0"} {
		if !bytes.Contains(buf.Bytes(), []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestChannelConstructorErrors(t *testing.T) {
	boom := errors.New("no broker")
	_, err := (&flows.Sequence{Name: "s", Steps: []flows.Step{{Subscriber: flows.Discard}}}).Start(context.Background(),
		flows.WithChannels(func(context.Context, string) (flows.Channel, error) { return nil, boom }))
	if !errors.Is(err, boom) || !bytes.Contains([]byte(err.Error()), []byte(`"s-kn-sequence-0"`)) {
		t.Errorf("Start = %v, want the constructor's error naming the channel", err)
	}
}

var _ = fmt.Sprint

func TestShutdownReturnsWhenCloseStopsTheFlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _ := (&flows.Sequence{Steps: []flows.Step{{Subscriber: flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})}}}).Start(context.Background())
		f.Send(context.Background(), newEvent("1", nil))
		errc := make(chan error)
		go func() { errc <- f.Shutdown(context.Background()) }() // no deadline: waits for the drain
		synctest.Wait()
		if err := f.Close(); err == nil {
			t.Error("Close = nil, want the undelivered event")
		}
		// The drain Shutdown waited for will never complete: it must say so
		// instead of waiting forever.
		var ue *flows.UndeliveredError
		if err := <-errc; !errors.As(err, &ue) || len(ue.Events) != 1 || !errors.Is(err, flows.ErrClosed) {
			t.Errorf("Shutdown = %v, want an UndeliveredError with the event, wrapping ErrClosed", err)
		}
	})
}

func TestCloseReportsAnEventHeldBackByAFullStep(t *testing.T) {
	// Close while step 0 waits for room in step 1's channel: the event it
	// holds is undelivered, not a failure of step 0 to dead-letter.
	for range 20 {
		synctest.Test(t, func(t *testing.T) {
			dls := flowstest.NewRecorder()
			hang := flows.HandlerFunc(func(ctx context.Context, e event.Event) (*event.Event, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			})
			f, _ := (&flows.Sequence{Steps: []flows.Step{
				{Subscriber: flowstest.NewRecorder(flowstest.Echo()), Delivery: &flows.Delivery{DeadLetter: dls}},
				{Subscriber: hang},
			}}).Start(context.Background(), flows.WithCapacity(1))
			for _, id := range []string{"1", "2"} {
				if err := f.Send(context.Background(), newEvent(id, nil)); err != nil {
					t.Fatal(err)
				}
				synctest.Wait() // 1 hangs in step 1; 2 waits for room in its channel
			}
			var ue *flows.UndeliveredError
			if err := f.Close(); !errors.As(err, &ue) || len(ue.Events) != 2 {
				t.Fatalf("Close = %v, want both events undelivered", err)
			}
			if n := len(dls.Events()); n != 0 {
				t.Errorf("%d event(s) dead-lettered by Close, want none", n)
			}
		})
	}
}

func TestPublishingNilIsAnInvalidEvent(t *testing.T) {
	if err := flows.NewInMemoryChannel(1).Publish(context.Background(), nil); !errors.Is(err, flows.ErrInvalidEvent) {
		t.Errorf("Publish(nil) = %v, want ErrInvalidEvent", err)
	}
}
