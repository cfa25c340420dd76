package jetstream_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/eventflows/flows"
	"github.com/eventflows/flows/jetstream"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// A Sequence whose channels are JetStream streams. The example runs a NATS
// server in process; against a real one, only nats.Connect's URL changes.
func ExampleChannels() {
	dir, _ := os.MkdirTemp("", "flows-jetstream-example-")
	defer os.RemoveAll(dir)
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Start()
	defer srv.Shutdown()
	srv.ReadyForConnections(10 * time.Second)

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := natsjs.New(nc)

	type greeting struct {
		Message string `json:"message"`
	}
	appender := func(suffix string) flows.Handler {
		return flows.Typed(func(_ context.Context, in greeting) (greeting, error) {
			in.Message += suffix
			return in, nil
		})
	}
	done := make(chan string)
	seq := &flows.Sequence{
		Name:  "example",
		Steps: []flows.Step{{Subscriber: appender(", world")}, {Subscriber: appender("!")}},
		Reply: flows.Typed(func(_ context.Context, in greeting) (struct{}, error) {
			done <- in.Message
			return struct{}{}, flows.ErrNoReply
		}),
	}
	ctx := context.Background()
	flow, err := seq.Start(ctx, flows.WithChannels(jetstream.Channels(js)))
	if err != nil {
		fmt.Println(err)
		return
	}

	e := event.New()
	e.SetID("1")
	e.SetSource("/example")
	e.SetType("greeting")
	e.SetData(event.ApplicationJSON, greeting{Message: "hello"})
	// Send returns once the event is stored in the first step's stream.
	if err := flow.Send(ctx, e); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-done)
	fmt.Println(flow.Shutdown(ctx))
	// Output:
	// hello, world!
	// <nil>
}
