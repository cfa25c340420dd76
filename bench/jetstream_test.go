package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/jetstream"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// The 3-step Sequence on NATS JetStream, against nats.go's JetStream client
// doing the same work by hand: three streams with the same settings as the
// flows channels (file storage, interest retention), a durable consumer per
// stage that decodes the CloudEvent, appends, publishes to the next stream
// and acknowledges. Both use an in-process server on 127.0.0.1.

func startNATS(b *testing.B) natsjs.JetStream {
	b.Helper()
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT,
		JetStream: true, StoreDir: b.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	srv.Start()
	b.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		b.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return js
}

// BenchmarkLimitJetStream is the raw nats.go pipeline. It has the
// Sequence's three streams: the last stage, like the Sequence's last step
// whose reply goes to an in-process handler, counts its event instead of
// publishing it to a fourth stream.
func BenchmarkLimitJetStream(b *testing.B) {
	js := startNATS(b)
	ctx := context.Background()
	out := newSink()
	const stages = 3
	for i := range stages {
		if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: fmt.Sprintf("raw%d", i), Subjects: []string{fmt.Sprintf("raw.%d", i)},
			Retention: natsjs.InterestPolicy, Storage: natsjs.FileStorage}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range stages {
		cons, err := js.CreateOrUpdateConsumer(ctx, fmt.Sprintf("raw%d", i), natsjs.ConsumerConfig{Durable: "stage", AckPolicy: natsjs.AckExplicitPolicy})
		if err != nil {
			b.Fatal(err)
		}
		next := fmt.Sprintf("raw.%d", i+1)
		cc, err := cons.Consume(func(m natsjs.Msg) {
			var e event.Event
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				m.Term()
				return
			}
			appendStep(&e, suffix(i))
			if i == stages-1 {
				out.arrive()
				m.Ack()
				return
			}
			data, err := json.Marshal(e)
			if err != nil {
				m.Term()
				return
			}
			if _, err := js.Publish(ctx, next, data); err != nil {
				return // redelivered after the ack wait, as a flow would
			}
			m.Ack()
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			// Stop, and wait for the callback in progress, before the
			// connection closes.
			cc.Drain()
			<-cc.Closed()
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	out.expect(b.N)
	for range b.N {
		e := newEvent()
		data, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.Publish(ctx, "raw.0", data); err != nil {
			b.Fatal(err)
		}
	}
	out.wait()
	reportThroughput(b, b.N, cpu)
}

// BenchmarkJetStreamSequence3Steps is the seed's Sequence on JetStream
// channels, with the default options and with read-ahead and concurrency.
func BenchmarkJetStreamSequence3Steps(b *testing.B) {
	for _, tc := range []struct {
		name        string
		opts        []jetstream.Option
		concurrency int
	}{
		{"default", nil, 1},
		{"prefetch=16,concurrency=4", []jetstream.Option{jetstream.WithPrefetch(16)}, 4},
	} {
		b.Run(tc.name, func(b *testing.B) {
			js := startNATS(b)
			out := newSink()
			s := sequence(appender(suffix(0)), appender(suffix(1)), appender(suffix(2)))
			s.Reply = arrive(out)
			f, err := s.Start(context.Background(), flows.WithChannels(jetstream.Channels(js, tc.opts...)), flows.WithConcurrency(tc.concurrency))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Shutdown(context.Background())
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			out.expect(b.N)
			for range b.N {
				if err := f.Send(context.Background(), newEvent()); err != nil {
					b.Fatal(err)
				}
			}
			out.wait()
			reportThroughput(b, b.N, cpu)
		})
	}
}
