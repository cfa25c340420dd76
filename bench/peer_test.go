package bench

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// BenchmarkPeerWatermill chains three handlers topic to topic with
// Watermill's Router over its GoChannel pub/sub. The CloudEvent travels as
// a message: its data as the payload, its attributes as metadata.
func BenchmarkPeerWatermill(b *testing.B) {
	b.ReportAllocs()
	logger := watermill.NopLogger{}
	pubsub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 128}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		b.Fatal(err)
	}
	out := newSink()
	topics := []string{"step-0", "step-1", "step-2"}
	for i := range 2 {
		router.AddHandler(topics[i], topics[i], pubsub, topics[i+1], pubsub,
			func(m *message.Message) ([]*message.Message, error) {
				data, err := appendMessage(m.Payload, suffix(i))
				if err != nil {
					return nil, err
				}
				reply := message.NewMessage(m.UUID, data)
				reply.Metadata = m.Metadata
				return []*message.Message{reply}, nil
			})
	}
	router.AddConsumerHandler(topics[2], topics[2], pubsub, func(m *message.Message) error {
		if _, err := appendMessage(m.Payload, suffix(2)); err != nil {
			return err
		}
		out.arrive()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go router.Run(ctx)
	<-router.Running()
	defer router.Close()

	publish := func() {
		e := newEvent()
		m := message.NewMessage(e.ID(), e.Data())
		m.Metadata = message.Metadata{
			"ce_specversion":  e.SpecVersion(),
			"ce_id":           e.ID(),
			"ce_source":       e.Source(),
			"ce_type":         e.Type(),
			"datacontenttype": e.DataContentType(),
		}
		if err := pubsub.Publish(topics[0], m); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu := cpuTime()
	out.expect(b.N)
	for range b.N {
		publish()
	}
	out.wait()
	reportThroughput(b, b.N, cpu)
	measureLatency(b, func() {
		out.expect(1)
		publish()
		out.wait()
	})
}
