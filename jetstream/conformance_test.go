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
	for _, tc := range []struct {
		name               string
		capacity, prefetch int
	}{
		{"default", 0, jetstream.DefaultPrefetch},
		{"no read-ahead", 0, 0},
		{"capacity", 8, 0},
		{"prefetch", 0, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t)
			_, js := s.connect(t)
			// Reopened handles use a connection of their own, as another
			// process would.
			_, js2 := s.connect(t)
			var opts []jetstream.Option
			if tc.capacity > 0 {
				opts = append(opts, jetstream.WithMaxMessages(tc.capacity))
			}
			f := flowstest.ChannelFeatures{
				Ordered:  true,
				Durable:  true,
				Capacity: tc.capacity,
				Reopen: func(t *testing.T, ch flows.Channel) flows.Channel {
					ch2, err := jetstream.New(t.Context(), js2, ch.(*jetstream.Channel).Name(), opts...)
					if err != nil {
						t.Fatal(err)
					}
					return ch2
				},
			}
			opts = append(opts, jetstream.WithPrefetch(tc.prefetch))
			if tc.prefetch > 0 {
				f.Reopen = nil // a handle that reads ahead holds more than one message
			}
			var n atomic.Int64
			flowstest.TestChannel(t, f, func(t *testing.T) flows.Channel {
				ch, err := jetstream.New(t.Context(), js, fmt.Sprintf("conformance-%d", n.Add(1)), opts...)
				if err != nil {
					t.Fatal(err)
				}
				return ch
			})
		})
	}
}
