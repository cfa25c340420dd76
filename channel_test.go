package flows_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/eventflows/flows"
)

func TestPublishersWaitingForRoomAllGetIn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := flows.NewInMemoryChannel(2)
		r, _ := ch.Subscribe("s")
		ctx := context.Background()
		publish := func(id string) error {
			e := newEvent(id, nil)
			return ch.Publish(ctx, &e)
		}
		for i := range 2 {
			if err := publish(strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		// Five publishers wait for room; two slots are returned at once,
		// then the rest one by one: every publisher gets in, none early.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var in []string
		for i := 2; i < 7; i++ {
			wg.Go(func() {
				if err := publish(strconv.Itoa(i)); err != nil {
					t.Errorf("Publish %d = %v", i, err)
				}
				mu.Lock()
				in = append(in, strconv.Itoa(i))
				mu.Unlock()
			})
		}
		synctest.Wait()
		if len(in) != 0 {
			t.Fatalf("%d publishers got into a full channel", len(in))
		}
		var got []string
		receive := func() flows.Message {
			m, err := r.Receive(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Event().ID())
			return m
		}
		a, b := receive(), receive()
		a.Ack()
		b.Ack()
		synctest.Wait()
		if len(in) != 2 {
			t.Fatalf("two slots returned let %d publishers in, want 2", len(in))
		}
		for range 5 {
			receive().Ack()
		}
		wg.Wait()
		slices.Sort(got)
		if want := []string{"0", "1", "2", "3", "4", "5", "6"}; !slices.Equal(got, want) {
			t.Errorf("received %v, want %v", got, want)
		}
	})
}

func TestMessagesOfOtherReceiversAreNeverReused(t *testing.T) {
	ch := flows.NewInMemoryChannel(4)
	r, _ := ch.Subscribe("s")
	ctx := context.Background()
	e := newEvent("1", nil)
	ch.Publish(ctx, &e)
	m, _ := r.Receive(ctx)
	if err := m.Nack(0); err != nil {
		t.Fatal(err)
	}
	if err := m.Ack(); err == nil {
		t.Error("Ack after Nack succeeded, want an error")
	}
	again, _ := r.Receive(ctx)
	if again.Attempt() != 2 || again.Event().ID() != "1" {
		t.Fatalf("redelivery = attempt %d of %s", again.Attempt(), again.Event().ID())
	}
	again.Ack()
	// After its Ack, the message is still the receiver's.
	for i := range 10 {
		e := newEvent(strconv.Itoa(i+2), nil)
		ch.Publish(ctx, &e)
		m, _ := r.Receive(ctx)
		m.Ack()
	}
	if again.Event().ID() != "1" || again.Attempt() != 2 || again.Ack() == nil {
		t.Errorf("an acknowledged message changed: %s, attempt %d", again.Event().ID(), again.Attempt())
	}
}
