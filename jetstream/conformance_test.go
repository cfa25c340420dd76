package jetstream_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/eventflows/flows"
	"github.com/eventflows/flows/flowstest"
	"github.com/eventflows/flows/jetstream"
)

func TestConformance(t *testing.T) {
	for _, capacity := range []int{0, 8} {
		t.Run(fmt.Sprintf("capacity=%d", capacity), func(t *testing.T) {
			s := startServer(t)
			_, js := s.connect(t)
			// Reopened handles use a connection of their own, as another
			// process would.
			_, js2 := s.connect(t)
			var opts []jetstream.Option
			if capacity > 0 {
				opts = append(opts, jetstream.WithCapacity(capacity))
			}
			var n atomic.Int64
			flowstest.TestChannel(t, flowstest.ChannelFeatures{
				Ordered:  true,
				Durable:  true,
				Capacity: capacity,
				Reopen: func(t *testing.T, ch flows.Channel) flows.Channel {
					ch2, err := jetstream.New(t.Context(), js2, ch.(*jetstream.Channel).Name(), opts...)
					if err != nil {
						t.Fatal(err)
					}
					return ch2
				},
			}, func(t *testing.T) flows.Channel {
				ch, err := jetstream.New(t.Context(), js, fmt.Sprintf("conformance-%d", n.Add(1)), opts...)
				if err != nil {
					t.Fatal(err)
				}
				return ch
			})
		})
	}
}
