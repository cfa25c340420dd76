package flows_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
)

// flakyChannel is an in-memory channel whose receivers fail their first
// two receives, as a durable channel does while its server is away.
type flakyChannel struct {
	*flows.InMemoryChannel
	failures *atomic.Int32
}

func (c flakyChannel) Subscribe(name string) (flows.Receiver, error) {
	r, err := c.InMemoryChannel.Subscribe(name)
	return flakyReceiver{r, c.failures}, err
}

type flakyReceiver struct {
	flows.Receiver
	failures *atomic.Int32
}

func (r flakyReceiver) Receive(ctx context.Context) (flows.Message, error) {
	if r.failures.Add(1) <= 2 {
		return nil, errors.New("server unavailable")
	}
	return r.Receiver.Receive(ctx)
}

// A subscription whose receiver fails transiently logs, backs off and goes
// on receiving: the event is delivered, ordered by key or not.
func TestTransientReceiveFailuresAreRetried(t *testing.T) {
	for _, order := range []flows.DeliveryOrder{flows.DeliveryUnordered, flows.DeliveryOrdered} {
		t.Run(string(order), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs bytes.Buffer
				var failures atomic.Int32
				out := flowstest.NewRecorder()
				f, err := (&flows.Sequence{Steps: []flows.Step{{Subscriber: out, Delivery: &flows.Delivery{Order: order}}}}).Start(
					context.Background(),
					flows.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
					flows.WithChannels(func(context.Context, string) (flows.Channel, error) {
						return flakyChannel{flows.NewInMemoryChannel(8), &failures}, nil
					}))
				if err != nil {
					t.Fatal(err)
				}
				e := flowstest.NewEvent("1", "t", "/s", nil)
				e.SetExtension("partitionkey", "k")
				if err := f.Send(context.Background(), e); err != nil {
					t.Fatal(err)
				}
				got := out.MustWait(t, 1)
				if err := f.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				if got[0].ID() != "1" {
					t.Errorf("delivered %s, want event 1", got[0].ID())
				}
				if n := strings.Count(logs.String(), "flows: receive failed"); n != 2 {
					t.Errorf("%d receive failures logged, want 2:\n%s", n, logs.String())
				}
			})
		})
	}
}
